# Harpagon: one image runs every role (`harpagon controller | frontend | worker | serve | plan | certs`).
#
#   CPU image (controller, frontends, emulated or CPU workers):
#     docker build -t harpagon:0.1.0 .
#   GPU image (workers with --device cuda:N):
#     docker build --build-arg VARIANT=cuda -t harpagon-cuda:0.1.0 .
#
# Base: python:3.11-slim for both variants. PyTorch's Linux wheels bring their own CUDA runtime
# (cuBLAS, cuDNN, NCCL... as nvidia-* wheels), so a GPU container needs only the host's NVIDIA driver,
# which the NVIDIA container toolkit / Kubernetes device plugin mounts in. An nvidia/cuda base would
# add a second, unused copy of CUDA and bring Ubuntu 22.04's Python 3.10, not the 3.11 this project
# needs. VARIANT therefore only picks the wheels: `cpu` (default) installs PyTorch's CPU-only build
# (no CUDA libraries: a much smaller image), `cuda` the CUDA build from PyPI. TORCH_INDEX_URL overrides
# the index (e.g. https://download.pytorch.org/whl/cu126 for an older driver), TORCH_FIND_LINKS adds a
# local wheel folder (air-gapped builds; mount it with `--volume` / `RUN --mount`).
#
# The source tree is kept whole at /opt/harpagon (an editable install): the package finds
# models/registry.yaml and the default configs next to itself, and app configs can include
# /opt/harpagon/models/profiles/*.yaml.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: a virtual environment with PyTorch and Harpagon -----------------------------------
FROM ${PYTHON_IMAGE} AS builder

ARG VARIANT=cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=""
ARG TORCH_FIND_LINKS=""

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# PyTorch first, from the variant's index, in its own layer (the largest, and the one that changes least).
RUN case "${VARIANT}" in \
      cpu) index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
      cuda) index="${TORCH_INDEX_URL:-https://pypi.org/simple}" ;; \
      *) echo "VARIANT must be cpu or cuda, got '${VARIANT}'" >&2; exit 1 ;; \
    esac \
 && PIP_FIND_LINKS="${TORCH_FIND_LINKS}" pip install --no-cache-dir --index-url "${index}" \
      "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

WORKDIR /opt/harpagon
COPY pyproject.toml README.md ./
COPY harpagon ./harpagon
COPY configs ./configs
COPY models ./models
# The rest of the dependencies from PyPI; torch is already satisfied.
RUN pip install --no-cache-dir --editable . \
 && python3 -m compileall -q harpagon \
 && python3 -c "import harpagon.cli, torch; print('torch', torch.__version__)"

# --- runtime: the venv and the tree, a non-root user ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VARIANT=cpu
LABEL org.opencontainers.image.title="harpagon" \
      org.opencontainers.image.description="Cost-minimising DNN inference serving (controller, frontend, worker)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.harpagon.variant="${VARIANT}"

RUN groupadd --gid 10001 harpagon \
 && useradd --uid 10001 --gid 10001 --no-log-init --home-dir /home/harpagon --create-home \
      --shell /usr/sbin/nologin harpagon

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/harpagon /opt/harpagon

# Caches go to /tmp, so the container runs with a read-only root filesystem (and /tmp an emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/harpagon \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    TORCH_HOME=/tmp/torch \
    HARPAGON_VARIANT=${VARIANT}

WORKDIR /opt/harpagon
USER 10001:10001

# controller 50051, worker 50052, frontend Triton gRPC 8001 and metrics 8002,
# gRPC health 8090, controller metrics 9101, worker metrics 9102
EXPOSE 50051 50052 8001 8002 8090 9101 9102

ENTRYPOINT ["harpagon"]
CMD ["--help"]
