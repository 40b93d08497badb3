#!/usr/bin/env bash
# Private, throwaway services for the test run: a PostgreSQL cluster, a headless Chromium behind
# chromedriver, and a Python virtual environment with ccxt. Installs what is missing (Debian
# packages with apt-get, Python packages with pip), binds everything to 127.0.0.1 on free ports,
# and keeps all state under one directory that `down` removes.
#
#   tools/ci/services.sh up   DIR   # install, start, write DIR/env (shell exports)
#   tools/ci/services.sh down DIR   # stop and remove
#
# DIR/env sets, for the tests:
#   RINGBOOK_TEST_POSTGRES   postgres://ringbook@127.0.0.1:PORT/postgres (superuser, trust auth;
#                            tests create their own databases)
#   RINGBOOK_TEST_WEBDRIVER  http://127.0.0.1:PORT (chromedriver; CHROME binary in RINGBOOK_TEST_CHROME)
#   RINGBOOK_TEST_PYTHON     a python3 with ccxt importable
# Tests that need one of them fail with a message naming this script when it is unset: nothing
# skips silently.
set -euo pipefail

CCXT_VERSION=4.5.90
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }

log() { echo "services: $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

pg_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# Run a PostgreSQL program as a user it accepts (it refuses root).
pg_run() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

up() {
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    command -v python3 >/dev/null || apt_install python3
    apt_install postgresql chromium chromium-driver python3-venv

    # PostgreSQL: a fresh cluster in $dir/pg, listening on 127.0.0.1 only.
    local bin pgport pgdata
    bin=$(pg_bin) || { log "no PostgreSQL server binaries after install"; exit 1; }
    pgdata="$dir/pg"
    rm -rf "$pgdata"; mkdir -p "$pgdata"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir" "$pgdata"; chmod 755 "$dir"; fi
    pg_run "$bin/initdb" -D "$pgdata" -U ringbook -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    pgport=$(free_port)
    pg_run "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdata -c fsync=off -c max_connections=200" start >&2
    log "postgres on 127.0.0.1:$pgport"

    # Chromium's WebDriver.
    local chrome driver wdport
    chrome=$(command -v chromium || command -v chromium-browser || true)
    driver=$(command -v chromedriver || true)
    [ -n "$chrome" ] && [ -n "$driver" ] || { log "chromium or chromedriver missing after install"; exit 1; }
    wdport=$(free_port)
    "$driver" --port="$wdport" --allowed-ips=127.0.0.1 >"$dir/chromedriver.log" 2>&1 &
    echo $! > "$dir/chromedriver.pid"
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$wdport/status" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$wdport/status" >/dev/null || { cat "$dir/chromedriver.log" >&2; exit 1; }
    log "chromedriver on 127.0.0.1:$wdport"

    # ccxt in a virtual environment kept under target/ (reused between runs).
    local venv="$ROOT/target/ci-venv"
    if ! "$venv/bin/python" -c "import ccxt, sys; sys.exit(ccxt.__version__ != '$CCXT_VERSION')" 2>/dev/null; then
        log "installing ccxt $CCXT_VERSION into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "ccxt==$CCXT_VERSION" >&2
    fi

    cat > "$dir/env" <<ENV
export RINGBOOK_TEST_POSTGRES=postgres://ringbook@127.0.0.1:$pgport/postgres
export RINGBOOK_TEST_WEBDRIVER=http://127.0.0.1:$wdport
export RINGBOOK_TEST_CHROME=$chrome
export RINGBOOK_TEST_PYTHON=$venv/bin/python
ENV
    log "ready: source $dir/env"
}

down() {
    [ -d "$dir" ] || return 0
    if [ -f "$dir/chromedriver.pid" ]; then kill "$(cat "$dir/chromedriver.pid")" 2>/dev/null || true; fi
    local bin
    if bin=$(pg_bin) && [ -f "$dir/pg/postmaster.pid" ]; then
        pg_run "$bin/pg_ctl" -D "$dir/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "$cmd" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
