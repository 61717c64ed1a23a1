"""What the monitoring job measures on logged predictions: input drift, output drift and live performance.

Pure functions over frames, plus the look-up of a served version's drift reference and training metrics:
- `input_records` rebuilds the raw records a request carried from the logged `input` JSON (incidents: the
  open-time record, one per incident number; sensors: readings, one per sensor and time), the records
  `ml.monitoring.drift.check_drift` — the /check_drift code — compares with the version's reference;
- `output_values` takes the monitored scores from the logged `output` JSON; `training_outputs` gives the
  version's own scores on its reference sample (the training-time distribution), where the model can score
  independent records; otherwise the reason why there is none;
- `performance` joins logged predictions with the labels that have since arrived in silver: SLA outcome ->
  ROC AUC, hours to resolution -> MAE and P10-P90 coverage, sensor readings -> MAPE of served forecasts.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.data.schemas import OPEN_TIME_COLUMNS
from ml.incidents.targets import breach_target, ttr_hours_target
from ml.monitoring import drift, predlog, reference, timeline

MANIFEST = "opslab_model.json"  # beside an exported champion (ml.registry.export_model writes it)
NO_SCORES = "no training score distribution available"


@dataclass(frozen=True)
class ModelSpec:
    """How the job reads one served model's log records."""

    domain: str  # incidents | sensors: the drift domain of its reference
    item: str  # the key of the item in the logged input (predlog: the request list's name, singular)
    outputs: tuple[str, ...] = ()  # dotted paths of the monitored scores in the logged output
    performance: str | None = None  # sla | ttr | forecast: how live labels judge it
    scorer: str | None = None  # sla, ttr, clusters, heads: scores its reference; saved: kept in it
    no_scores: str = ""  # why there is no training score distribution (scorer None)


MODELS: dict[str, ModelSpec] = {
    "sensor-anomaly": ModelSpec("sensors", "reading", ("score",), scorer="saved"),  # scores kept in training
    "sensor-forecast": ModelSpec(
        "sensors", "item", (), "forecast",
        no_scores="a forecast is a path over time, not a score; judged by MAPE against the readings instead",
    ),
    "incident-sla": ModelSpec("incidents", "incident", ("breach_probability",), "sla", "sla"),
    "incident-ttr": ModelSpec("incidents", "incident", ("p10", "p50", "p90"), "ttr", "ttr"),
    "incident-clusters": ModelSpec("incidents", "incident", ("cluster",), scorer="clusters"),
    "incident-triage": ModelSpec(
        "incidents", "incident", ("assignment_group.confidence", "category.confidence"), scorer="heads"
    ),
    "incident-system-team": ModelSpec(
        "incidents", "incident", ("cmdb_ci.confidence", "owning_team.confidence"), scorer="heads"
    ),
    "incident-similar": ModelSpec(
        "incidents", "incident", no_scores="its answer is a list of neighbours, not a score"
    ),
}  # fmt: skip


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, timestamps -> ISO text, recursively."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


# --- records from the log ----------------------------------------------------------------------------
def _times(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, format="ISO8601").dt.tz_localize(None).astype("datetime64[ns]")


def incident_frame(items: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Logged incidents -> the open-time record frame (silver dtypes), one row per incident number (the last)."""
    frame = pd.DataFrame.from_records(list(items))
    for col in ("number", *OPEN_TIME_COLUMNS):
        if col not in frame.columns:
            frame[col] = None
    frame["opened_at"] = _times(frame["opened_at"])
    for col in ("impact", "urgency", "priority"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    for col in ("sla_target_hours", *(["group_load_24h"] if "group_load_24h" in frame else [])):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    numbered = frame["number"].notna()
    keep = ~numbered | ~frame["number"].duplicated(keep="last")
    return frame[keep].reset_index(drop=True)


def reading_frame(items: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Logged readings -> (sensor_id, timestamp, value), one row per sensor and time (the last)."""
    frame = pd.DataFrame.from_records(list(items), columns=["sensor_id", "timestamp", "value"])
    frame["sensor_id"] = frame["sensor_id"].astype(str)
    frame["timestamp"] = _times(frame["timestamp"])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    frame = frame.drop_duplicates(["sensor_id", "timestamp"], keep="last")
    return frame.sort_values(["sensor_id", "timestamp"]).reset_index(drop=True)


def input_records(name: str, log: pd.DataFrame) -> pd.DataFrame:
    """The raw records a model's logged requests carried (forecast: the history readings of each item)."""
    spec = MODELS[name]
    items = [i[spec.item] for i in predlog.parsed(log, "input") if isinstance(i.get(spec.item), Mapping)]
    if spec.domain == "incidents":
        return incident_frame(items)
    if spec.item == "item":  # /forecast: {sensor_id, horizon, history: [{timestamp, value}]}
        items = [{"sensor_id": it["sensor_id"], **p} for it in items for p in (it.get("history") or [])]
    return reading_frame(items)


def _path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, Mapping) else None
    return obj


