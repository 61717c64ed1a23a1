"""The MLflow registry for every opslab model: log a run, register a version, promote it only through gates.

- Tracking URI from `MLFLOW_TRACKING_URI`, default a SQLite file in the project; artifacts under the project.
- A run logs params (from params.yaml), metrics, charts, the git commit, the DVC hash of its input data and
  the model with a signature and input example. sklearn models are saved with skops (safe to load; the
  trusted types are listed here, including our own `ml.*` classes) in a canonical form, so two clean runs
  give identical bytes; their sha256 is the `model_sha256` tag on the run and on the version.
- A version becomes `champion` only when every gate passes (absolute thresholds, and no worse than the
  current champion on the gated metrics); otherwise it is tagged `challenger` and the champion stays.
- The promoted model is also exported under `models/<name>/` (the copy a service falls back to).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib.metadata
import io
import json
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd
import yaml
from mlflow.models import infer_signature

from ml import config
from ml.config import ROOT
from ml.monitoring import reference as reference_files
from ml.reports import comparison

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_FILE = "model.skops"
# Types a skops model file may contain beyond numpy/sklearn's own: checked on every load.
TRUSTED_TYPES = [
    "ml.features.SensorWindowFeatures",
    "ml.sensors.anomaly.CalibratedIsolationForest",
    "ml.features.IncidentFeatures",
    "ml.features.ArchiveFeatures",
    "ml.archive.model.ArchiveForecaster",
    "ml.incidents.ttr.TTRQuantileModel",
    "ml.incidents.text.IncidentTextFeatures",
    "ml.incidents.abstain.PrecisionTargetClassifier",
    "ml.incidents.similar.SimilarIncidents",
    "scipy.sparse._csr.csr_matrix",
    "ml.incidents.clusters.IncidentClusterer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.TimeSeriesSplit",
    "sklearn.tree._tree.Tree",
    "numpy.dtype",
    "collections.OrderedDict",
]


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, or the project's own SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlflow.db'}"


def artifact_root() -> str | None:
    """Where new experiments keep artifacts: `MLFLOW_ARTIFACT_ROOT`; else, with an HTTP tracking server, None
    (the server stores and serves them: `mlflow server --artifacts-destination`); else `<project>/mlartifacts`."""
    if os.environ.get("MLFLOW_ARTIFACT_ROOT"):
        return os.environ["MLFLOW_ARTIFACT_ROOT"]
    return None if tracking_uri().startswith(("http://", "https://")) else (ROOT / "mlartifacts").as_uri()


def client():
    """An MlflowClient on the configured tracking URI (also sets it for the fluent API)."""
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.MlflowClient(tracking_uri())


def experiment(name: str) -> str:
    """Get or create an experiment whose artifacts live under the project (not the working directory)."""
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = artifact_root()
    return c.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)


# --- provenance -------------------------------------------------------------------------------
def git_commit(root: Path = ROOT) -> str:
    """The checked-out commit (with `-dirty` when the tree has uncommitted changes), or 'unknown'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dvc_hash(path: str | os.PathLike, root: Path = ROOT) -> str:
    """The md5 DVC recorded for an output in dvc.lock (what a run's input data was), else a content hash."""
    rel = Path(path)
    rel = rel.relative_to(root) if rel.is_absolute() and rel.is_relative_to(root) else rel
    lock = root / "dvc.lock"
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if Path(out["path"]) == rel:
                    return out.get("md5") or out.get("hash", "")
    return "sha256:" + tree_sha256(root / rel if not Path(path).is_absolute() else Path(path))


