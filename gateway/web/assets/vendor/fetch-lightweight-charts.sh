#!/bin/sh
# Re-fetches the vendored TradingView Lightweight Charts build from the npm registry and checks
# it against SHA256SUMS (the tarball and the file taken from it).
#
#   gateway/web/assets/vendor/fetch-lightweight-charts.sh           # verify the committed copy
#   gateway/web/assets/vendor/fetch-lightweight-charts.sh --update  # also overwrite it
#
# Needs curl, tar and sha256sum; network access to registry.npmjs.org. Nothing in the build or
# the tests runs it: the page is served from the committed file.
set -eu
VERSION=4.2.3
URL="https://registry.npmjs.org/lightweight-charts/-/lightweight-charts-$VERSION.tgz"
FILE=lightweight-charts.standalone.production.js
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL "$URL" -o "$tmp/lightweight-charts-$VERSION.tgz"
tar -xzf "$tmp/lightweight-charts-$VERSION.tgz" -C "$tmp" "package/dist/$FILE" package/LICENSE
cp "$tmp/package/dist/$FILE" "$tmp/$FILE"
(cd "$tmp" && sha256sum -c "$here/SHA256SUMS")
if [ "${1:-}" = "--update" ]; then
    cp "$tmp/$FILE" "$here/$FILE"
    cp "$tmp/package/LICENSE" "$here/lightweight-charts.LICENSE"
    echo "updated $here/$FILE"
else
    cmp "$tmp/$FILE" "$here/$FILE"
    cmp "$tmp/package/LICENSE" "$here/lightweight-charts.LICENSE"
    echo "the committed $FILE is lightweight-charts $VERSION from $URL"
fi
