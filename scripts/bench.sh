#!/usr/bin/env bash
# The benchmark, in one command: builds tributary-bench in release mode and
# runs every scenario on embedded SQLite and, when the Postgres server
# binaries are installed, on a throwaway Postgres cluster with fsync on (the
# default durability). Arguments go to tributary-bench, e.g.
#
#   scripts/bench.sh                          # the sizes of docs/benchmarks.md
#   scripts/bench.sh --json > bench.json
#   scripts/bench.sh --scenario chain --chain 10000
#
# Without Postgres it runs SQLite only and says so.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '%s\n' "$*" >&2; }

# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh

cargo build --release -p tributary-bench >&2
bench=target/release/tributary-bench

databases=(--database sqlite)
if read -r initdb pg_ctl < <(find_postgres) && { ((EUID != 0)) || id -u postgres >/dev/null 2>&1; }; then
    pg_server_options=""
    if start_postgres; then
        databases=(--database sqlite,postgres --postgres-url "postgres://postgres@127.0.0.1:$pg_port/postgres")
    else
        log "Postgres did not start: benchmarking SQLite only"
    fi
else
    log "Postgres not found: benchmarking SQLite only (install postgresql for both)"
fi

"$bench" "${databases[@]}" "$@"
