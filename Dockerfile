# syntax=docker/dockerfile:1
#
# The Tributary server image (docs/deploy.md):
#   docker build -t tributary .
#   docker run -p 50051:50051 -v tributary-data:/var/lib/tributary \
#     -v "$PWD/tls:/etc/tributary:ro" \
#     -e TRIBUTARY_ADMIN_KEY_FILE=/etc/tributary/admin.key \
#     -e TRIBUTARY_TLS_CERT=/etc/tributary/server.pem \
#     -e TRIBUTARY_TLS_KEY=/etc/tributary/server.key \
#     -e TRIBUTARY_TLS_CA=/etc/tributary/ca.pem tributary
# The server listens on 0.0.0.0:50051, so it refuses to start without API
# keys (a bootstrap admin key) and TLS, or TRIBUTARY_INSECURE=true, which is
# only for a private network where everyone who can reach the port may do
# everything (docs/security.md). The HEALTHCHECK's `tributary health`
# follows TRIBUTARY_LISTEN, over https://localhost when TRIBUTARY_TLS_CERT is
# set, trusting TRIBUTARY_TLS_CA (so the certificate must name localhost). It keeps its SQLite database in the volume at
# /var/lib/tributary; set TRIBUTARY_DATABASE_URL to a postgres:// URL to use
# Postgres instead (deploy/compose.yaml does).
#
# Base images are pinned to a release, not a floating tag, so a rebuild of
# the same source gets the same toolchain and system; bump them on purpose.

# --- Build --------------------------------------------------------------------
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src

# The whole workspace: every member listed in Cargo.toml's `members` must be
# present for cargo to load it, even when only the server is built
# (scripts/docker-check.sh checks that none is missing).
COPY Cargo.toml Cargo.lock build.rs ./
COPY src/ src/
COPY proto/ proto/
COPY core/ core/
COPY server/ server/
COPY tests/ tests/
COPY examples/ examples/
COPY bench/ bench/
COPY conformance/ conformance/
COPY client-sdk/ client-sdk/

# The registry and the target directory live in BuildKit cache mounts, so a
# change to the source recompiles the workspace's crates, not every
# dependency. The `dist` profile is `release`, stripped of symbols.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile dist --locked -p tributary-server --bin tributary \
    && cp target/dist/tributary /usr/local/bin/tributary

# --- Runtime ------------------------------------------------------------------
FROM debian:12.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 tributary \
    && useradd --system --uid 10001 --gid tributary \
        --home-dir /var/lib/tributary --no-create-home \
        --shell /usr/sbin/nologin tributary \
    && mkdir -p /var/lib/tributary \
    && chown tributary:tributary /var/lib/tributary

COPY --from=builder /usr/local/bin/tributary /usr/local/bin/tributary

WORKDIR /var/lib/tributary
ENV TRIBUTARY_LISTEN=0.0.0.0:50051 \
    TRIBUTARY_DATABASE_URL=sqlite:///var/lib/tributary/tributary.db
EXPOSE 50051
VOLUME /var/lib/tributary

# `tributary health` without --server asks the address TRIBUTARY_LISTEN
# names (0.0.0.0 read as 127.0.0.1; https://localhost when TRIBUTARY_TLS_CERT
# is set), so the check follows the configuration.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["tributary", "health"]

USER tributary
ENTRYPOINT ["tributary"]
CMD ["serve"]
