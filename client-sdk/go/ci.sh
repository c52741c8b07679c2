#!/usr/bin/env bash
# Everything CI needs for the Go SDK, from a fresh clone: dependencies from
# the Go module proxy (and buf from npm for the generated-code check), the
# generated-code check, gofmt, go vet, staticcheck, the tests with -race
# against the real server binary, the conformance worker's build, and the
# seed example end to end (alone, then split over two processes).
#
# The server binary: $TRIBUTARY_BIN, else <repo>/target/release/tributary,
# else <repo>/target/debug/tributary.
set -euo pipefail

STATICCHECK_VERSION=v0.8.2

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$sdk/../.." && pwd)"
examples="$repo/examples/go"
cd "$sdk"

if [[ -z "${TRIBUTARY_BIN:-}" ]]; then
  for candidate in "$repo/target/release/tributary" "$repo/target/debug/tributary"; do
    if [[ -x "$candidate" ]]; then
      TRIBUTARY_BIN="$candidate"
      break
    fi
  done
fi
if [[ -z "${TRIBUTARY_BIN:-}" || ! -x "$TRIBUTARY_BIN" ]]; then
  echo "ci.sh: no server binary: set TRIBUTARY_BIN or build target/{release,debug}/tributary" >&2
  exit 1
fi
export TRIBUTARY_BIN
echo "server binary: $TRIBUTARY_BIN"

step() { echo; echo "== $*"; }

step "dependencies"
go mod download
(cd "$examples" && go mod download)
go mod verify

step "generated code is current"
./generate.sh --check

step "gofmt"
unformatted="$(gofmt -l . "$examples" | grep -v '^gen/' || true)"
if [[ -n "$unformatted" ]]; then
  echo "not gofmt-formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi

step "go vet"
go vet ./...
(cd "$examples" && go vet ./...)

step "staticcheck $STATICCHECK_VERSION"
# Every check, the stylistic ones (package and doc comment forms) included.
go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" -checks all ./...
(cd "$examples" && go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" -checks all ./...)

step "build the conformance worker"
go build -o bin/conformance-worker ./cmd/conformance-worker
echo "conformance worker: $sdk/bin/conformance-worker"

step "tests (go test -race)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
{
  nice -n 10 go test -race -count=1 -v ./...
  sdk_status=$?
  (cd "$examples" && nice -n 10 go test -race -count=1 -v ./...)
  examples_status=$?
  [[ $sdk_status -eq 0 && $examples_status -eq 0 ]]
} 2>&1 | tee "$log" | grep -E '^(--- |ok |FAIL|PASS|panic:|\s+.*_test\.go:[0-9]+:)'
tests_status=${PIPESTATUS[0]}
set -e
passed="$(grep -cE '^\s*--- PASS' "$log" || true)"
failed="$(grep -cE '^\s*--- FAIL' "$log" || true)"
echo "go test: $passed passed, $failed failed"
if [[ $tests_status -ne 0 || $failed -ne 0 ]]; then
  echo "ci.sh: tests failed; the full output:" >&2
  grep -vE '^(=== |--- PASS)' "$log" | tail -200 >&2
  exit 1
fi

step "the seed example, end to end"
output="$(cd "$examples" && go run ./parallel_processing --no-sleep)"
echo "$output"
grep -qx "All 9 tasks succeeded." <<<"$output"
grep -qx "All               10,000    4,950,000     259,875,000.00" <<<"$output"

step "the seed example split over two workers (this one serves only the partitions)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
scratch="$(mktemp -d)"
"$TRIBUTARY_BIN" serve --listen "127.0.0.1:$port" --database-url "sqlite://$scratch/tributary.db" --log-level warn &
server_pid=$!
(cd "$examples" && go build -o "$scratch/parallel_processing" ./parallel_processing)
"$scratch/parallel_processing" --server "http://127.0.0.1:$port" --worker-only --no-sleep \
  --handlers process_partition_1,process_partition_2,process_partition_3 &
partitions_pid=$!
cleanup() {
  kill "$partitions_pid" "$server_pid" 2>/dev/null || true
  wait "$partitions_pid" "$server_pid" 2>/dev/null || true
  rm -rf "$scratch" "$log"
}
trap cleanup EXIT
for _ in $(seq 200); do
  if "$TRIBUTARY_BIN" health --server "http://127.0.0.1:$port" >/dev/null 2>&1; then break; fi
  sleep 0.05
done
output="$("$scratch/parallel_processing" --server "http://127.0.0.1:$port" --no-sleep \
  --handlers generate_data,partition_data,combine_results,generate_report,send_notifications,cleanup)"
echo "$output"
grep -qx "All 9 tasks succeeded." <<<"$output"
# The Go workflow is the definition file's: the same version.
go_version="$(sed -n 's/^Run .* (version \([0-9a-f]*\)): SUCCEEDED$/\1/p' <<<"$output")"
file_json="$("$TRIBUTARY_BIN" workflow register "$repo/examples/parallel_processing.workflow.yaml" --server "http://127.0.0.1:$port" --json)"
if [[ -z "$go_version" ]] || ! grep -q "\"version\":\"$go_version\"" <<<"$file_json"; then
  echo "the Go example's workflow (version ${go_version:-?}) differs from examples/parallel_processing.workflow.yaml" >&2
  exit 1
fi
echo "the Go example registers the definition file's version, $go_version"
kill -TERM "$partitions_pid"
wait "$partitions_pid"
echo "the partitions worker drained and exited 0 on SIGTERM"

echo
echo "ci.sh: all Go SDK checks passed"
