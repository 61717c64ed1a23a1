"""Request body -> the same frame batch scoring uses -> the model's own ml/ function -> response fields.

No transform is re-implemented here: each function builds the raw-record frame the batch path takes and
calls the batch function (`anomaly.score_readings`, `SensorForecaster.forecast`, `sla.breach_probability`,
`ttr.predict_ttr`, and the incident text models' own methods as `ml.incidents.scoring` calls them:
`PrecisionTargetClassifier.predict_frame`, `SimilarIncidents.query`, `IncidentClusterer.predict` /
`cluster_label`). What is added is request-level checking that batch code leaves to its caller (unknown
sensor, duplicated reading), reported as a 422 naming the field path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ml import config
from ml.archive import predict as archive_predict
from ml.archive.targets import TARGETS, target_name
from ml.incidents import sla, triage, ttr
from ml.monitoring import drift
from ml.sensors import anomaly
from ml.serving import schemas


class ClientError(Exception):
    """A request the model cannot answer as asked: becomes a 4xx naming the field path."""

    def __init__(self, message: str, loc: list[Any] | None = None, status: int = 422):
        super().__init__(message)
        self.message, self.loc, self.status = message, list(loc or []), status


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# --- sensors --------------------------------------------------------------------------------------
def readings_frame(readings: list[schemas.Reading]) -> pd.DataFrame:
    """Request readings -> the raw (sensor_id, timestamp, value) frame the detector's Pipeline reads."""
    return pd.DataFrame(
        {
            "sensor_id": [r.sensor_id for r in readings],
            "timestamp": pd.to_datetime([r.timestamp for r in readings]).astype("datetime64[ns]"),
            "value": np.array([np.nan if r.value is None else r.value for r in readings], dtype=float),
        }
    )


