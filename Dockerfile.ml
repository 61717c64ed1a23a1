# opslab ML environment: the host's `uv sync --frozen` environment (minus the dev group) in a container.
# Build: make docker-build        Run a stage: make docker-train-<stage>  (see docker.mk)
# Only `debian:bookworm-slim` is assumed to exist (no Docker Hub here; ../shared/tools/container-engine
# builds it locally). Python is Debian's python3.11, matching `requires-python = ">=3.11,<3.12"`.
#
# Two stages: `uv` fetches the uv binary from PyPI; the runtime stage takes that one file and builds the
# venv in place at /opt/venv. Not the textbook `COPY --from=builder /opt/venv`, for podman's sake
# (measured with podman 4.3 / buildah 1.28 here): buildah re-hashes a COPY --from source on every build
# to check its cache, ~50 s for this 1.5 GB / 33k-file venv even when nothing changed, and the copy
# doubles the disk used per build. Bind-mounting uv from the stage instead (RUN --mount=type=bind,
# from=uv) would keep uv out of the image, but buildah mounts an empty tree when that stage is cached
# (containers/buildah#4375, podman#16281) and does not invalidate on it (buildah#6609). Cost: the 38 MB
# uv binary stays in the image (unused at run time: stages call `dvc repro` directly).

ARG UV_VERSION=0.13.9

# ---------------------------------------------------------------- uv: the resolver/installer
FROM debian:bookworm-slim AS uv

# DL3008 (pin apt versions) is ignored on purpose: bookworm point releases remove superseded
# versions from the mirror, so exact pins break rebuilds; the suite (bookworm) is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# From PyPI into a throwaway venv; same version as the host that wrote uv.lock.
ARG UV_VERSION
RUN python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}"

# ---------------------------------------------------------------- runtime: Debian python3 + /opt/venv
FROM debian:bookworm-slim

# python3: the venv's interpreter (/usr/bin/python3.11); git: DVC and MLflow call it;
# make: the project's Makefile; ca-certificates: HTTPS remotes (MLflow, DVC, PyPI at build time).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 git make ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && git config --system --add safe.directory '*' \
 && useradd --create-home --uid 1000 --user-group --shell /bin/bash opslab

# Build-time settings (ARG, so none of them stays in the image's environment). TLS: uv honours SSL_CERT_FILE
# (set by this site's base image, whose TLS is intercepted); UV_SYSTEM_CERTS (formerly UV_NATIVE_TLS,
# deprecated in uv 0.13) makes it trust the system store as well.
ARG UV_VERSION
ARG UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_SYSTEM_CERTS=1 \
    UV_CACHE_DIR=/root/.cache/uv

COPY --from=uv /opt/uv/bin/uv /usr/local/bin/uv

WORKDIR /src
# Dependencies only (the dev group left out): reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project --no-editable

# Then the `ml` package itself, as a regular (non-editable) install: a layer of a few hundred KB.
# --refresh/--reinstall-package: uv keys its cached build of a local project on pyproject.toml only,
# so without them an ml/ change would reinstall the wheel built from the previous ml/.
COPY README.md ./
COPY ml/ ml/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --refresh-package opslab --reinstall-package opslab

# PYTHONPATH/OPSLAB_ROOT: a project mounted at /work/opslab wins over the `ml` baked into the venv.
# PYTHONDONTWRITEBYTECODE: no __pycache__ written into the mounted host tree.
# PYTHONHASHSEED=0 and MPLBACKEND=Agg: as the Makefile exports them on the host (determinism, no display).
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONPATH=/work/opslab \
    OPSLAB_ROOT=/work/opslab \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONHASHSEED=0 \
    MPLBACKEND=Agg

# Numeric (opslab:opslab) so `docker run --user` overrides and host tools resolve it alike.
USER 1000:1000
WORKDIR /work/opslab

# The stages (generate, ingest, featurize, eda, ...) run their notebooks through papermill via DVC.
CMD ["dvc", "repro", "eda"]
