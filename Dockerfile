# One image for every role: `docker run stampede gateway|shop|worker|migrate ...`.
#
# Two stages: the build needs the Rust toolchain (about 1.5 GB), the
# runtime only the binary and the CA certificates (for TLS to managed
# PostgreSQL or Redis), so what is shipped stays small.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# --locked: build exactly the versions of Cargo.lock, as CI tested them.
# The cache mounts keep the registry and target between builds on one host.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p stampede \
    && cp target/release/stampede /usr/local/bin/stampede

FROM debian:bookworm-slim
# curl: for the health checks of deploy/docker-compose.yml.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/stampede --create-home stampede
COPY --from=build /usr/local/bin/stampede /usr/local/bin/stampede
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it.
USER 10001
WORKDIR /var/lib/stampede
ENTRYPOINT ["stampede"]