def detect_anomaly(pipe, request: schemas.DetectAnomalyRequest) -> dict:
    frame = readings_frame(request.readings)
    known = pipe.named_steps["features"].sensors_
    for i, sid in enumerate(frame["sensor_id"]):
        if sid not in known:
            raise ClientError(
                f"sensor_id {sid!r} is unknown to this model ({len(known)} sensors known)",
                ["readings", i, "sensor_id"],
            )
    dup = frame.duplicated(["sensor_id", "timestamp"], keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise ClientError(
            f"sensor {frame['sensor_id'].iloc[i]!r} has two readings at {frame['timestamp'].iloc[i]}",
            ["readings", i, "timestamp"],
        )
    scored = anomaly.score_readings(pipe, frame, explain=request.explain)
    results = [
        {
            "sensor_id": sid,
            "timestamp": ts.to_pydatetime(),
            "value": None if value != value else float(value),
            "score": None if score != score else float(score),
            "is_anomaly": bool(flag),
            "threshold": float(thr),
            "top_feature": top if isinstance(top, str) else None,
        }
        for sid, ts, value, score, flag, thr, top in zip(
            scored["sensor_id"],
            scored["timestamp"],
            scored["value"],
            scored["score"],
            scored["is_anomaly"],
            scored["threshold"],
            scored["top_feature"],
            strict=True,
        )
    ]
    return {"results": results}


def forecast(forecaster, request: schemas.ForecastRequest, max_history_steps: int | None = None) -> dict:
    known = set(forecaster.sensor_ids)
    results = []
    for i, item in enumerate(request.items):
        if item.sensor_id not in known:
            raise ClientError(
                f"sensor_id {item.sensor_id!r} is unknown to this model ({len(known)} sensors known)",
                ["items", i, "sensor_id"],
            )
        history = None
        if item.history:
            history = pd.DataFrame(
                {
                    "timestamp": pd.to_datetime([p.timestamp for p in item.history]).astype("datetime64[ns]"),
                    "value": [np.nan if p.value is None else p.value for p in item.history],
                }
            )
        try:
            frame = forecaster.forecast(item.sensor_id, item.horizon, history, max_history_steps)
        except ValueError as exc:  # off-grid or too distant history, horizon beyond what the artifact answers
            field = "history" if str(exc).startswith("history") else "horizon"
            raise ClientError(str(exc), ["items", i, field]) from exc
        points = [
            {
                "timestamp": ts.to_pydatetime(),
                "yhat": _num(y),
                "lo80": _num(a),
                "hi80": _num(b),
                "lo95": _num(c),
                "hi95": _num(d),
            }
            for ts, y, a, b, c, d in zip(
                frame["timestamp"],
                frame["yhat"],
                frame["lo80"],
                frame["hi80"],
                frame["lo95"],
                frame["hi95"],
                strict=True,
            )
        ]
        results.append(
            {
                "sensor_id": item.sensor_id,
                "horizon": item.horizon,
                "model": str(frame["model"].iloc[0]) if len(frame) else "",
                "forecast": points,
            }
        )
    return {"results": results}


# --- incidents ------------------------------------------------------------------------------------
INCIDENT_TEXT = tuple(n for n in schemas.INCIDENT_STRING_FIELDS if n != "number")  # object columns


def incidents_frame(incidents: list[schemas.Incident]) -> pd.DataFrame:
    """Request incidents -> the open-time record frame (silver dtypes) the incident Pipelines read.

    `group_load_24h` is passed through when a client sends it (batch scoring computes it over the whole
    history); when absent the model fills its training median, as documented in IncidentFeatures.
    """
    frame = pd.DataFrame(
        {
            "number": [x.number for x in incidents],
            "opened_at": pd.to_datetime([x.opened_at for x in incidents]).astype("datetime64[ns]"),
            "impact": pd.array([x.impact for x in incidents], dtype="Int64"),
            "urgency": pd.array([x.urgency for x in incidents], dtype="Int64"),
            "priority": pd.array([x.priority for x in incidents], dtype="Int64"),
            "sla_target_hours": np.array([x.sla_target_hours for x in incidents], dtype=float),
            **{col: pd.Series([getattr(x, col) for x in incidents], dtype=object) for col in INCIDENT_TEXT},
        }
    )
    loads = [x.group_load_24h for x in incidents]
    if any(v is not None for v in loads):
        frame["group_load_24h"] = np.array([np.nan if v is None else v for v in loads], dtype=float)
    return frame


def sla_threshold(metrics: dict[str, float], configured: float | None) -> tuple[float, str]:
    """The decision threshold: the version's own `threshold` metric (chosen at training), else params."""
    if "threshold" in metrics and math.isfinite(metrics["threshold"]):
        return float(metrics["threshold"]), "model metric 'threshold' (chosen on training data)"
    if configured is not None:
        return float(configured), "params.yaml serving.sla_threshold"
    p = config.section("sla")
    return p["cost_fp"] / (p["cost_fp"] + p["cost_fn"]), "cost_fp / (cost_fp + cost_fn) (params.yaml sla)"


def predict_sla(model, request: schemas.IncidentsRequest, *, threshold: float) -> dict:
    frame = incidents_frame(request.incidents)
    probs = sla.breach_probability(model, frame, n_threads=None)  # the process runs single-threaded already
    return {
        "results": [
            {"number": num, "breach_probability": float(p), "breach_predicted": bool(p >= threshold)}
            for num, p in zip(frame["number"], probs, strict=True)
        ]
    }


def predict_ttr(model, request: schemas.IncidentsRequest) -> dict:
    frame = incidents_frame(request.incidents)
    pred = ttr.predict_ttr(model, frame, n_threads=None)
    return {
        "results": [
            {
                "number": num,
                "expected_hours": float(row["p50"]),
                "p10": float(row["p10"]),
                "p50": float(row["p50"]),
                "p90": float(row["p90"]),
            }
            for num, (_, row) in zip(frame["number"], pred.iterrows(), strict=True)
        ]
    }


# --- archives -------------------------------------------------------------------------------------
def forecast_archive(model, request: schemas.ArchiveRequest) -> dict:
    """`ml.archive.predict.forecast_archive` (the batch scorer's numbers) regrouped per source: one point per
    target and horizon. A record the model cannot use is a 422 naming records.<i>.<field>."""
    records = [r.model_dump(mode="json") for r in request.records]
    try:
        rows = archive_predict.forecast_archive(model, records)
    except archive_predict.ArchiveRequestError as exc:
        where = [exc.record] if exc.record is not None else []
        raise ClientError(str(exc), ["records", *where, exc.field]) from exc
    horizons = model.horizon_days()
    results = []
    for row in rows:
        points = []
        for target in TARGETS:
            for horizon, days in horizons.items():
                name = target_name(target, horizon)
                points.append(
                    {"target": target, "horizon": horizon, "days": days, "gb": row[name],
                     "lo": row.get(f"{name}_lo"), "hi": row.get(f"{name}_hi"), "output": name}
                )  # fmt: skip
        results.append({"source_id": row["source_id"], "origin": row["origin"], "forecasts": points})
    return {"coverage": float(model.coverage), "results": results}


# --- text models: triage, system/team, similar incidents, clusters ----------------------------------
def _model_frame(model, incidents: list[schemas.Incident]) -> pd.DataFrame:
    """`incidents_frame`, checked against the columns the model says it reads (`input_columns()`)."""
    frame = incidents_frame(incidents)
    missing = [c for c in model.input_columns() if c not in frame.columns]
    if missing:  # trained on fields no request carries: the model is unusable here, not the request wrong
        raise ClientError(
            f"the served model reads column(s) {missing} that requests do not carry", status=503
        )
    return frame


def _head(row) -> dict:
    abstain = bool(row["abstain"])
    return {
        "prediction": None if abstain else str(row["prediction"]),
        "abstain": abstain,
        "reason": str(row["reason"]) if abstain else None,
        "label": str(row["label"]),
        "confidence": float(row["confidence"]),
        "threshold": _num(row["threshold"]),
        "top": [
            {"label": str(label), "probability": float(p)}
            for label, p in zip(row["top_labels"], row["top_probabilities"], strict=True)
        ],
    }


def classify_heads(model, request: schemas.TopKRequest, targets: tuple[str, ...]) -> dict:
    """`PrecisionTargetClassifier.predict_frame` (what batch scoring calls) -> one object per head."""
    missing = [t for t in targets if t not in model.target_names_]
    if missing:
        raise ClientError(
            f"the served model predicts {list(model.target_names_)}; this endpoint needs {list(targets)}",
            status=503,
        )
    frame = _model_frame(model, request.incidents)
    explained = model.predict_frame(frame, top_k=request.top_k)
    heads = {t: triage.head_frame(model, explained, t).to_dict(orient="records") for t in targets}
    return {
        "top_k": request.top_k,
        "results": [
            {"number": num, **{t: _head(heads[t][i]) for t in targets}}
            for i, num in enumerate(frame["number"])
        ],
    }


def _time(value) -> Any:
    return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and value != value) else str(value)


