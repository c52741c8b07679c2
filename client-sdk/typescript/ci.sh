#!/usr/bin/env bash
# Everything CI needs for the TypeScript SDK, from a fresh clone: install
# from the npm registry (into ignored node_modules/), check that src/gen/ is
# what proto/ generates, type-check (tsc --strict), lint (eslint), run the
# tests against the real server, and run the example end to end.
#
# The server binary: TRIBUTARY_BIN, else <repo>/target/release/tributary,
# else <repo>/target/debug/tributary. Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
REPO_ROOT=$(cd ../.. && pwd)
EXAMPLE="$REPO_ROOT/examples/typescript"

if [ -z "${TRIBUTARY_BIN:-}" ]; then
  for candidate in "$REPO_ROOT/target/release/tributary" "$REPO_ROOT/target/debug/tributary"; do
    if [ -x "$candidate" ]; then TRIBUTARY_BIN=$candidate; break; fi
  done
fi
if [ -z "${TRIBUTARY_BIN:-}" ] || [ ! -x "$TRIBUTARY_BIN" ]; then
  echo "ci.sh: no tributary binary; set TRIBUTARY_BIN or build target/release/tributary" >&2
  exit 1
fi
export TRIBUTARY_BIN

step() { printf '\n==> %s\n' "$*"; }

step "npm ci (SDK)"
npm ci --no-audit --no-fund

step "generated code is current"
sh scripts/generate.sh --check

step "type-check (tsc --strict)"
npx tsc -p tsconfig.json --noEmit

step "lint (eslint)"
npx eslint .

step "build"
rm -rf dist
npx tsc -p tsconfig.json

step "npm ci and type-check (example)"
npm --prefix "$EXAMPLE" ci --no-audit --no-fund
npx --prefix "$EXAMPLE" tsc -p "$EXAMPLE/tsconfig.json" --noEmit

step "tests (node --test, against $TRIBUTARY_BIN)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
node --test --test-concurrency=1 dist/test/*.test.js 2>&1 | tee "$log" || status=$?
passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -1)
echo "typescript: ${passed:-0} passed, ${failed:-0} failed"
if [ "$status" -ne 0 ] || [ "${failed:-1}" != "0" ] || [ "${passed:-0}" = "0" ]; then
  echo "ci.sh: the tests failed" >&2
  exit 1
fi

step "example: the seed workflow end to end (--no-sleep)"
npm --prefix "$EXAMPLE" start --silent -- --no-sleep

echo
echo "ci.sh: all TypeScript checks passed"
