#!/usr/bin/env bash
# `make bench-fleet`: a throwaway PostgreSQL server (Debian's `postgresql`, with its default
# durability: fsync on) in .cache/bench-fleet, `routerctl bench-fleet` against it, then the server
# removed. Bench only: the fleet's tests start servers of their own.
#
# Usage: scripts/bench-fleet.sh run [routerctl bench-fleet options]
#        scripts/bench-fleet.sh db stop|start     (what the benchmark calls for its outage)
set -euo pipefail
cd "$(dirname "$0")/.."
folder=$PWD/.cache/bench-fleet
port=${BENCH_FLEET_PG_PORT:-18110}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
test -x "$bin/initdb" || { echo "bench-fleet: PostgreSQL's server programs are missing (apt-get install postgresql)" >&2; exit 1; }
# PostgreSQL refuses to run as root: under root the cluster is the postgres user's.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_ctl() { as_owner "$bin/pg_ctl" -D "$folder/data" "$@"; }
case "${1:?usage: scripts/bench-fleet.sh run [options] | db stop|start}" in
db)
    # Whoever runs this (routerctl, through Foundation's Process) learns that it exited when a
    # descriptor it handed down closes; the server would inherit it and hold it for its whole life.
    for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
    case "${2:?stop or start}" in
    stop) pg_ctl -m immediate -w stop >/dev/null ;;
    start) pg_ctl -o "-p $port -k $folder -c listen_addresses=127.0.0.1" -l "$folder/server.log" -w -t 60 start >/dev/null ;;
    esac
    ;;
run)
    shift
    rm -rf "$folder" && mkdir -p "$folder"
    password="bench-$RANDOM$RANDOM"
    printf '%s\n' "$password" > "$folder/pwfile"
    printf '%s\n' "$password" > "$folder/password" && chmod 600 "$folder/password"
    [ "$(id -u)" = 0 ] && chown postgres "$folder" "$folder/pwfile"
    as_owner "$bin/initdb" -D "$folder/data" -U routerd -A scram-sha-256 --pwfile "$folder/pwfile" -E UTF8 >/dev/null
    trap 'pg_ctl -m immediate stop >/dev/null 2>&1 || true; rm -rf "$folder"' EXIT
    "$0" db start
    .build/release/routerctl bench-fleet --url "postgresql://routerd@127.0.0.1:$port/postgres" --password-file "$folder/password" \
        --database-control "$0 db" "$@"
    ;;
esac