def tree_sha256(path: Path) -> str:
    """sha256 over a file, or over a directory's relative paths and contents in sorted order."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent if path.is_file() else path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


# --- canonical, verifiable model bytes ------------------------------------------------------------
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def canonical_skops(data: bytes) -> bytes:
    """Rewrite a skops zip deterministically: arrays renamed in order of use, fixed dates, sorted entries.

    skops names arrays and memo entries after Python object ids and stamps the current time into the zip,
    so the same model gives different bytes each run; this form makes `model_sha256` reproducible.
    """
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = src.read("schema.json").decode()
    names = [n for n in src.namelist() if n != "schema.json"]
    order = sorted(names, key=lambda n: (schema.find(n) if n in schema else len(schema), n))
    renames = {old: f"{i:05d}{Path(old).suffix}" for i, old in enumerate(order)}
    if renames:
        pattern = re.compile("|".join(re.escape(n) for n in sorted(renames, key=len, reverse=True)))
        schema = pattern.sub(lambda m: renames[m.group(0)], schema)
    ids: dict[str, str] = {}  # object ids (memo keys) -> numbers in order of first appearance
    schema = re.sub(
        r'"__id__": (\d+)', lambda m: f'"__id__": {ids.setdefault(m.group(1), str(len(ids)))}', schema
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        entries = [("schema.json", schema.encode())] + [(renames[n], src.read(n)) for n in names]
        for name, payload in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, payload)
    return out.getvalue()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# Fitted attributes that hold a Python object id (sklearn vectorizers' `_stop_words_id`): they differ between
# processes for the same fit, so they are dropped from the saved copy (sklearn re-sets them on transform).
VOLATILE_ATTRIBUTES = ("_stop_words_id",)


@contextlib.contextmanager
def without_volatile(model):
    """Within the block, `VOLATILE_ATTRIBUTES` are removed everywhere in `model`'s object graph; they are
    put back afterwards (the in-memory model is unchanged once the block exits)."""
    removed: list[tuple[Any, str, Any]] = []
    seen: set[int] = set()

    def walk(obj) -> None:
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | bool | type(None)):
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            for v in list(obj.values()):
                walk(v)
        elif isinstance(obj, list | tuple | set):
            for v in obj:
                walk(v)
        elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in ("sklearn", "ml"):
            for name in VOLATILE_ATTRIBUTES:
                if name in obj.__dict__:
                    removed.append((obj, name, obj.__dict__.pop(name)))
            for v in list(vars(obj).values()):
                walk(v)

    walk(model)
    try:
        yield model
    finally:
        for obj, name, value in removed:
            obj.__dict__[name] = value


# What a served model imports, as distribution names (as in uv.lock): ml.* classes need pandas, pandera, pyyaml
# and threadpoolctl, the `reference/` saved with a model is parquet (pyarrow); the forecaster pyfunc adds
# statsmodels and prophet.
SERVING_PACKAGES = (
    "mlflow",
    "numpy",
    "pandas",
    "pandera",
    "pyarrow",
    "pyyaml",
    "scikit-learn",
    "scipy",
    "threadpoolctl",
)
FLAVOR_PACKAGES = {
    "sklearn": (*SERVING_PACKAGES, "skops"),
    "forecaster": (*SERVING_PACKAGES, "prophet", "statsmodels"),
}


@functools.cache
def _pins(flavor: str) -> tuple[str, ...]:
    if flavor not in FLAVOR_PACKAGES:
        raise ValueError(f"unknown model flavor {flavor!r}; expected one of {sorted(FLAVOR_PACKAGES)}")
    return tuple(f"{name}=={importlib.metadata.version(name)}" for name in sorted(FLAVOR_PACKAGES[flavor]))


def pip_requirements(flavor: str = "sklearn") -> list[str]:
    """Exact pins (`name==version`, sorted) of what a served model of `flavor` ("sklearn" or "forecaster") needs.

    Versions are the installed distributions', i.e. uv.lock's (the env is `uv sync --frozen`). Passing them as
    `pip_requirements=` to MLflow's save/log_model skips its requirement inference, which reloads the model in
    a `_capture_modules` subprocess (~10-20 s of CPU per model) and picks up whatever that import touched.
    """
    return list(_pins(flavor))


def save_sklearn(model, path: Path, *, signature=None, input_example=None) -> str:
    """Save an sklearn model as an MLflow model dir with a canonical skops file; returns its sha256."""
    with without_volatile(model):
        mlflow.sklearn.save_model(
            model,
            str(path),
            serialization_format="skops",
            skops_trusted_types=TRUSTED_TYPES,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements("sklearn"),
        )
    f = path / MODEL_FILE
    f.write_bytes(canonical_skops(f.read_bytes()))
    return sha256_file(f)


FORECASTER_DIR = Path("artifacts") / "forecaster"


def save_forecaster(model, path: Path, *, signature=None, input_example=None) -> str:
    """Save a SensorForecaster as an MLflow pyfunc (models from code, JSON/parquet state); returns its sha256."""
    with tempfile.TemporaryDirectory() as tmp:
        state = model.save(Path(tmp) / "forecaster")
        mlflow.pyfunc.save_model(
            str(path),
            python_model=str(ROOT / "ml" / "sensors" / "forecast_pyfunc.py"),
            artifacts={"forecaster": str(state)},
            input_example=input_example,
            signature=signature,
            pip_requirements=pip_requirements("forecaster"),
        )
    return tree_sha256(Path(path) / FORECASTER_DIR)


def load_forecaster(model_dir: Path, expected_sha256: str | None):
    """Load a saved forecaster from the very state bytes whose sha256 was checked (a private copy)."""
    from ml.sensors.forecast import SensorForecaster  # imported on use: pulls statsmodels and prophet (~3 s)

    with tempfile.TemporaryDirectory(prefix="opslab-forecaster-") as tmp:  # one private copy: hashed, loaded
        copy = shutil.copytree(Path(model_dir) / FORECASTER_DIR, Path(tmp) / "state")
        _verify(Path(model_dir) / FORECASTER_DIR, tree_sha256(copy), expected_sha256)
        return SensorForecaster.load(copy)  # reads every file now; the copy goes with the block


def load_sklearn(model_dir: Path, expected_sha256: str | None):
    """Load a skops model from the very bytes whose sha256 was checked against the registry's record."""
    f = Path(model_dir) / MODEL_FILE
    data = f.read_bytes()
    _verify(f, hashlib.sha256(data).hexdigest(), expected_sha256)
    import skops.io  # here, not at the top: its trusted-type scan costs every importer of ml.registry ~1-5 s

    return skops.io.loads(data, trusted=TRUSTED_TYPES)