def similar_incidents(model, request: schemas.SimilarRequest) -> dict:
    """`SimilarIncidents.query(records, k)` (what batch scoring calls) -> the k nearest per incident."""
    frame = _model_frame(model, request.incidents)
    cols = model.input_columns()
    for i, x in enumerate(request.incidents):  # no text: every neighbour would be similarity 0, i.e. noise
        if not any(isinstance(v, str) and v.strip() for v in (getattr(x, c, None) for c in cols)):
            raise ClientError(
                f"a similar-incident query needs text in at least one of {cols}", ["incidents", i, cols[0]]
            )
    hits = model.query(frame, k=request.k)
    by_query = {int(q): part for q, part in hits.groupby("query", sort=False)}
    results = []
    for i, num in enumerate(frame["number"]):
        part = by_query.get(i)
        rows = [] if part is None else part.sort_values("rank").to_dict(orient="records")
        similar = [
            {
                "rank": int(r["rank"]),
                "number": _text(r["number"]),
                "similarity": float(r["similarity"]),
                "short_description": _text(r["short_description"]),
                "assignment_group": _text(r["assignment_group"]),
                "category": _text(r["category"]),
                "cmdb_ci": _text(r["cmdb_ci"]),
                "ttr_hours": _num(r["ttr_hours"]),
                "opened_at": _time(r["opened_at"]),
                "resolved_at": _time(r["resolved_at"]),
                "state": _text(r["state"]),
            }
            for r in rows
        ]
        results.append({"number": num, "similar": similar})
    return {"k": request.k, "results": results}


