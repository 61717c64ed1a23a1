"""The endpoints' answers from a compiled model (`loaded.extras["fast"]`), or from the fitted object.

Each function takes the compiled path (None: there is none) and the fitted model, and answers exactly
like its `ml.serving.predict` counterpart; anything the fast path does not cover (an error to report, a
model without a compiled path) goes to that counterpart.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from ml.serving import predict, schemas

EPOCH, MICROSECOND = datetime(1970, 1, 1), timedelta(microseconds=1)


def datetime64_ns(values) -> np.ndarray:
    """Naive datetimes (the schemas' timestamps) -> datetime64[ns], exactly: integer microseconds since
    the epoch, times 1000 (numpy's own conversion of datetime objects costs ~3 us each)."""
    micros = np.array([(v - EPOCH) // MICROSECOND for v in values], dtype=np.int64)
    return (micros * 1000).view("datetime64[ns]")


def detect_anomaly(fast, pipe, request: schemas.DetectAnomalyRequest) -> dict:
    if fast is None:
        return predict.detect_anomaly(pipe, request)
    readings = request.readings
    sensor_ids = [r.sensor_id for r in readings]
    ts = datetime64_ns([r.timestamp for r in readings])
    values = np.array([r.value for r in readings], dtype=float)  # None -> NaN
    scored = fast.score(sensor_ids, ts, values, request.explain)
    if scored is None:  # an unknown sensor or a duplicate reading: the slow path words the 4xx
        return predict.detect_anomaly(pipe, request)
    score, flagged, top = scored
    return {
        "results": [
            {
                "sensor_id": r.sensor_id,
                "timestamp": r.timestamp,
                "value": None if r.value is None else float(r.value),
                "score": None if s != s else float(s),
                "is_anomaly": bool(f),
                "threshold": fast.threshold,
                "top_feature": t,
            }
            for r, s, f, t in zip(readings, score.tolist(), flagged.tolist(), top, strict=True)
        ]
    }


def predict_sla(fast, model, request: schemas.IncidentsRequest, *, threshold: float) -> dict:
    if fast is None:
        return predict.predict_sla(model, request, threshold=threshold)
    probs = fast.breach_probability(request.incidents)
    return {
        "results": [
            {"number": x.number, "breach_probability": float(p), "breach_predicted": bool(p >= threshold)}
            for x, p in zip(request.incidents, probs.tolist(), strict=True)
        ]
    }


def classify_heads(fast, model, request: schemas.TopKRequest, targets: tuple[str, ...]) -> dict:
    if fast is None or not set(targets) <= set(fast.targets):
        return predict.classify_heads(model, request, targets)
    answers = fast.explain(request.incidents, request.top_k, targets)
    return {
        "top_k": request.top_k,
        "results": [{"number": x.number, **a} for x, a in zip(request.incidents, answers, strict=True)],
    }
