#!/bin/sh
# Regenerates src/gen/ from proto/ with buf and protoc-gen-es from
# node_modules (run `npm ci` first). With --check, fails when the committed
# code differs from what the protos generate.
set -eu
cd "$(dirname "$0")/.."
node_modules/.bin/buf generate
if [ "${1:-}" = "--check" ]; then
  if ! git diff --exit-code -- src/gen || [ -n "$(git ls-files --others --exclude-standard -- src/gen)" ]; then
    echo "dashboard/src/gen is not what proto/ generates: run npm run generate and commit the result" >&2
    exit 1
  fi
  echo "dashboard/src/gen is current"
fi
