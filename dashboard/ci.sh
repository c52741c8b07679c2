#!/usr/bin/env bash
# Everything CI needs for the dashboard, from a fresh clone: install from
# the npm registry (into ignored node_modules/), check that src/gen/ is what
# proto/ generates, type-check (tsc --strict), rebuild the bundle and fail
# when it differs from the committed server/src/web/assets/ (the server
# embeds those files, so a clone builds and serves the dashboard without
# Node), then run the browser tests against the real server.
#
# Binaries: TRIBUTARY_BIN (else <repo>/target/debug/tributary, built from
# the committed assets), PARALLEL_PROCESSING_BIN and ERROR_HANDLING_BIN
# (else the examples in <repo>/target/debug/); CHROMIUM_BIN (else
# /usr/bin/chromium).
# Screenshots and the 10,000-task timing go to target/dashboard-screenshots/
# (DASHBOARD_ARTIFACTS). `--no-browser` stops after the bundle check.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
REPO_ROOT=$(cd .. && pwd)

step() { printf '\n==> %s\n' "$*"; }

step "npm ci (dashboard)"
npm ci --no-audit --no-fund

step "generated code is current"
sh scripts/generate.sh --check

step "type-check (tsc --strict)"
npx tsc -p tsconfig.json --noEmit

step "the committed bundle is what the sources build"
node build.mjs
if ! git -C "$REPO_ROOT" diff --exit-code -- server/src/web/assets ||
    [ -n "$(git -C "$REPO_ROOT" ls-files --others --exclude-standard -- server/src/web/assets)" ]; then
  echo "server/src/web/assets differs from what dashboard/ builds: run 'npm --prefix dashboard run build', rebuild the server and commit the assets" >&2
  exit 1
fi
echo "server/src/web/assets is current"

if [ "${1:-}" = "--no-browser" ]; then
  exit 0
fi

step "browser tests (node --test, chromium ${CHROMIUM_BIN:-/usr/bin/chromium})"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
node --test --test-concurrency=1 test/*.test.mjs 2>&1 | tee "$log" || status=$?
passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -1)
echo "dashboard: ${passed:-0} passed, ${failed:-0} failed"
if [ "$status" -ne 0 ] || [ "${failed:-1}" != "0" ] || [ "${passed:-0}" = "0" ]; then
  echo "ci.sh: the browser tests failed" >&2
  exit 1
fi
echo "screenshots and timings: ${DASHBOARD_ARTIFACTS:-$REPO_ROOT/target/dashboard-screenshots}"
echo
echo "ci.sh: all dashboard checks passed"