def _verify(path: Path, actual: str, expected: str | None) -> None:
    """Refuse model bytes without a recorded sha256, or whose sha256 differs from the record."""
    if not expected:
        raise ValueError(f"{path}: no model_sha256 recorded for it; refusing to load an unverifiable model")
    if actual != expected:
        raise ValueError(
            f"{path}: sha256 {actual[:12]}… does not match the registered model_sha256 "
            f"{expected[:12]}…; refusing to load"
        )


# --- gates ------------------------------------------------------------------------------------
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@dataclass
class Gate:
    """One promotion rule: `metric op threshold`, or (vs_champion) no worse than the champion by `tolerance`."""

    metric: str
    op: str = ">="
    threshold: float | None = None
    vs_champion: bool = False
    tolerance: float = 0.0

    def check(self, metrics: Mapping[str, float], champion: Mapping[str, float] | None) -> tuple[bool, str]:
        value = metrics.get(self.metric)
        if value is None:
            return False, f"{self.metric}: missing from the run's metrics"
        if self.vs_champion:
            if not champion or self.metric not in champion:
                return True, f"{self.metric}={value:.4g} (no champion to compare with)"
            ref = champion[self.metric]
            bound = ref - self.tolerance if self.op.startswith(">") else ref + self.tolerance
            ok = _OPS[self.op if "=" in self.op else self.op + "="](value, bound)
            return (
                ok,
                f"{self.metric}={value:.4g} {'ok' if ok else 'worse than'} champion {ref:.4g} (tol {self.tolerance})",
            )
        ok = _OPS[self.op](value, self.threshold)
        return ok, f"{self.metric}={value:.4g} {self.op} {self.threshold} {'passed' if ok else 'FAILED'}"


def gates_from_params(spec: list[Mapping[str, Any]] | None) -> list[Gate]:
    """Gates from params.yaml entries like `{metric: event_f1, op: ">=", threshold: 0.5}`."""
    return [Gate(**dict(g)) for g in (spec or [])]


# --- log, register, promote --------------------------------------------------------------------
@dataclass
class Registration:
    """What happened to a trained model: its run, version, sha256, alias and the gate verdicts."""

    name: str
    run_id: str
    version: str
    model_sha256: str
    alias: str
    gates: list[str] = field(default_factory=list)
    promoted: bool = False
    exported_to: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params -> dotted keys (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def champion_info(name: str) -> dict | None:
    """The current champion's version, sha256 and metrics, or None."""
    c = client()
    try:
        mv = c.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # noqa: BLE001 - no registered model or no alias yet
        return None
    run = c.get_run(mv.run_id)
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "model_sha256": mv.tags.get("model_sha256"),
        "metrics": dict(run.data.metrics),
        "source": mv.source,
    }