def cluster(model, request: schemas.IncidentsRequest) -> dict:
    """`IncidentClusterer.predict` and `cluster_label` (what batch scoring calls), plus the top terms."""
    frame = _model_frame(model, request.incidents)
    labels = np.asarray(model.predict(frame), dtype=int)
    return {
        "results": [
            {
                "number": num,
                "cluster": int(c),
                "cluster_terms": model.cluster_label(int(c)),
                "top_terms": [str(t) for t in model.top_terms_.get(str(int(c)), [])],
            }
            for num, c in zip(frame["number"], labels, strict=True)
        ]
    }


def _noise_floor(domain: str, reference: pd.DataFrame, current: pd.DataFrame, bins: int) -> float:
    """The PSI sampling alone gives at these sizes; sensors are compared one sensor at a time, so their
    sizes are the median rows per sensor of the batch (and of those sensors in the reference)."""
    if domain != "sensors":
        return drift.psi_noise_floor(len(reference), len(current), bins)
    cur = current["sensor_id"].value_counts()
    ref = reference["sensor_id"].value_counts().reindex(cur.index).dropna()
    if ref.empty:
        return float("nan")
    return drift.psi_noise_floor(int(ref.median()), int(cur.median()), bins)


# --- drift ----------------------------------------------------------------------------------------
def check_drift(request: schemas.DriftRequest, loaded, cfg) -> dict:
    """PSI per monitored feature of the batch against the reference saved with the domain's model."""
    reference = loaded.extras.get("reference")
    if reference is None:
        raise ClientError(
            f"model {loaded.name!r} v{loaded.source.version} has no training reference saved with it "
            f"({loaded.extras.get('reference_note', 'none found')}); /check_drift cannot answer for "
            f"{request.domain}",
            status=503,
        )
    field, other = ("readings", "incidents") if request.domain == "sensors" else ("incidents", "readings")
    if getattr(request, other):
        raise ClientError(f"domain {request.domain!r} takes {field}, not {other}", [other])
    records = getattr(request, field)
    if not records:
        raise ClientError(f"domain {request.domain!r} needs at least one record in {field}", [field])
    current = readings_frame(records) if request.domain == "sensors" else incidents_frame(records)
    try:
        table = drift.check_drift(
            request.domain,
            reference,
            current,
            threshold=cfg.drift_psi_threshold,
            bins=cfg.drift_bins,
            max_cells=cfg.max_drift_grid,
        )
    except ValueError as exc:  # a sensor the reference does not know, a span over the grid cap
        raise ClientError(str(exc), [field]) from exc
    table = table[np.isfinite(table["psi"].to_numpy(dtype=float))]
    return {
        "domain": request.domain,
        "psi_threshold": cfg.drift_psi_threshold,
        "bins": cfg.drift_bins,
        "rows": len(current),
        "reference_rows": len(reference),
        "noise_floor": _noise_floor(request.domain, reference, current, cfg.drift_bins),
        "drifted": bool(table["drifted"].any()),
        "features": [
            {"feature": str(r.feature), "psi": float(r.psi), "drifted": bool(r.drifted), "kind": str(r.kind)}
            for r in table.itertuples()
        ],
    }
