# syntax=docker/dockerfile:1
#
# The Tributary server image:
#   docker build -t tributary .
#   docker run -p 50051:50051 -v tributary-data:/var/lib/tributary tributary
# By default the server listens on 0.0.0.0:50051 and keeps its SQLite database
# in the volume at /var/lib/tributary; set TRIBUTARY_DATABASE_URL to a
# postgres:// URL to use Postgres instead.

# --- Build --------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src

# The whole workspace: every member listed in Cargo.toml's `members` must be
# present for cargo to load it, even when only the server is built.
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

RUN cargo build --release --locked -p tributary-server \
    && cp target/release/tributary /usr/local/bin/tributary

# --- Runtime ------------------------------------------------------------------
FROM debian:bookworm-slim

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

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["tributary", "health", "--server", "http://127.0.0.1:50051"]

USER tributary
ENTRYPOINT ["tributary"]
CMD ["serve"]