def log_and_register(
    name: str,
    model,
    *,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    gates: list[Gate],
    input_example=None,
    charts: list[Path] = (),
    data_paths: list[str] = (),
    extra_artifacts: Mapping[str, Path] | None = None,
    tags: Mapping[str, str] | None = None,
    export_dir: Path | None = None,
    saver=None,
    comparison_path: Path | None = None,
    training_data: Mapping[str, Any] | None = None,
    reference=None,
) -> Registration:
    """Log one training run with its model, register a version and promote it if the gates pass.

    `saver(model, dir, signature=, input_example=) -> sha256` writes the MLflow model dir: sklearn models
    by default (skops); `save_forecaster` for the forecaster. `training_data` (see `describe_training`)
    is tagged on the run and the version as `training.*`, for the model card. `reference` (a frame, see
    `ml.monitoring.reference.training_reference`) is saved inside the model directory as `reference/`, so the version,
    its exported copy and a Bento carry the data `/check_drift` and monitoring compare with.
    """

    c = client()
    exp_id = experiment(name)
    champion = champion_info(name)
    verdicts = [g.check(metrics, champion["metrics"] if champion else None) for g in gates]
    passed = all(ok for ok, _ in verdicts)
    saver = saver or save_sklearn
    signature = None
    if input_example is not None and saver is save_sklearn:
        signature = infer_signature(input_example, _predict_for_signature(model, input_example))
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and _finite(v)})
        provenance = {"git_commit": git_commit(), "opslab.model": name}
        provenance.update({f"data.{Path(p).name}.dvc_hash": dvc_hash(p) for p in data_paths})
        provenance.update({f"training.{k}": str(v) for k, v in (training_data or {}).items()})
        if reference is not None:
            provenance["training.drift_reference_rows"] = str(len(reference))
        mlflow.set_tags({**provenance, **(tags or {})})
        for chart in charts:
            mlflow.log_artifact(str(chart), artifact_path="charts")
        for sub, path in (extra_artifacts or {}).items():
            (mlflow.log_artifacts if Path(path).is_dir() else mlflow.log_artifact)(
                str(path), artifact_path=sub
            )
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            sha = saver(model, model_dir, signature=signature, input_example=input_example)
            ref_dir, ref_sha = model_dir / reference_files.REFERENCE_DIR, ""
            if reference is not None:
                reference_files.save_reference(reference, ref_dir, meta={"model": name})
                ref_sha = tree_sha256(ref_dir)  # `reference_sha256`: the drift reference is verified too
            mlflow.log_artifacts(str(model_dir), artifact_path="model")
            mlflow.set_tag("model_sha256", sha)
            mlflow.set_tag("gates", "passed" if passed else "failed")
            mlflow.log_text("\n".join(msg for _, msg in verdicts) + "\n", "gates.txt")
            ref_tag = {"reference_sha256": ref_sha} if ref_sha else None
            mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name, tags=ref_tag)
            c.set_model_version_tag(name, mv.version, "model_sha256", sha)
            c.set_model_version_tag(name, mv.version, "git_commit", provenance["git_commit"])
            c.set_model_version_tag(name, mv.version, "gates", "passed" if passed else "failed")
            c.set_registered_model_alias(name, CHALLENGER, mv.version)  # every new version starts here
            alias = CHALLENGER
            exported = None
            if passed:
                alias = CHAMPION
                _set_champion(c, name, str(mv.version))
                exported = export_model(
                    name,
                    model_dir,
                    version=mv.version,
                    sha256=sha,
                    run_id=run.info.run_id,
                    metrics=metrics,
                    export_dir=export_dir,
                )
    if comparison_path is not None:
        comparison.write_comparison(
            comparison_path, name, str(mv.version), metrics, champion, verdicts, passed
        )
    return Registration(
        name=name,
        run_id=run.info.run_id,
        version=str(mv.version),
        model_sha256=sha,
        alias=alias,
        gates=[msg for _, msg in verdicts],
        promoted=passed,
        exported_to=str(exported) if exported else None,
    )


def describe_training(frame, time_column: str) -> dict[str, Any]:
    """Rows and time span of a training frame, for the `training_data` of `log_and_register`."""
    t = pd.to_datetime(frame[time_column])
    return {"rows": int(len(frame)), "from": str(t.min()), "to": str(t.max()), "time_column": time_column}


HISTORY_TAG = "opslab.champion_history"  # versions that have been champion, oldest first (for rollback)


def _set_champion(c, name: str, version: str) -> None:
    """Point `champion` at a version and append it to the registered model's champion history."""
    model = c.get_registered_model(name)
    history = json.loads(model.tags.get(HISTORY_TAG, "[]"))
    if not history or history[-1] != version:
        history.append(version)
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    c.set_registered_model_alias(name, CHAMPION, version)