def output_values(name: str, log: pd.DataFrame) -> pd.DataFrame:
    """The monitored scores of each logged answer (one column per `ModelSpec.outputs` path; clusters as text)."""
    fields = MODELS[name].outputs
    outs = predlog.parsed(log, "output")
    frame = pd.DataFrame({f: [_path(o, f) for o in outs] for f in fields}, index=log.index)
    for f in fields:
        if f == "cluster":
            frame[f] = frame[f].map(lambda v: None if v is None else str(v)).astype(object)
        else:
            frame[f] = pd.to_numeric(frame[f], errors="coerce").astype(float)
    return frame


def summary(values: pd.Series) -> dict[str, Any]:
    """n, mean and P10/P50/P90 of numbers, or the five most common values of categories."""
    values = values.dropna()
    if values.empty:
        return {"n": 0}
    if drift.is_categorical(values):
        return {"n": int(len(values)), "top": values.astype(str).value_counts().head(5).to_dict()}
    q = np.quantile(values.to_numpy(dtype=float), [0.1, 0.5, 0.9])
    return {"n": int(len(values)), "mean": float(values.mean()), "p10": q[0], "p50": q[1], "p90": q[2]}


# --- the served version: reference, metrics, model ---------------------------------------------------
@dataclass
class VersionInfo:
    """What the job knows about one served model version (from the exported copy or the registry)."""

    name: str
    version: str
    reference: pd.DataFrame | None
    reference_note: str
    metrics: dict[str, float] = field(default_factory=dict)
    model_sha256: str | None = None
    model_dir: Path | None = None  # the exported copy
    source: Any = None  # an ml.serving.loading.Source (registry) when not the exported copy


def version_info(models_dir: Path, name: str, version: str) -> VersionInfo:
    """The exported copy under `models_dir/<name>` when it is that version, else the registry's (verified)."""
    exported = Path(models_dir) / name
    manifest_path, other = exported / MANIFEST, "none"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{manifest_path}: not valid JSON ({exc})") from exc
        other = str(manifest.get("version"))
        if other == str(version):
            ref_dir = exported / reference.REFERENCE_DIR
            ref = (
                reference.load_reference(ref_dir) if (ref_dir / reference.REFERENCE_META).is_file() else None
            )
            note = str(ref_dir) if ref is not None else f"no {reference.REFERENCE_DIR}/ in {exported}"
            metrics = {str(k): float(v) for k, v in (manifest.get("metrics") or {}).items()}
            return VersionInfo(name, str(version), ref, note, metrics, manifest.get("model_sha256"), exported)
    try:
        from ml.serving import loading  # bentoml + mlflow take seconds: only for a version not exported

        source = loading.from_registry(name, f"models:/{name}/{version}", "registry")
        ref, note = loading.load_reference(source)
        return VersionInfo(
            name, str(version), ref, note, dict(source.metrics), source.model_sha256, source=source
        )
    except Exception as exc:  # noqa: BLE001 - unreachable registry, unknown version: reported, not fatal
        why = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        note = f"v{version} is not the exported copy in {exported} (that is v{other}) and the registry gave: {why}"
        return VersionInfo(name, str(version), None, note)


def _score_reference(scorer: str, model, ref: pd.DataFrame) -> pd.DataFrame:
    if scorer == "sla":
        from ml.incidents import sla  # only when a version's reference is scored (once per version)

        return pd.DataFrame({"breach_probability": sla.breach_probability(model, ref)})
    if scorer == "ttr":
        from ml.incidents import ttr  # only when a version's reference is scored (once per version)

        return ttr.predict_ttr(model, ref)[["p10", "p50", "p90"]].reset_index(drop=True)
    if scorer == "clusters":
        return pd.DataFrame({"cluster": [str(int(c)) for c in np.asarray(model.predict(ref))]})
    if scorer == "heads":  # a PrecisionTargetClassifier: each head's confidence, as /triage answers it
        from ml.incidents import triage  # only when a version's reference is scored (once per version)

        frame = model.predict_frame(ref.reset_index(drop=True))
        return pd.DataFrame({f"{t}.confidence": triage.head_frame(model, frame, t)["confidence"].to_numpy(float)
                             for t in model.target_names_})  # fmt: skip
    raise ValueError(f"unknown scorer {scorer!r}")


