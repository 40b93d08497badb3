#!/usr/bin/env bash
# The README's test command: installs what the tests need (PostgreSQL, Chromium and its
# WebDriver, ccxt), starts private throwaway instances of them (tools/ci/services.sh), runs every
# test of the workspace in release mode, and stops the services whatever the outcome.
# Arguments replace `--workspace` (e.g. `tools/ci/test.sh -p ringbook-web --test upbit`).
set -euo pipefail
cd "$(dirname "$0")/../.."

svc="$(mktemp -d /tmp/ringbook-services.XXXXXX)"
trap 'tools/ci/services.sh down "$svc"' EXIT
tools/ci/services.sh up "$svc"
# shellcheck disable=SC1091
source "$svc/env"

[ $# -gt 0 ] || set -- --workspace
cargo test --release "$@"
