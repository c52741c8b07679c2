#!/usr/bin/env bash
# Regenerates gen/tributary/v1 from ../../proto with pinned tools taken from
# the package registries only (buf from npm, the two protoc plugins from the
# Go module proxy), installed under .tools/ (ignored by git).
#
#   ./generate.sh          regenerate
#   ./generate.sh --check  regenerate, then fail if the committed code differs
set -euo pipefail

BUF_VERSION=1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/.tools"
cd "$here"

if [[ ! -x "$tools/buf/node_modules/.bin/buf" ]] ||
    ! "$tools/buf/node_modules/.bin/buf" --version 2>/dev/null | grep -qx "$BUF_VERSION"; then
  npm install --silent --no-audit --no-fund --prefix "$tools/buf" "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi
version_of() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3 }'; }
if [[ "$(version_of "$tools/bin/protoc-gen-go")" != "$PROTOC_GEN_GO_VERSION" ]]; then
  GOBIN="$tools/bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
if [[ "$(version_of "$tools/bin/protoc-gen-go-grpc")" != "$PROTOC_GEN_GO_GRPC_VERSION" ]]; then
  GOBIN="$tools/bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

rm -rf gen
PATH="$tools/bin:$PATH" "$tools/buf/node_modules/.bin/buf" generate ../../proto --template buf.gen.yaml

if [[ "${1:-}" == "--check" ]]; then
  if ! git diff --exit-code -- gen || [[ -n "$(git status --porcelain -- gen)" ]]; then
    git status --short -- gen
    echo "generated code in client-sdk/go/gen is out of date: run client-sdk/go/generate.sh and commit" >&2
    exit 1
  fi
  echo "generated code is current"
fi
