# recall's container image: the one `recall` binary (authority node, sidecar, mirror, operator
# CLI and development PKI), built in a Rust stage and run as a non-root user on slim Debian.
# docker-compose.yml builds it for every recall service.

# The builder: the toolchain rust-toolchain.toml pins. protoc comes from the vendored crate
# (build.rs), so nothing beyond the Rust image is needed.
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && install -m 0755 target/release/recall /usr/local/bin/recall

# The runtime: the binary, CA certificates (for issuers' JWKS URLs over HTTPS), and a user
# that owns the data and certificate folders (named volumes take this ownership when they are
# first mounted).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 recall \
    && useradd --system --uid 10001 --gid recall --home-dir /data --shell /usr/sbin/nologin recall \
    && mkdir -p /data /pki \
    && chown recall:recall /data /pki
COPY --from=builder /usr/local/bin/recall /usr/local/bin/recall
USER recall
WORKDIR /data
# A node's Raft log and state, a sidecar's persisted filters: kept across restarts.
VOLUME /data
# 7070 client port (operators, subscribers), 7071 peer port (Raft between nodes), 7080 plain
# HTTP (a node's /metrics; a sidecar's check API and /metrics), 7081 a sidecar's gRPC checks.
EXPOSE 7070 7071 7080 7081
ENTRYPOINT ["recall"]
CMD ["--help"]
