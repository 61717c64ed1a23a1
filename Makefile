# opslab: the user interface. `make help` lists every target. Targets only wire things together;
# the logic lives in ml/ and the pipeline in dvc.yaml.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
# uv from PATH, else bootstrapped into .tools/ by `make setup` (pip from PyPI; nothing else needed)
UV ?= $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen
IMAGE ?= opslab-ml:latest
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: help setup browser all data eda train-anomaly train-forecast train-sla train-ttr train-clusters train-triage train-system-team train-archive score-incidents quality monitor monitor-live train-all promote rollback scheduler report lab test test-all lint format notebooks bench bench-nab serve bento timings clean

help: ## list every target with what it does
	@awk 'BEGIN {FS = ":.*## "}; /^[a-zA-Z0-9_%-]+:.*## / {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

setup: .venv/.synced ## install the exact environment from uv.lock (bootstraps uv if missing)

all: setup ## everything from nothing: install, data, every stage, reports; then say where outputs are
	$(RUN) dvc repro
	$(RUN) dvc status
	@echo ""
	@echo "done. Outputs:"
	@echo "  data:      data/{landing,bronze,silver,gold}/   (row counts: metrics/ingest.json, metrics/features.json)"
	@echo "  charts:    docs/ml/<stage>/*.png"
	@echo "  notebooks: docs/ml/html/*.html  (index: docs/ml/index.html; model cards: docs/ml/model_cards/)"
	@echo "  scores:    data/scores/open_incidents.parquet, data/scores/sensor_anomalies.parquet"
	@echo "  metrics:   metrics/*.json       (uv run dvc metrics show)"

data: setup ## generate the synthetic export and build bronze/silver/gold (dvc repro featurize)
	$(RUN) dvc repro featurize

eda: setup ## run notebooks/01_eda through papermill (dvc repro eda)
	$(RUN) dvc repro eda

train-anomaly: setup ## sensor anomaly detection: notebook 02, MLflow run, registry gates (dvc repro anomaly)
	$(RUN) dvc repro anomaly

train-forecast: setup ## sensor forecasting: backtest, per-sensor selection, MLflow registry (dvc repro forecast)
	$(RUN) dvc repro forecast

train-archive: setup ## archive volume + storage savings per source, next week/month: notebook 10, backtest, gates (dvc repro archive)
	$(RUN) dvc repro archive

train-sla: setup ## SLA-breach risk at open time: notebook 04, calibrated, cost threshold, gates (dvc repro sla)
	$(RUN) dvc repro sla

train-ttr: setup ## time to resolve with P10/P50/P90: notebook 05 (dvc repro ttr)
	$(RUN) dvc repro ttr

train-clusters: setup ## recurring problems: incident clusters from text + metadata, k by silhouette (dvc repro clustering)
	$(RUN) dvc repro clustering

train-triage: setup ## NLP triage (group + category, per-class precision thresholds, abstain) and similar incidents: notebook 07
	$(RUN) dvc repro triage

train-system-team: setup ## impacted system (CI) and owning team from ticket text: notebook 08 (dvc repro system_team)
	$(RUN) dvc repro system_team

quality: setup ## data-quality gate (pandera + Evidently) on the newest landing batches; fails loudly (dvc repro quality)
	$(RUN) dvc repro quality

monitor: setup ## drift over time, Evidently reports, prediction monitoring: notebook 09 (dvc repro monitor)
	$(RUN) dvc repro monitor

monitor-live: setup ## live monitoring of the prediction log since the last run: drift, live performance, alerts -> data/monitoring/live.json, docs/ml/live/
	$(RUN) python -m ml.monitoring.job

score-incidents: setup ## score every open incident with every incident champion -> data/scores/open_incidents.parquet
	$(RUN) dvc repro score_incidents

train-all: setup ## run every training stage in dvc.yaml
	$(RUN) dvc repro

promote: setup ## make VERSION the champion of MODEL by hand, e.g. make promote MODEL=sensor-anomaly VERSION=3
	$(RUN) python -m ml.registry promote --model $(MODEL) --version $(VERSION)

