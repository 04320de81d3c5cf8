# syntax=docker/dockerfile:1
#
# The Concierge image: one binary, every role.
#
#   docker build -t concierge:dev \
#     --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) .
#
#   docker run --rm concierge:dev --help
#   docker run ... concierge:dev serve      # API + webhooks (the default command)
#   docker run ... concierge:dev worker     # background jobs and scheduled backups
#   docker run ... concierge:dev all        # both in one process
#   docker run ... concierge:dev migrate    # apply migrations and exit
#
# deploy/compose.yaml runs this image for the api, worker and migrate services.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# --- build -------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src

# The workspace needs every member's manifest, so the whole tree (minus .dockerignore) comes
# in. BuildKit cache mounts keep the registry and target/ between builds, which does the job
# a separate dependency layer would do, without a second copy of the manifests to keep in step.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p concierge \
 && install -D -m 0755 target/release/concierge /out/usr/local/bin/concierge \
 && install -d -m 0750 /out/data

# --- runtime -----------------------------------------------------------------------------
# distroless/cc: glibc, libgcc and CA certificates, no shell, no package manager. The binary
# needs nothing else: TLS is rustls with ring, SQLite is bundled.
FROM ${RUNTIME_IMAGE}

ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""

LABEL org.opencontainers.image.title="concierge" \
      org.opencontainers.image.description="Concierge: a self-hosted, multi-tenant AI agent platform in one binary (serve, worker, all, migrate)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="AGPL-3.0-only" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/usr/local/bin/concierge /usr/local/bin/concierge
# /data belongs to the nonroot user (65532), so a volume mounted there is writable by it.
COPY --from=builder --chown=65532:65532 /out/data /data

# Container defaults. Every other setting (and every secret, through *_FILE) comes from the
# environment: see docs/CONFIGURATION.md and deploy/compose.yaml.
ENV CONCIERGE_DATA_DIR=/data \
    CONCIERGE_HTTP__LISTEN=0.0.0.0:8080 \
    CONCIERGE_ADMIN__LISTEN=0.0.0.0:9090 \
    CONCIERGE_LOG_FORMAT=json

USER nonroot:nonroot
WORKDIR /data

# 8080: API, webhooks, /health, /ready (behind nginx). 9090: /metrics, never public.
EXPOSE 8080 9090

# Liveness of the API listener (GET /health on http.listen). The worker role has no API
# listener: compose overrides this check for it with the admin listener's address
# (`concierge healthcheck --url http://127.0.0.1:9090`).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["concierge", "healthcheck"]

ENTRYPOINT ["concierge"]
CMD ["serve"]
