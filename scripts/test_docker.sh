#!/usr/bin/env bash
# Proves the container path works end to end: `make docker-build`, then `make docker-train-<stage>` in a
# scratch copy of the working tree (uncommitted files included; no .venv, data, MLflow state or DVC
# cache, so the stage and everything upstream really run), and checks on the host side that the stage's
# declared outputs appeared, are fresh and belong to the host user. Also checks the image itself:
# non-root by default, no dev group (pytest), tools from the venv, the stack imports.
# Usage: scripts/test_docker.sh [stage]   (default eda; IMAGE, DOCKER as in docker.mk; KEEP=1 keeps the copy)
set -euo pipefail

stage=${1:-eda}
project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-opslab-ml:latest}
DOCKER=${DOCKER:-docker}
export IMAGE DOCKER

t0=$(date +%s)
# Through the main Makefile, as a user would, once it includes docker.mk; else docker.mk on its own.
mk() {
  local dir=$1
  shift
  if grep -qs '^include docker.mk' "$dir/Makefile"; then
    make -C "$dir" --no-print-directory "$@"
  else
    make -C "$dir" --no-print-directory -f docker.mk "$@"
  fi
}
elapsed() { echo $(($(date +%s) - t0)); }
step() { printf '\n== [%4ss] %s\n' "$(elapsed)" "$*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# ------------------------------------------------------------------------------------------- image
step "build $IMAGE (make docker-build)"
mk "$project" docker-build
t_build=$(elapsed)

step "image checks"
image_uid=$("$DOCKER" run --rm "$IMAGE" id -u)
[ "$image_uid" != 0 ] || fail "image runs as root by default"
echo "default user: uid $image_uid"
if "$DOCKER" run --rm "$IMAGE" python -c "import pytest" 2>/dev/null; then
  fail "pytest is importable: the dev dependency group leaked into the image"
fi
echo "no pytest (dev group excluded)"
tools=$("$DOCKER" run --rm "$IMAGE" sh -c 'for t in python dvc papermill; do printf "%s " "$(command -v $t)"; done')
case "$tools" in
  "/opt/venv/bin/python /opt/venv/bin/dvc /opt/venv/bin/papermill ") echo "python, dvc, papermill from /opt/venv" ;;
  *) fail "tools not from the project venv: $tools" ;;
esac
"$DOCKER" run --rm "$IMAGE" python -c \
  "import ml, pandas, sklearn, prophet, mlflow, dvc, papermill, evidently, bentoml; print('stack imports ok')"
"$DOCKER" image inspect --format 'image size: {{.Size}} bytes' "$IMAGE"

# ------------------------------------------------------------------------------------------- run
work=$(mktemp -d "${TMPDIR:-/tmp}/opslab-docker-test.XXXXXX")
if [ -n "${KEEP:-}" ]; then echo "KEEP set: leaving $work"; else trap 'rm -rf "$work"' EXIT; fi
step "scratch copy of the working tree -> $work"
tar -C "$project" -cf - \
  --exclude=./.venv --exclude=./.tools --exclude=./data --exclude=./models --exclude=./build \
  --exclude=./mlruns --exclude=./mlartifacts --exclude=./mlflow.db \
  --exclude=./.dvc/cache --exclude=./.dvc/tmp \
  --exclude=.pytest_cache --exclude=.hypothesis --exclude=.ruff_cache --exclude=__pycache__ . |
  tar -C "$work" -xf -
# The copy lives elsewhere, so hand it the real-data samples the project itself would see.
shared_args=()
if [ -d "$project/../shared/data" ]; then
  shared_args=(DOCKER_SHARED_DATA="$(cd "$project/../shared/data" && pwd)")
fi
# A marker older than anything the container writes (1 s margin for coarse timestamps).
marker="$work/.docker-test-start"
touch "$marker"
sleep 1

# The stage's declared outputs (outs + metrics + plots), read from dvc.yaml by the image's python.
declared=""
if [ -f "$work/dvc.yaml" ]; then
  declared=$("$DOCKER" run --rm -v "$work/dvc.yaml":/tmp/dvc.yaml:ro "$IMAGE" python -c '
import sys, yaml
stage = yaml.safe_load(open("/tmp/dvc.yaml"))["stages"].get(sys.argv[1])
if stage is None:
    sys.exit(0)
print("in-dvc.yaml")
for key in ("outs", "metrics", "plots"):
    for item in stage.get(key, []):
        print(next(iter(item)) if isinstance(item, dict) else item)
' "$stage")
fi

if [ -n "$declared" ]; then
  step "make docker-train-$stage (dvc repro $stage in the container)"
  t_run0=$(date +%s)
  mk "$work" docker-train-"$stage" "${shared_args[@]}"
  t_run=$(($(date +%s) - t_run0))

  step "host-side outputs of $stage"
  while IFS= read -r out; do
    [ "$out" = in-dvc.yaml ] && continue
    path="$work/$out"
    [ -e "$path" ] || fail "$out: declared by stage $stage but missing on the host"
    [ -n "$(find "$path" -newer "$marker" -print -quit)" ] || fail "$out: not written by this run"
    echo "ok  $out"
  done <<<"$declared"
  if [ "$stage" = eda ]; then
    [ -s "$work/metrics/eda.json" ] || fail "metrics/eda.json missing or empty"
    compgen -G "$work/docs/ml/eda/*.png" >/dev/null || fail "no charts in docs/ml/eda/"
    echo "ok  metrics/eda.json, $(find "$work/docs/ml/eda" -name '*.png' -newer "$marker" | wc -l) fresh PNGs in docs/ml/eda/"
  fi
else
  # No pipeline stage of that name yet: prove the mount round trip with the stack instead.
  step "no stage '$stage' in dvc.yaml: smoke command through make docker-run"
  t_run0=$(date +%s)
  mk "$work" docker-run "${shared_args[@]}" DOCKER_CMD="python -c \"import pathlib, ml, \
pandas, sklearn, prophet, mlflow, dvc, papermill, evidently, bentoml; pathlib.Path('docker-smoke.txt').write_text('ok')\""
  t_run=$(($(date +%s) - t_run0))
  [ "$(cat "$work/docker-smoke.txt" 2>/dev/null)" = ok ] || fail "docker-smoke.txt was not written into the mount"
  echo "ok  docker-smoke.txt written through the mount"
fi

foreign=$(find "$work" -newer "$marker" ! -user "$(id -u)" -print | head -5)
[ -z "$foreign" ] || fail "files written by the container are not owned by uid $(id -u): $foreign"
echo "ok  everything the container wrote is owned by uid $(id -u)"

step "PASS: stage '$stage' in $IMAGE — build ${t_build}s, run ${t_run}s, total $(elapsed)s wall"