def score_reference(info: VersionInfo, scorer: str) -> pd.DataFrame:
    """The version's model (sha256-checked) applied to its reference sample."""
    from ml import registry  # mlflow takes seconds to import: only when a version's reference is scored

    if info.model_dir is not None:
        model = registry.load_sklearn(info.model_dir, info.model_sha256)
        return _score_reference(scorer, model, info.reference)
    from ml.serving import loading  # the registry version's download and sha256 check

    model = loading.load(info.source, registry.load_sklearn)
    return _score_reference(scorer, model, info.reference)


def training_outputs(info: VersionInfo, cache_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """(the version's scores on its training reference, where they come from) or (None, why there are none).

    Computed once per version and model sha256, then read from `cache_dir`."""
    spec = MODELS.get(info.name)
    if spec is None or not spec.outputs:
        return None, f"{NO_SCORES}: " + (
            spec.no_scores if spec else "a model the monitoring job does not know"
        )
    if spec.scorer is None:
        return None, f"{NO_SCORES}: {spec.no_scores}"
    if info.reference is None:
        return None, f"{NO_SCORES}: no drift reference to score ({info.reference_note})"
    if spec.scorer == "saved":  # the model's own scores of its reference rows, kept when it was trained
        cols = [c for c in spec.outputs if c in info.reference.columns]
        if not cols:
            return None, f"{NO_SCORES}: v{info.version}'s reference keeps no training {list(spec.outputs)}"
        kept = info.reference[cols].dropna(how="all").reset_index(drop=True)
        return kept, f"v{info.version}'s scores of its reference rows, kept in training ({len(kept)} rows)"
    sha = (info.model_sha256 or "nosha")[:12]
    cached = Path(cache_dir) / info.name / f"v{info.version}-{sha}.parquet"
    source = f"v{info.version} scored on its reference sample ({len(info.reference)} rows)"
    if cached.is_file():
        return pd.read_parquet(cached), source
    try:
        scores = score_reference(info, spec.scorer)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be loaded here: say so in the report
        return None, f"{NO_SCORES}: scoring the reference failed: {type(exc).__name__}: {exc}"[:400]
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".", suffix=".tmp")
    os.close(fd)
    scores.to_parquet(tmp, index=False)
    os.replace(tmp, cached)
    return scores, source


# --- drift ----------------------------------------------------------------------------------------------
def noise_floor(domain: str, ref: pd.DataFrame, cur: pd.DataFrame, bins: int) -> float | None:
    """PSI expected from sampling alone (sensors: at the median readings per sensor of both sides)."""
    if domain != "sensors":
        return drift.psi_noise_floor(len(ref), len(cur), bins)
    counts = cur["sensor_id"].value_counts()
    known = ref["sensor_id"].astype(str).value_counts().reindex(counts.index).dropna()
    if known.empty:
        return None
    return drift.psi_noise_floor(int(known.median()), int(counts.median()), bins)


def input_drift(
    domain: str, ref: pd.DataFrame, cur: pd.DataFrame, *, threshold: float, bins: int, max_cells: int | None
) -> dict[str, Any]:
    """`drift.check_drift` (the /check_drift code) of raw records: {input_drift, drifted_features, noise_floor}
    or {error} when the records cannot be compared (an unknown sensor, a grid over the cap)."""
    try:
        table = drift.check_drift(domain, ref, cur, threshold=threshold, bins=bins, max_cells=max_cells)
    except ValueError as exc:
        return {"input_drift": {}, "drifted_features": [], "error": str(exc)[:300]}
    table = table[np.isfinite(table["psi"].to_numpy(dtype=float))]
    return {
        "input_drift": {str(r.feature): float(r.psi) for r in table.itertuples()},
        "drifted_features": [str(f) for f in table.loc[table["drifted"], "feature"]],
        "noise_floor": noise_floor(domain, ref, cur, bins),
    }


def output_drift(ref: pd.DataFrame, cur: pd.DataFrame, *, threshold: float, bins: int) -> dict[str, Any]:
    """PSI (`drift.psi_table`) of each monitored score against the training-time scores."""
    cols = [c for c in cur.columns if c in ref.columns and cur[c].notna().any()]
    if not cols:
        return {"psi": {}, "drifted_fields": []}
    table = drift.psi_table(ref[cols], cur[cols], threshold=threshold, bins=bins, dropna=True)
    table = table[np.isfinite(table["psi"].to_numpy(dtype=float))]
    return {
        "psi": {str(r.feature): float(r.psi) for r in table.itertuples()},
        "drifted_fields": [str(f) for f in table.loc[table["drifted"], "feature"]],
    }


