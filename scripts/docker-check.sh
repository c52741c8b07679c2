#!/usr/bin/env bash
# Checks the container image: with a running container engine, builds it,
# starts it and waits for its HEALTHCHECK to report healthy; without one,
# lints the Dockerfile (with BuildKit's parser, from PyPI's `dockerfile`
# package when it installs) and deploy/compose.yaml (scripts/docker_lint.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scratch=$(mktemp -d)
trap 'rm -rf -- "$scratch"; [[ -n ${container:-} ]] && docker rm -f "$container" >/dev/null 2>&1 || true' EXIT

# The lint always runs: it checks what a build cannot (pinned images, the
# compose file).
python=python3
if python3 -m venv "$scratch/venv" >/dev/null 2>&1 &&
    "$scratch/venv/bin/pip" install --quiet --disable-pip-version-check dockerfile==3.4.0 pyyaml >/dev/null 2>&1; then
    python="$scratch/venv/bin/python"
else
    echo "docker-check: could not install the dockerfile parser; linting line by line"
fi
"$python" scripts/docker_lint.py

if ! docker info >/dev/null 2>&1; then
    echo "docker-check: no container engine running here; the image was linted, not built"
    exit 0
fi

DOCKER_BUILDKIT=1 docker build -t tributary:check .
# A listen address other than the default, to prove the healthcheck follows
# it; TRIBUTARY_INSECURE because the container has no keys or TLS.
container=$(docker run -d -e TRIBUTARY_LISTEN=0.0.0.0:50099 -e TRIBUTARY_INSECURE=true tributary:check)
for _ in $(seq 1 60); do
    status=$(docker inspect --format '{{.State.Health.Status}}' "$container")
    if [[ $status == healthy ]]; then
        echo "docker-check: the image builds and its healthcheck (on port 50099) passes"
        exit 0
    fi
    sleep 2
done
docker logs "$container" || true
echo "docker-check: the container never became healthy"
exit 1
