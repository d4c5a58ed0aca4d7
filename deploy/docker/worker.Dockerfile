# syntax=docker/dockerfile:1
#
# The worker image: `scop-worker` (the agent and its trainer ranks) with the
# libtorch 2.11 and NCCL libraries of the PyTorch wheel, on a CUDA 13 runtime.
#
# Build it from the repository root, which is the build context:
#
#   docker build -f deploy/docker/worker.Dockerfile -t scop-worker:0.1.0 .
#
# CPU-only clusters: this image runs on nodes without GPUs as it is (libtorch
# then reports no CUDA device and the agent offers CPU slots), so the cpu-dev
# overlay uses it unchanged. For a much smaller CPU-only image, build against
# PyTorch's CPU-only wheel of the same version on a plain Ubuntu base:
#
#   docker build -f deploy/docker/worker.Dockerfile \
#     --build-arg RUNTIME_IMAGE=ubuntu:24.04 \
#     --build-arg TORCH_INDEX_URL=<the CPU wheel index from PyTorch's install page> \
#     -t scop-worker:0.1.0-cpu .
#
# The `nccl` feature is on by default, for CPU images too: scop-worker links no
# NCCL or CUDA driver library and opens libnccl only when a job uses NCCL.
#
# Library layout: torch-sys records libtorch's directory as the binary's rpath
# (worker/build.rs), and the wheel's libraries find their CUDA, cuDNN and NCCL
# siblings through `$ORIGIN/../../nvidia/*/lib`. So the wheel is unpacked under
# /opt/pytorch in the build stage and its lib folders are copied to the very
# same paths in the runtime image; no LD_LIBRARY_PATH is needed for libtorch.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# The wheel brings its own CUDA runtime libraries; the `-base-` flavour of the
# same CUDA release also works and is smaller.
ARG RUNTIME_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04

# The PyTorch wheel and the NVIDIA wheels it depends on, unpacked (not a
# Python environment: only its headers and shared libraries are used).
FROM ${PYTHON_IMAGE} AS torch
# tch 0.24 is built for exactly this version (xtask/requirements.txt pins the same).
ARG TORCH_VERSION=2.11.0
ARG TORCH_INDEX_URL=
RUN pip install --no-cache-dir --disable-pip-version-check --target /opt/pytorch \
      ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}" \
 && mkdir -p /opt/pytorch/nvidia /opt/runtime \
 && cd /opt/pytorch \
 && if [ -e nvidia/nccl/lib/libnccl.so.2 ]; then ln -sf libnccl.so.2 nvidia/nccl/lib/libnccl.so; fi \
 && cp -a --parents torch/lib /opt/runtime/ \
 && for lib in nvidia/*/lib; do if [ -d "$lib" ]; then cp -a --parents "$lib" /opt/runtime/; fi; done
# The `libnccl.so` link above: cudarc opens NCCL by that name, and the wheel
# ships only `libnccl.so.2`.

FROM ${RUST_IMAGE} AS build
COPY --from=torch /opt/pytorch /opt/pytorch
ENV LIBTORCH=/opt/pytorch/torch \
    LIBTORCH_CXX11_ABI=1
WORKDIR /src
# Every workspace member's manifest is needed to load the workspace, so all
# members are copied; only scop-worker is compiled.
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY core core
COPY connect connect
COPY server server
COPY agent agent
COPY worker worker
COPY client client
COPY xtask xtask
# Extra cargo features of scop-worker, beyond its defaults (which include nccl).
ARG WORKER_FEATURES=
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p scop-worker --bin scop-worker --features "${WORKER_FEATURES}" \
 && install -D -t /out target/release/scop-worker

FROM ${RUNTIME_IMAGE}
RUN groupadd --gid 10001 scop \
 && useradd --uid 10001 --gid scop --home-dir /tmp --no-create-home --shell /usr/sbin/nologin scop
COPY --from=torch /opt/runtime/ /opt/pytorch/
COPY --from=build /out/scop-worker /usr/local/bin/scop-worker
# cudarc finds libnccl.so here; the CUDA base image's own entries stay behind it.
ENV LD_LIBRARY_PATH=/opt/pytorch/nvidia/nccl/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}} \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/scop-worker"]
CMD ["agent"]
