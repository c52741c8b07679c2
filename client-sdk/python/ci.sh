#!/usr/bin/env bash
# Everything CI needs for the Python SDK, from a fresh clone: a virtualenv
# (client-sdk/python/.venv, ignored) with the pinned tools from PyPI, the
# generated-code check, ruff, mypy --strict, the tests against the real
# `tributary` binary (TRIBUTARY_BIN, else <repo>/target/release, else
# <repo>/target/debug), a wheel build check, and the seed example end to end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"
python="${PYTHON:-python3}"

step() { printf '\n== %s\n' "$*"; }

step "virtualenv and dependencies"
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
.venv/bin/python -m pip install --quiet --no-deps -e .

step "generated code is current"
PYTHON="$here/.venv/bin/python" ./scripts/generate.sh --check

step "ruff"
.venv/bin/ruff check . ../../examples/python
.venv/bin/ruff format --check . ../../examples/python

step "mypy --strict"
.venv/bin/mypy

step "the wheel carries the typed package and the generated modules"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
.venv/bin/python -m pip wheel --quiet --no-deps --wheel-dir "$wheels" .
.venv/bin/python - "$wheels" <<'PY'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("tributary_sdk-*.whl"))
names = set(zipfile.ZipFile(wheel).namelist())
for needed in ("tributary_sdk/py.typed", "tributary_sdk/_proto/tributary/v1/executor_pb2.py",
               "tributary_sdk/_proto/tributary/v1/executor_pb2.pyi", "tributary_sdk/worker.py"):
    if needed not in names:
        sys.exit(f"{wheel.name} lacks {needed}")
print(f"{wheel.name}: {len(names)} files")
PY

step "tests (real server: ${TRIBUTARY_BIN:-found under $repo/target})"
.venv/bin/python -m pytest

step "the seed example end to end"
.venv/bin/python "$repo/examples/python/parallel_processing.py" --no-sleep
