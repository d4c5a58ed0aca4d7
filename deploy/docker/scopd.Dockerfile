# syntax=docker/dockerfile:1
#
# The coordinator image: `scopd` and `scopctl` on a slim Debian, without libtorch
# (neither binary links it; `cargo xtask check-links` guards that).
#
# Build it from the repository root, which is the build context:
#
#   docker build -f deploy/docker/scopd.Dockerfile -t scopd:0.1.0 .
#
# CPU-only clusters use this same image: the coordinator never touches a GPU.
# Only the worker image differs between GPU and CPU-only clusters (see
# worker.Dockerfile).
#
# The build and runtime images share Debian bookworm, so the binaries find the
# glibc they were linked against. `cargo xtask check-deploy` checks every COPY
# source and the ENTRYPOINT of this file against the repository and its cargo
# targets.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Every workspace member's manifest is needed to load the workspace, so all
# members are copied; only scop-server and scopctl are compiled.
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY core core
COPY connect connect
COPY server server
COPY agent agent
COPY worker worker
COPY client client
COPY xtask xtask
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p scop-server -p scopctl --bin scopd --bin scopctl \
 && install -D -t /out target/release/scopd target/release/scopctl

FROM ${RUNTIME_IMAGE}
# ca-certificates: scopctl verifies TLS servers against the system roots unless
# given --ca-cert. The numeric user lets Kubernetes verify runAsNonRoot.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 scop \
 && useradd --uid 10001 --gid scop --home-dir /var/lib/scop --no-create-home --shell /usr/sbin/nologin scop \
 && install -d -o 10001 -g 10001 /var/lib/scop
COPY --from=build /out/scopd /usr/local/bin/scopd
COPY --from=build /out/scopctl /usr/local/bin/scopctl
USER 10001:10001
WORKDIR /var/lib/scop
# Public gRPC API, worker gRPC API, HTTP /metrics. scopd binds loopback unless
# told otherwise: in a container pass 0.0.0.0 addresses (the Kubernetes
# manifests do, in their config file).
EXPOSE 7070 7071 7072
ENTRYPOINT ["/usr/local/bin/scopd"]
