#!/usr/bin/env bash
# The executor-protocol conformance suite (conformance/SPEC.md) against the
# Rust SDK's conformance worker, in one command: builds the runner and the
# worker (debug), then runs
#
#   tributary-conformance --worker-cmd target/debug/examples/conformance_worker
#
# Arguments pass through to the runner, e.g. `scripts/conformance.sh --only
# capacity,graceful_drain`. The server binary is $TRIBUTARY_BIN, else
# target/release/tributary, else target/debug/tributary (built here when none
# exists).
#
# Exit status: the runner's (0 when every scenario passed).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

build() { nice -n 10 cargo build --quiet "$@"; }
target="${CARGO_TARGET_DIR:-$PWD/target}"

build -p tributary-conformance
build -p tributary-workflow --example conformance_worker
if [[ -z "${TRIBUTARY_BIN:-}" && ! -x target/release/tributary && ! -x target/debug/tributary ]]; then
    build -p tributary-server --bin tributary
    export TRIBUTARY_BIN="$target/debug/tributary"
fi

exec "$target/debug/tributary-conformance" \
    --worker-cmd "$(printf %q "$target/debug/examples/conformance_worker")" "$@"
