#!/usr/bin/env bash
# Regenerates the protobuf and gRPC modules under src/tributary_sdk/_proto
# from ../../proto with grpcio-tools (its bundled protoc) and mypy-protobuf,
# at the versions pinned in requirements-dev.txt. `--check` regenerates into
# a scratch directory and fails when the committed files differ.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
target="$here/src/tributary_sdk/_proto"

generate() {
  local out="$1"
  rm -rf "$out"
  mkdir -p "$out"
  (cd "$proto_root" && PATH="$(dirname "$python"):$PATH" "$python" -m grpc_tools.protoc \
    -I . \
    --python_out="$out" \
    --grpc_python_out="$out" \
    --mypy_out="$out" \
    --mypy_grpc_out="$out" \
    tributary/v1/workflow.proto tributary/v1/run.proto tributary/v1/executor.proto tributary/v1/key.proto \
    tributary/v1/schedule.proto)
  # protoc writes absolute imports of the proto package (`tributary.v1`);
  # a PyPI project named `tributary` owns that top-level name, so the
  # modules import each other through this package instead.
  find "$out" -name '*.py' -o -name '*.pyi' | sort | while read -r file; do
    sed -i -e 's/^from tributary\.v1 import/from tributary_sdk._proto.tributary.v1 import/' \
           -e 's/^import tributary\.v1\./import tributary_sdk._proto.tributary.v1./' "$file"
  done
  touch "$out/__init__.py" "$out/tributary/__init__.py" "$out/tributary/v1/__init__.py"
}

if [[ "${1:-}" == "--check" ]]; then
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  generate "$scratch/_proto"
  if ! diff -r "$target" "$scratch/_proto" -x __pycache__ >/dev/null; then
    diff -r "$target" "$scratch/_proto" -x __pycache__ | head -40 >&2
    echo "generated code is stale: run client-sdk/python/scripts/generate.sh" >&2
    exit 1
  fi
  echo "generated code is current"
else
  generate "$target"
  echo "generated $target"
fi