rollback: setup ## give `champion` back to the previous champion of MODEL, e.g. make rollback MODEL=sensor-anomaly
	$(RUN) python -m ml.registry rollback --model $(MODEL)

scheduler: setup ## run the operations jobs on params.yaml operations.schedule (monitoring hourly, retrain-if-needed weekly); prints them first
	exec $(RUN) python -m ml.scheduler

report: setup ## render executed notebooks to docs/ml/html and write docs/ml/index.html
	$(RUN) dvc repro report

lab: setup ## open JupyterLab on notebooks/ with the project environment as kernel
	$(RUN) jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)

test: setup browser ## the test suite (unit, property, bad-input, real-data when ../shared exists, notebook smoke, reports in Chromium)
	$(RUN) pytest -q -n 2 --dist loadgroup

browser: ## Debian's Chromium for the headless report test (installed with apt-get when run as root)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else \
	    echo "note: no chromium; the report browser test will skip (sudo apt-get install chromium)"; \
	  fi; }

lint: setup ## ruff, notebook hygiene (outputs stripped, .py twins in sync), hadolint on Dockerfile.ml
	$(RUN) ruff check ml tests notebooks scripts
	$(RUN) ruff format --check ml tests scripts
	$(RUN) python -m scripts.check_notebooks
	$(RUN) hadolint Dockerfile.ml

format: setup ## apply ruff formatting and fixes
	$(RUN) ruff check --fix ml tests notebooks scripts
	$(RUN) ruff format ml tests scripts

notebooks: setup ## regenerate each .ipynb from its jupytext .py twin, outputs stripped
	$(RUN) jupytext --sync notebooks/*.py
	$(RUN) nbstripout notebooks/*.ipynb

bench: setup ## NAB runner (58 files; NAB_DIR=...), incident evaluation CLI on 140k events, service load test (2 workers, open-loop generator on its own core; BENCH_ARGS=... see scripts/bench_service.py --help) -> docs/ml/bench.md, docs/ml/bench_service.json
	$(RUN) python -m scripts.bench $(if $(NAB_DIR),--nab-dir $(NAB_DIR))
	$(RUN) python -m scripts.bench_incidents
	$(RUN) python -m scripts.bench_service $(BENCH_ARGS)

NAB_DATA ?= ../shared/data/nab
bench-nab: setup ## NAB's own score of the detector on the whole corpus (NAB_DATA=...) -> metrics/nab.json, docs/ml/anomaly/nab_categories.png
	@if [ -d "$(NAB_DATA)/data" ]; then \
		$(RUN) python -m ml.sensors.nab --data-dir $(NAB_DATA) --out data/nab_results --score --metrics metrics/nab.json; \
	else \
		echo "bench-nab: $(NAB_DATA) not found (the NAB corpus lives in ../shared/data/nab); nothing to do"; \
	fi

SERVE_PORT ?= 3000
serve: setup ## the HTTP service (BentoML) on 127.0.0.1:3000 (SERVE_PORT=...) on the local registry; trains missing champions first
	stages="$$($(RUN) python -m ml.serving missing-stages)"
	if [ -n "$$stages" ]; then echo "no champion yet for stage(s): $$stages -> dvc repro $$stages"; $(RUN) dvc repro $$stages; fi
	$(RUN) python -m ml.serving banner --port $(SERVE_PORT)
	exec $(RUN) bentoml serve service:OpsLab --host 127.0.0.1 --port $(SERVE_PORT)

bento: setup ## build the service's Bento (bentofile.yaml): code + the registry's champions, sha256-checked
	mkdir -p build
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes --format requirements-txt -o build/bento-requirements.txt > /dev/null
	$(RUN) bentoml build -f bentofile.yaml

timings: setup ## time every DVC stage from scratch (forced), printing seconds per stage
	$(RUN) python -m scripts.time_stages

clean: ## remove generated data, executed notebooks and local MLflow state (keeps the environment)
	rm -rf data build mlruns mlflow.db mlartifacts .dvc/tmp

include docker.mk
