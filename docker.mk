# Container targets; included from the main Makefile (`include docker.mk`).
# Works with Docker or with podman behind a `docker` shim (../shared/tools/container-engine).

IMAGE ?= opslab-ml:latest
DOCKER ?= docker
# Where the project is mounted inside the container: at the same path as on the host, so absolute paths
# recorded by a run (MLflow artifact URIs in mlflow.db) mean the same thing to host and container runs.
# (The image's own default, without this Makefile, is /work/opslab.)
DOCKER_WORKDIR ?= $(CURDIR)

# Run as the invoking host user, not the image's uid 1000, so that the mounted project is writable and
# what the stage writes belongs to whoever owns the project: with rootful podman (as here) or Docker,
# uid 1000 cannot write into a root-owned tree, and on a laptop whose uid is not 1000 it would leave
# foreign-owned files behind. (`--userns=keep-id` is no answer: podman allows it only when rootless.)
# HOME=/tmp because that uid may have no home, or no passwd entry, in the image.
DOCKER_USER ?= $(shell id -u):$(shell id -g)

# Real-data samples (../shared/data), read-only at the same place relative to the project, if present.
DOCKER_SHARED_DATA := $(abspath $(wildcard $(CURDIR)/../shared/data))

DOCKER_RUN_OPTS = --user $(DOCKER_USER) -e HOME=/tmp \
	-v "$(CURDIR)":$(DOCKER_WORKDIR) -w $(DOCKER_WORKDIR) \
	-e PYTHONPATH=$(DOCKER_WORKDIR) -e OPSLAB_ROOT=$(DOCKER_WORKDIR) \
	$(if $(DOCKER_SHARED_DATA),-v "$(DOCKER_SHARED_DATA)":$(dir $(DOCKER_WORKDIR))shared/data:ro) \
	-e MLFLOW_TRACKING_URI -e PYTHONHASHSEED

# What `make docker-run` runs in the container.
DOCKER_CMD ?= dvc status

.PHONY: docker-build docker-run docker-shell test-docker docker-serve

docker-build: ## build the ML image (IMAGE, default opslab-ml:latest) from Dockerfile.ml: uv.lock minus dev group
	$(DOCKER) build -f Dockerfile.ml -t $(IMAGE) .

docker-train-%: ## run DVC stage % in the container on this project, e.g. make docker-train-eda
	$(DOCKER) run --rm $(DOCKER_RUN_OPTS) $(IMAGE) dvc repro $*

docker-run: ## run DOCKER_CMD in the container on this project, e.g. make docker-run DOCKER_CMD='dvc dag'
	$(DOCKER) run --rm $(DOCKER_RUN_OPTS) $(IMAGE) $(DOCKER_CMD)

docker-shell: ## open a shell in the ML container on this project
	$(DOCKER) run --rm -it $(DOCKER_RUN_OPTS) $(IMAGE) bash

test-docker: ## build the image, run a stage (STAGE, default eda) in a scratch copy, check host-side outputs
	scripts/test_docker.sh $(or $(STAGE),eda)

SERVICE_IMAGE ?= opslab-service:latest
docker-serve: bento ## containerize the Bento (bentoml containerize) and run it on 127.0.0.1:3000; needs OPSLAB_API_KEYS
	@test -n "$${OPSLAB_API_KEYS:-}" || { echo "docker-serve: set OPSLAB_API_KEYS (python -m ml.serving.guard new-key): the container binds 0.0.0.0"; exit 2; }
	$(RUN) bentoml containerize opslab:latest -t $(SERVICE_IMAGE)
	$(DOCKER) run --rm -p 127.0.0.1:3000:3000 -e OPSLAB_API_KEYS -e BENTOML_HOST=0.0.0.0 $(SERVICE_IMAGE)
