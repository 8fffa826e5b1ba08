# syntax=docker/dockerfile:1
# tenantgate: a multi-stage build. The builder compiles the release binary (dependencies in a
# layer of their own, rebuilt only when Cargo.toml or Cargo.lock change); the runtime image is
# distroless: glibc, libgcc, CA certificates and the binary, no shell, no package manager.
#
#   docker build -t tenantgate .
#   docker run --rm -p 8080:8080 -v tenantgate-data:/data tenantgate
#
# Base images are pinned by tag (Debian 12 on both sides: the binary links the glibc it runs
# on); pin them by digest too in a release pipeline.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# 1. Dependencies only: the workspace manifests and the lock, each crate reduced to an empty
#    target, built once. This layer is reused until a manifest or the lock changes.
COPY Cargo.toml Cargo.lock ./
COPY crates/mockllm/Cargo.toml crates/mockllm/
COPY crates/tenantgate/Cargo.toml crates/tenantgate/
COPY crates/tenantgate-audit/Cargo.toml crates/tenantgate-audit/
COPY crates/tenantgate-bench/Cargo.toml crates/tenantgate-bench/
COPY crates/tenantgate-bleed/Cargo.toml crates/tenantgate-bleed/
COPY crates/tenantgate-core/Cargo.toml crates/tenantgate-core/
COPY crates/tenantgate-crypto/Cargo.toml crates/tenantgate-crypto/
COPY crates/tenantgate-gateway/Cargo.toml crates/tenantgate-gateway/
COPY crates/tenantgate-guard/Cargo.toml crates/tenantgate-guard/
COPY crates/tenantgate-kms-aws/Cargo.toml crates/tenantgate-kms-aws/
COPY crates/tenantgate-providers/Cargo.toml crates/tenantgate-providers/
COPY crates/tenantgate-rag/Cargo.toml crates/tenantgate-rag/
COPY crates/tenantgate-store/Cargo.toml crates/tenantgate-store/
#    Then the stubs' own artifacts go: COPY keeps the sources' modification times, which can
#    be older than the stubs', and cargo would take the stubs as up to date.
RUN for c in crates/*/; do mkdir -p "$c/src" && touch "$c/src/lib.rs"; done \
 && echo 'fn main() {}' > crates/tenantgate/src/main.rs \
 && cargo build --release --locked -p tenantgate \
 && rm -rf crates/*/src \
           target/release/.fingerprint/tenantgate* target/release/.fingerprint/mockllm-* \
           target/release/deps/*tenantgate* target/release/deps/*mockllm*

# 2. The sources: only the workspace's crates are rebuilt.
COPY crates crates
#    And the data directory, owned by the runtime user (the runtime image has no shell).
RUN cargo build --release --locked -p tenantgate \
 && install -D -m 0755 target/release/tenantgate /out/usr/local/bin/tenantgate \
 && install -d -m 0750 -o 65532 -g 65532 /out/data

# gcr.io/distroless/cc-debian12: glibc, libgcc_s, CA certificates, tzdata; the :nonroot tag
# runs as uid/gid 65532 by default.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/usr/local/bin/tenantgate /usr/local/bin/tenantgate
COPY --from=builder --chown=65532:65532 /out/data /data
COPY --chown=0:0 deploy/docker/tenantgate.toml /etc/tenantgate/tenantgate.toml
# Numeric, so a runtime that checks runAsNonRoot can prove it without reading /etc/passwd.
USER 65532:65532
# The default configuration: listen on 0.0.0.0:8080, everything under /data. Mount another
# file over it (the Kubernetes ConfigMap does) or override keys with TENANTGATE_<SECTION>__<KEY>.
ENV TENANTGATE_CONFIG=/etc/tenantgate/tenantgate.toml \
    TENANTGATE_LOG_FORMAT=json
# The SQLite database, the key files (unless given as TENANTGATE_SERVER_SECRET,
# TENANTGATE_MASTER_KEY, TENANTGATE_AUDIT_SIGNING_KEY), the audit witness and the index cache.
VOLUME ["/data"]
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tenantgate"]
CMD ["serve"]