# --- live performance -------------------------------------------------------------------------------------
def _incident_predictions(log: pd.DataFrame, name: str) -> pd.DataFrame:
    """Each logged incident's scores with its number (from the answer, else the request), the last per number."""
    outs, ins = predlog.parsed(log, "output"), predlog.parsed(log, "input")
    item = MODELS[name].item
    numbers = [o.get("number") or (i.get(item) or {}).get("number") for o, i in zip(outs, ins, strict=True)]
    frame = output_values(name, log).assign(number=numbers, time=log["time"].to_numpy())
    frame = frame[frame["number"].notna()]
    return frame.drop_duplicates("number", keep="last").reset_index(drop=True)


def forecast_points(log: pd.DataFrame) -> pd.DataFrame:
    """Every served forecast point: sensor_id, timestamp, yhat, lo80, hi80."""
    rows = [
        {"sensor_id": str(o.get("sensor_id")), **{k: p.get(k) for k in ("timestamp", "yhat", "lo80", "hi80")}}
        for o in predlog.parsed(log, "output")
        for p in (o.get("forecast") or [])
    ]
    frame = pd.DataFrame(rows, columns=["sensor_id", "timestamp", "yhat", "lo80", "hi80"])
    frame["timestamp"] = (
        _times(frame["timestamp"]) if len(frame) else frame["timestamp"].astype("datetime64[ns]")
    )
    for col in ("yhat", "lo80", "hi80"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def forecast_error(points: pd.DataFrame, readings: pd.DataFrame) -> dict[str, Any]:
    """MAPE (%) and 80% interval coverage of served forecast points against the actual readings."""
    actual = readings[["sensor_id", "timestamp", "value"]].assign(
        sensor_id=lambda f: f["sensor_id"].astype(str)
    )
    actual = actual.assign(timestamp=pd.to_datetime(actual["timestamp"]).astype("datetime64[ns]"))
    joined = points.merge(actual.drop_duplicates(["sensor_id", "timestamp"], keep="last"), how="inner",
                          on=["sensor_id", "timestamp"]).dropna(subset=["yhat", "value"])  # fmt: skip
    nonzero = joined[joined["value"].abs() > 0]
    ape = (nonzero["yhat"] - nonzero["value"]).abs() / nonzero["value"].abs()
    inside = (joined["value"] >= joined["lo80"]) & (joined["value"] <= joined["hi80"])
    return {
        "n": int(len(joined)),
        "mape": float(100.0 * ape.mean()) if len(ape) else None,
        "mae": float((joined["yhat"] - joined["value"]).abs().mean()) if len(joined) else None,
        "coverage80": float(inside[joined["lo80"].notna()].mean()) if joined["lo80"].notna().any() else None,
    }


def performance(
    name: str,
    log: pd.DataFrame,
    labels: Callable[[str], tuple[pd.DataFrame | None, str]],
    metrics: Mapping[str, float],
    nominal_coverage: float,
) -> dict[str, Any]:
    """Live quality of one version from its logged predictions (`log`) and the labels that have arrived.

    `labels(table)` -> (silver table or None, its path or why not). Always holds `available`, and `n` =
    `n_labelled` (predictions with a label); `reason` when it cannot be measured."""
    kind = MODELS[name].performance if name in MODELS else None
    if kind is None:
        return {
            "available": False,
            "reason": f"no live labels are defined for {name}",
            "n": 0,
            "n_labelled": 0,
        }
    table = "sensor_readings" if kind == "forecast" else "incidents"
    silver, where = labels(table)
    if silver is None:
        return {"available": False, "reason": f"no labels yet: {where}", "n": 0, "n_labelled": 0}
    if kind == "forecast":
        points = forecast_points(log)
        out = forecast_error(points, silver)
        return {
            "available": True,
            "labels": where,
            "n_predictions": int(len(points)),
            "n_labelled": out["n"],
            **out,
        }
    preds = _incident_predictions(log, name)
    outcomes = silver.drop_duplicates("number", keep="last").set_index("number")
    joined = preds.join(outcomes, on="number", how="left")
    base = {"available": True, "labels": where, "n_predictions": int(len(preds))}
    if kind == "sla":
        joined["label"] = breach_target(joined).to_numpy()
        perf = timeline.performance(joined, score="breach_probability", label="label", kind="classification")
        train = metrics.get("roc_auc")
        drop = train - perf["roc_auc"] if train is not None and np.isfinite(perf["roc_auc"]) else None
        return {**base, **perf, "n_labelled": perf["n"], "training_roc_auc": train, "auc_drop": drop}
    joined["label"] = ttr_hours_target(joined).to_numpy()
    perf = timeline.performance(
        joined, score="p50", label="label", kind="regression", lower="p10", upper="p90"
    )
    return {
        **base,
        **perf,
        "n_labelled": perf["n"],
        "mae_unit": "hours",
        "nominal_coverage": nominal_coverage,
    }
