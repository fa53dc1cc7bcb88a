# Harpagon's images. One entry point, `harpagon`; two targets:
#
#   slim    the controller, frontends, emulated workers, `plan`, `certs`, `health`: the base install and
#           [traces] (OpenTelemetry, for --otlp-endpoint), no torch
#             docker build --target slim -t harpagon:0.1.0 .
#   worker  the base install and PyTorch, for real workers; VARIANT picks the PyTorch build
#             docker build --target worker -t harpagon-worker:0.1.0 .                                  (cpu)
#             docker build --target worker --build-arg VARIANT=cuda -t harpagon-worker-cuda:0.1.0 .
#
# Needs BuildKit (the default builder since Docker 23; `docker buildx build`; podman/buildah with
# `--format docker`): every pip step mounts secrets and a wheel folder. Without --target the last stage,
# worker, is built.
#
# What goes in: a `build` stage turns this tree into a wheel (`pip wheel --no-deps`), which is installed,
# not editable, into /opt/venv; the runtime stages get that venv and nothing of the source tree. The model
# registry, the profile catalog and the example configs are package data (harpagon/data); /opt/harpagon
# links to them, so a config can include /opt/harpagon/models/profiles/catalog.yaml, and
# `harpagon examples --copy DIR` writes copies to edit.
#
# Exact versions: every pip step runs with PIP_CONSTRAINT=constraints.txt, which pins every package the
# images install (regenerate it with scripts/update_constraints.py after changing the test environment).
#
# Behind a mirror, a proxy or no network at all; every pip step honours all of these, and pip runs only
# in the build stages, so none of them reaches the images or their history:
#   --build-arg PIP_INDEX_URL=https://mirror.example.com/pypi/simple   the index (default: PyPI)
#   --build-arg PIP_EXTRA_INDEX_URL="URL ..."                           more indexes
#   --build-arg PIP_FIND_LINKS="URL-or-DIR ..."                         wheel folders or pages (default /wheels)
#   --build-context wheels=DIR                                          a local wheel folder, mounted at /wheels
#   --build-arg TORCH_INDEX_URL=URL                                     where VARIANT's torch and torchvision
#        come from (default: https://download.pytorch.org/whl/cpu for cpu, the index for cuda; e.g.
#        https://download.pytorch.org/whl/cu126 for a driver older than CUDA 13's)
#   --secret id=pip_cert,src=corp-ca.pem                                the CA bundle that signs the mirror's or
#        the TLS-intercepting proxy's certificate (pip's PIP_CERT for that step)
#   --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt            or a bundle already in PYTHON_IMAGE
#   --secret id=netrc,src=$HOME/.netrc                                  index credentials (not in a URL, so not
#        in the build cache's records either)
#   --build-arg PYTHON_IMAGE=mirror.example.com/library/python:3.11.14-slim-bookworm
#   HTTPS_PROXY / HTTP_PROXY / NO_PROXY: Docker's predefined build args, seen by pip, kept out of history
#
# Base: python:3.11-slim for every image. PyTorch's Linux wheels bring their own CUDA runtime (the
# nvidia-* wheels), so a GPU container needs only the host's driver, which the NVIDIA container toolkit
# or the Kubernetes device plugin mounts in; an nvidia/cuda base would add a second copy of CUDA.
#
# Running: uid 10001, read-only root filesystem (caches go to /tmp), the ports below. The HEALTHCHECK
# asks the gRPC health service on 127.0.0.1:8090 (`harpagon health`), where the components serve it
# when started with `--health-port 8090` as the manifests start them; give one-shot commands
# `docker run --no-healthcheck`. Kubernetes ignores HEALTHCHECK and probes that port itself.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- wheels: empty; `--build-context wheels=DIR` replaces it with a folder of wheels ------------------
FROM scratch AS wheels

# --- pip: the settings every pip step shares ------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS pip

ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_FIND_LINKS=/wheels
ARG PIP_CERT=""
# Set in this stage and the build stages below it only (the runtime stages start from PYTHON_IMAGE
# again); pip takes an empty value as unset.
ENV PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    PIP_FIND_LINKS=${PIP_FIND_LINKS} \
    PIP_CERT=${PIP_CERT} \
    PIP_CONSTRAINT=/etc/harpagon-build/constraints.txt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY constraints.txt /etc/harpagon-build/constraints.txt

# --- build: the wheel -----------------------------------------------------------------------------------
FROM pip AS build

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY harpagon ./harpagon
# The build backend from the constraints, then the wheel without build isolation, so that it is built
# with that setuptools whatever pip's handling of constraints for build dependencies.
RUN --mount=type=secret,id=pip_cert --mount=type=secret,id=netrc,target=/root/.netrc \
    --mount=type=bind,from=wheels,target=/wheels \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && pip install --no-cache-dir --constraint "${PIP_CONSTRAINT}" setuptools \
 && pip wheel --no-cache-dir --constraint "${PIP_CONSTRAINT}" --no-deps --no-build-isolation \
      --wheel-dir /dist .

