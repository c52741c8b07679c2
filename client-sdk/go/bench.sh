#!/usr/bin/env bash
# The Go SDK's benchmark: dispatch latency p50/p99 of a chain of no-op
# tasks and no-op throughput of one worker process on a fan-out, against
# the server binary ($TRIBUTARY_BIN, else target/release, else target/debug)
# on a temporary SQLite file. Sizes: CHAIN and FANOUT (default 10,000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec nice -n 10 go run ./cmd/bench -chain "${CHAIN:-10000}" -fanout "${FANOUT:-10000}" "$@"