def promote(name: str, version: str, *, export_dir: Path | None = None) -> dict:
    """Make a version champion by hand (the gates are bypassed: say why in the commit/ticket)."""
    c = client()
    before = champion_info(name)
    mv = c.get_model_version(name, str(version))
    _set_champion(c, name, str(mv.version))
    _export_version(name, mv, export_dir)
    return {
        "model": name,
        "champion_before": before["version"] if before else None,
        "champion_now": str(mv.version),
        "model_sha256": mv.tags.get("model_sha256"),
        "tracking_uri": mlflow.get_tracking_uri(),
    }


def rollback(name: str, *, export_dir: Path | None = None) -> dict:
    """Move `champion` back to the version that was champion before the current one."""
    c = client()
    model = c.get_registered_model(name)
    history = json.loads(model.tags.get(HISTORY_TAG, "[]"))
    current = champion_info(name)
    if current is None or len(history) < 2:
        raise ValueError(f"{name}: no earlier champion to roll back to (history {history})")
    while history and history[-1] == current["version"]:
        history.pop()
    if not history:
        raise ValueError(f"{name}: no earlier champion to roll back to")
    target = history[-1]
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    c.set_registered_model_alias(name, CHAMPION, target)
    _export_version(name, c.get_model_version(name, target), export_dir)
    return {
        "model": name,
        "champion_before": current["version"],
        "champion_now": target,
        "model_sha256": c.get_model_version(name, target).tags.get("model_sha256"),
    }


def _export_version(name: str, mv, export_dir: Path | None) -> Path:
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}"))
    metrics = client().get_run(mv.run_id).data.metrics
    return export_model(
        name,
        local,
        version=mv.version,
        sha256=mv.tags.get("model_sha256", ""),
        run_id=mv.run_id,
        metrics=metrics,
        export_dir=export_dir,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.registry", description="Move the champion alias by hand.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("promote", help="make VERSION the champion of MODEL")
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True)
    r = sub.add_parser("rollback", help="make the previous champion of MODEL champion again")
    r.add_argument("--model", required=True)
    args = ap.parse_args(argv)
    try:
        out = promote(args.model, args.version) if args.cmd == "promote" else rollback(args.model)
    except Exception as exc:  # noqa: BLE001 - a readable line, not a traceback
        print(f"{args.cmd} failed: {exc}", file=sys.stderr)
        return 2
    print(
        f"{out['model']}: champion v{out['champion_before']} -> v{out['champion_now']} "
        f"(model_sha256 {str(out['model_sha256'])[:12]}…)"
    )
    return 0


def export_model(
    name: str,
    model_dir: Path,
    *,
    version: str,
    sha256: str,
    run_id: str,
    metrics: Mapping,
    export_dir: Path | None = None,
) -> Path:
    """Copy the champion's model dir to models/<name>/ with a small manifest (the service's fallback copy)."""
    dest = Path(export_dir or config.MODELS) / name
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    manifest = {
        "name": name,
        "version": str(version),
        "alias": CHAMPION,
        "model_sha256": sha256,
        "run_id": run_id,
        "metrics": {k: float(v) for k, v in metrics.items() if _finite(v)},
    }
    if (tmp / reference_files.REFERENCE_DIR).is_dir():  # the registry's `reference_sha256` tag covers it
        manifest["reference_sha256"] = tree_sha256(tmp / reference_files.REFERENCE_DIR)
    (tmp / "opslab_model.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def load_champion(name: str, alias: str = CHAMPION):
    """Download `models:/<name>@<alias>`, verify its sha256 (none: refused), load it; -> (model, info dict)."""
    c = client()
    mv = c.get_model_version_by_alias(name, alias)  # then that version, not the alias (it may move meanwhile)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}"))
    model = load_sklearn(local, mv.tags.get("model_sha256"))
    return model, {
        "name": name,
        "version": str(mv.version),
        "model_sha256": mv.tags.get("model_sha256"),
        "alias": alias,
        "metrics": dict(c.get_run(mv.run_id).data.metrics),  # e.g. the SLA decision threshold
    }


def _predict_for_signature(model, example):
    try:
        return model.predict(example)
    except Exception:  # noqa: BLE001 - a signature without outputs is still useful
        return None


def _finite(v) -> bool:
    try:
        return float(v) == float(v) and abs(float(v)) != float("inf")
    except (TypeError, ValueError):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