# --- slim-venv: the base install ------------------------------------------------------------------------
# The venvs hold no pip (nor Python 3.11's bundled setuptools): the base image's pip installs into them
# (PIP_PYTHON).
FROM pip AS slim-venv

RUN python3 -m venv --without-pip /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_PYTHON=/opt/venv/bin/python
RUN --mount=type=secret,id=pip_cert --mount=type=secret,id=netrc,target=/root/.netrc \
    --mount=type=bind,from=wheels,target=/wheels --mount=type=bind,from=build,source=/dist,target=/dist \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && set -- /dist/harpagon-*.whl \
 && pip install --no-cache-dir --constraint "${PIP_CONSTRAINT}" "${1}[traces]" \
 && pip check \
 && harpagon --version && harpagon examples > /dev/null \
 && if python3 -c "import torch" 2> /dev/null; then echo "the slim image must not have torch" >&2; exit 1; fi

# --- worker-venv: the base install and PyTorch (VARIANT cpu or cuda) ------------------------------------
FROM pip AS worker-venv

ARG VARIANT=cpu
ARG TORCH_INDEX_URL=""
RUN python3 -m venv --without-pip /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_PYTHON=/opt/venv/bin/python
# PyTorch first, alone, from the variant's index (the largest layer, and the one that changes least);
# its dependencies come with Harpagon's from the index in the next step.
RUN --mount=type=secret,id=pip_cert --mount=type=secret,id=netrc,target=/root/.netrc \
    --mount=type=bind,from=wheels,target=/wheels \
    case "${VARIANT}" in \
      cpu) index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
      cuda) index="${TORCH_INDEX_URL:-${PIP_INDEX_URL:-https://pypi.org/simple}}" ;; \
      *) echo "VARIANT must be cpu or cuda, got '${VARIANT}'" >&2; exit 1 ;; \
    esac \
 && if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && pip install --no-cache-dir --constraint "${PIP_CONSTRAINT}" --no-deps --index-url "${index}" \
      torch torchvision
RUN --mount=type=secret,id=pip_cert --mount=type=secret,id=netrc,target=/root/.netrc \
    --mount=type=bind,from=wheels,target=/wheels --mount=type=bind,from=build,source=/dist,target=/dist \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && set -- /dist/harpagon-*.whl \
 && pip install --no-cache-dir --constraint "${PIP_CONSTRAINT}" "${1}[worker,traces]" \
 && pip check \
 && harpagon --version \
 && python3 -c 'import sys, torch, torchvision; built = "cuda" if torch.version.cuda else "cpu"; \
sys.exit(None if built == sys.argv[1] else f"VARIANT={sys.argv[1]}, but torch {torch.__version__} is a {built} build")' \
      "${VARIANT}"

# --- runtime: what both images share ----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="harpagon" \
      org.opencontainers.image.description="Cost-minimising DNN inference serving (controller, frontend, worker)" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --gid 10001 harpagon \
 && useradd --uid 10001 --gid 10001 --no-log-init --home-dir /home/harpagon --create-home \
      --shell /usr/sbin/nologin harpagon

# Nothing is written outside /tmp, so the container runs with a read-only root filesystem (/tmp an emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/harpagon \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    TORCH_HOME=/tmp/torch

WORKDIR /home/harpagon

# controller 50051, worker 50052, frontend Triton gRPC 8001 and metrics 8002,
# gRPC health 8090, controller metrics 9101, worker metrics 9102
EXPOSE 50051 50052 8001 8002 8090 9101 9102

HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["harpagon", "health", "--timeout", "3", "127.0.0.1:8090"]

ENTRYPOINT ["harpagon"]
CMD ["--help"]

# --- slim: the base install -----------------------------------------------------------------------------
FROM runtime AS slim

LABEL io.harpagon.variant="slim"
COPY --from=slim-venv /opt/venv /opt/venv
# /opt/harpagon: the package's data folder (configs/, models/), at a path configs can include.
RUN python3 -c 'import os, harpagon.data as d; os.symlink(os.path.dirname(d.__file__), "/opt/harpagon")' \
 && test -f /opt/harpagon/models/profiles/catalog.yaml
USER 10001:10001

# --- worker: the base install and PyTorch -----------------------------------------------------------------
FROM runtime AS worker

ARG VARIANT=cpu
LABEL io.harpagon.variant="${VARIANT}"
ENV HARPAGON_VARIANT=${VARIANT}
COPY --from=worker-venv /opt/venv /opt/venv
RUN python3 -c 'import os, harpagon.data as d; os.symlink(os.path.dirname(d.__file__), "/opt/harpagon")' \
 && test -f /opt/harpagon/models/profiles/catalog.yaml
USER 10001:10001
