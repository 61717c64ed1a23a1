"""Honest evaluation of sensor anomaly detectors: point and event metrics and a threshold set from a target
false-alarm rate (the baselines every detector must beat are in `ml.sensors.baselines`).

Pure functions: frames in, dicts or new frames out, inputs never changed. Every detector (the Isolation
Forest and the baselines) is thresholded by `threshold_for_false_alarm_rate` and scored by
`evaluate_detector`, so their numbers are comparable.

Frames: `scored` has one row per (sensor_id, timestamp) on a regular per-sensor grid (ml.data.gold.sensor_grid)
plus a score and/or a boolean alarm column; `windows` has sensor_id, start, end (both inclusive) and
anomaly_kind. The truth is always taken from `windows` (a `scored["is_anomaly"]` column is not read), so
point and event metrics use the same labels.

Conventions: a ratio whose denominator is 0 is 0.0 (as sklearn's `zero_division=0`); a time to detect with
no detected window is None (JSON null). A score is NaN where a detector cannot score (missing reading,
warm-up), and NaN never raises an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ml.features import infer_freq

ALARM_COL = "is_anomaly_pred"
DEFAULT_MERGE_GAP = 3  # steps: alarms at most this far apart (outside windows) are one false-alarm event


# Keys of `evaluate_detector`, in the order `detector_table` shows them.
METRIC_KEYS = (
    "point_precision",
    "point_recall",
    "point_f1",
    "point_tp",
    "point_fp",
    "point_fn",
    "event_precision",
    "event_recall",
    "event_f1",
    "windows",
    "detected",
    "missed",
    "false_alarm_events",
    "mean_time_to_detect_h",
    "median_time_to_detect_h",
    "early_detection_score",
    "threshold",
    "alarms",
    "readings",
)

EvalStart = Mapping[str, Any] | pd.Series | pd.Timestamp | str | None


# --- point metrics ------------------------------------------------------------------------------
def point_metrics(y_true, y_pred) -> dict[str, float | int]:
    """Reading-level precision/recall/F1: each reading is exactly one of tp, fp, fn or tn.

    Readings whose truth is missing (NaN/None) are skipped; a missing prediction counts as no alarm.
    """
    truth = pd.Series(np.asarray(y_true, dtype=object))
    pred = pd.Series(np.asarray(y_pred, dtype=object))
    if len(truth) != len(pred):
        raise ValueError(f"y_true has {len(truth)} values but y_pred has {len(pred)}")
    known = truth.notna().to_numpy()
    t = _as_bool(truth)[known]
    p = _as_bool(pred)[known]
    tp, fp, fn = int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


# --- event metrics ------------------------------------------------------------------------------
def window_detections(
    scored: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    alarm_col: str = ALARM_COL,
    eval_start: EvalStart = None,
) -> pd.DataFrame:
    """One row per evaluated labelled window: detected?, first alarm, time to detect, early-detection credit.

    Columns: sensor_id, start, end, anomaly_kind, eval_from (start clipped to eval_start), n_alarms,
    detected, first_alarm, time_to_detect_h, early_detection_credit (0 when missed). See `event_metrics`.
    """
    prep = _prepare(scored, windows, alarm_col, eval_start)
    w = prep["windows"]
    rows = []
    for sid, start, end, kind, eval_from in zip(
        w["sensor_id"], w["start"], w["end"], w["anomaly_kind"], w["eval_from"], strict=True
    ):
        times = prep["alarms"].get(sid, _NO_TIMES)
        lo = np.searchsorted(times, np.datetime64(eval_from, "ns"), "left")
        hi = np.searchsorted(times, np.datetime64(end, "ns"), "right")
        n = int(max(hi - lo, 0))
        first = pd.Timestamp(times[lo]) if n else pd.NaT
        step = prep["steps"].get(sid, pd.Timedelta("1h"))
        rows.append(
            {
                "sensor_id": sid,
                "start": start,
                "end": end,
                "anomaly_kind": kind,
                "eval_from": eval_from,
                "n_alarms": n,
                "detected": n > 0,
                "first_alarm": first,
                "time_to_detect_h": (first - eval_from) / pd.Timedelta("1h") if n else np.nan,
                "early_detection_credit": early_detection_credit(first, eval_from, end, step) if n else 0.0,
            }
        )
    cols = [
        "sensor_id",
        "start",
        "end",
        "anomaly_kind",
        "eval_from",
        "n_alarms",
        "detected",
        "first_alarm",
        "time_to_detect_h",
        "early_detection_credit",
    ]
    out = pd.DataFrame(rows, columns=cols)
    for col in ("start", "end", "eval_from", "first_alarm"):
        out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
    return out.astype({"n_alarms": int, "detected": bool, "time_to_detect_h": float})


def false_alarm_events(
    scored: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    alarm_col: str = ALARM_COL,
    merge_gap: float = DEFAULT_MERGE_GAP,
    eval_start: EvalStart = None,
) -> pd.DataFrame:
    """Alarms outside every labelled window, grouped into events (sensor_id, start, end, n_alarms).

    Per sensor, consecutive out-of-window alarms whose time gap is <= `merge_gap` steps (one step = the
    sensor's sampling interval, so adjacent readings are 1 step apart) belong to one event.
    """
    if not merge_gap >= 0:
        raise ValueError(f"merge_gap must be >= 0 steps, got {merge_gap!r}")
    prep = _prepare(scored, windows, alarm_col, eval_start)
    w = prep["windows_all"]
    rows = []
    for sid, times in prep["alarms"].items():
        inside = np.zeros(len(times), dtype=bool)
        mine = w[w["sensor_id"] == sid]
        for start, end in zip(mine["start"], mine["end"], strict=True):
            inside |= (times >= np.datetime64(start, "ns")) & (times <= np.datetime64(end, "ns"))
        out = times[~inside]
        if not len(out):
            continue
        gaps = np.diff(out) / prep["steps"][sid].to_timedelta64()
        event = np.concatenate([[0], np.cumsum(gaps > merge_gap)])
        for k in range(int(event[-1]) + 1):
            members = out[event == k]
            rows.append(
                {
                    "sensor_id": sid,
                    "start": pd.Timestamp(members[0]),
                    "end": pd.Timestamp(members[-1]),
                    "n_alarms": len(members),
                }
            )
    out = pd.DataFrame(rows, columns=["sensor_id", "start", "end", "n_alarms"])
    for col in ("start", "end"):
        out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
    return out.astype({"n_alarms": int})


def event_metrics(
    scored: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    alarm_col: str = ALARM_COL,
    merge_gap: float = DEFAULT_MERGE_GAP,
    eval_start: EvalStart = None,
) -> dict[str, Any]:
    """Event-level detection quality: each labelled window counts once, each burst of false alarms once.

    Definitions (alarms = rows of `scored` whose `alarm_col` is true; NaN is no alarm):

    - Evaluation period: only rows at/after `eval_start[sensor_id]` count (a Timestamp for every sensor, a
      dict or a Series indexed by sensor_id; a sensor without an entry, or None, has no exclusion). Alarms
      before it are ignored; a window ending before it is dropped; a window straddling it is clipped to
      start there (`eval_from` = max(start, eval_start)).
    - A labelled window is detected if at least one alarm t has eval_from <= t <= end (both inclusive,
      same sensor). It counts once however many alarms it holds. An alarm inside two overlapping windows
      detects both. A window of a sensor absent from `scored` is missed.
    - event_recall = detected / windows.
    - False-alarm events: alarms outside every window, per sensor, in time order; consecutive ones whose
      gap is <= `merge_gap` steps form one event (see `false_alarm_events`). Note that an alarm added
      between two events can join them into one.
    - event_precision = detected / (detected + false_alarm_events); event_f1 = 2PR / (P + R).
    - time_to_detect_h (per detected window) = (first alarm in it - eval_from) in hours, >= 0;
      mean_time_to_detect_h / median_time_to_detect_h over detected windows (None if none).
    - early_detection_score = mean over windows of `early_detection_credit` (missed windows score 0).
    - Any ratio with denominator 0 is 0.0.
    """
    table = window_detections(scored, windows, alarm_col=alarm_col, eval_start=eval_start)
    n_false = len(
        false_alarm_events(scored, windows, alarm_col=alarm_col, merge_gap=merge_gap, eval_start=eval_start)
    )
    return _summarise(table, n_false)


def event_metrics_by_kind(
    scored: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    alarm_col: str = ALARM_COL,
    eval_start: EvalStart = None,
) -> pd.DataFrame:
    """Per anomaly kind: windows, detected, recall, mean/median time to detect (h), early-detection score."""
    return detections_by_kind(window_detections(scored, windows, alarm_col=alarm_col, eval_start=eval_start))


def detections_by_kind(table: pd.DataFrame) -> pd.DataFrame:
    """The by-kind breakdown of a `window_detections` table (one row per anomaly_kind, sorted)."""
    cols = [
        "anomaly_kind",
        "windows",
        "detected",
        "recall",
        "mean_time_to_detect_h",
        "median_time_to_detect_h",
        "early_detection_score",
    ]
    if table.empty:
        return pd.DataFrame(columns=cols)
    g = table.assign(anomaly_kind=table["anomaly_kind"].fillna("unknown")).groupby("anomaly_kind")
    out = pd.DataFrame(
        {
            "windows": g.size(),
            "detected": g["detected"].sum().astype(int),
            "mean_time_to_detect_h": g["time_to_detect_h"].mean(),
            "median_time_to_detect_h": g["time_to_detect_h"].median(),
            "early_detection_score": g["early_detection_credit"].mean(),
        }
    )
    out["recall"] = out["detected"] / out["windows"]
    return out.reset_index()[cols]


def early_detection_credit(
    first_alarm: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta
) -> float:
    """NAB's scaled-sigmoid reward for a window's first alarm, scaled so an alarm at the start scores 1.

    With the window `width` = (end - start) / step + 1 steps and the alarm `offset` = (first_alarm - start)
    / step steps, NAB's relative position is y = -(width - offset) / width (-1 at the start, -1/width at
    the last step) and its reward is S(y) = 2 / (1 + exp(5 y)) - 1. The credit is S(y) / S(-1): 1.0 at
    the window start, 0.86 halfway, S(-1/width) / S(-1) > 0 at the end (0.25 for a 10-step window).
    """
    width = (end - start) / step + 1
    offset = (first_alarm - start) / step
    if not 0 <= offset <= width - 1 + 1e-9:
        raise ValueError(f"first alarm {first_alarm} is outside the window {start} .. {end}")
    return _scaled_sigmoid(-(width - offset) / width) / _scaled_sigmoid(-1.0)


# --- thresholds -----------------------------------------------------------------------------------
def threshold_for_false_alarm_rate(scores_on_normal, rate: float) -> float:
    """The (1 - rate) quantile of scores on normal data: the same alarm budget for every detector.

    Uses numpy's "higher" quantile (an observed score), so with the alarm rule `score > threshold` at most
    a fraction `rate` of the normal scores alarm, ties included. NaN scores are ignored.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    s = _floats(scores_on_normal).ravel()
    s = s[~np.isnan(s)]
    if not len(s):
        raise ValueError("no non-NaN scores on normal data to set a threshold from")
    return float(np.quantile(s, 1 - rate, method="higher"))


def alarms_from_scores(scores, threshold: float) -> pd.Series | np.ndarray:
    """The alarm rule every detector shares: score > threshold (NaN never alarms)."""
    if isinstance(scores, pd.Series):
        return (scores > threshold).fillna(False).astype(bool).rename(ALARM_COL)
    s = _floats(scores)
    return np.greater(s, threshold, where=~np.isnan(s), out=np.zeros(s.shape, dtype=bool))


def eval_start_after_rows(frame: pd.DataFrame, rows: int | Callable[[int], int]) -> pd.Series:
    """Per sensor, the timestamp of its row number `rows` (or `rows(n)` for an n-row sensor) in time order.

    E.g. `rows=ml.data.sources.nab_probationary_rows` (NAB's unscored period) or `lambda n: int(0.2 * n)`.
    A sensor with too few rows gets its last timestamp + 1 ns (nothing of it is evaluated).
    """
    _require(frame, ["sensor_id", "timestamp"], "frame")
    out = {}
    for sid, ts in frame.groupby("sensor_id", sort=True)["timestamp"]:
        ts = ts.sort_values()
        k = int(rows(len(ts)) if callable(rows) else rows)
        if k < 0:
            raise ValueError(f"sensor {sid!r}: rows must be >= 0, got {k}")
        out[sid] = ts.iloc[k] if k < len(ts) else ts.iloc[-1] + pd.Timedelta(1, "ns")
    return pd.Series(out, name="eval_start", dtype="datetime64[ns]").rename_axis("sensor_id")


def before_eval_start(frame: pd.DataFrame, eval_start: EvalStart) -> np.ndarray:
    """Boolean mask of the rows before their sensor's evaluation start (the training/normal part)."""
    _require(frame, ["sensor_id", "timestamp"], "frame")
    starts = _eval_starts(eval_start, frame["sensor_id"].unique())
    return ~_in_eval(frame, starts)


# --- one call per detector ----------------------------------------------------------------------
def evaluate_detector(
    scored: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    score_col: str,
    threshold: float,
    eval_start: EvalStart = None,
    merge_gap: float = DEFAULT_MERGE_GAP,
) -> dict[str, Any]:
    """Alarms = score > threshold, then point and event metrics as one flat dict (keys: METRIC_KEYS).

    Point metrics count the readings (rows with a non-NaN `value`, when that column exists) in the
    evaluation period; truth = inside a labelled window. Event metrics: see `event_metrics`.
    """
    _require(scored, ["sensor_id", "timestamp", score_col], "scored")
    alarms = alarms_from_scores(scored[score_col], threshold)
    with_alarms = pd.DataFrame(
        {"sensor_id": scored["sensor_id"], "timestamp": scored["timestamp"], ALARM_COL: alarms}
    )
    events = event_metrics(
        with_alarms, windows, alarm_col=ALARM_COL, merge_gap=merge_gap, eval_start=eval_start
    )
    starts = _eval_starts(eval_start, scored["sensor_id"].unique())
    rows = _in_eval(scored, starts)
    if "value" in scored.columns:
        rows &= scored["value"].notna().to_numpy()
    truth = _inside_windows(scored, _check_windows(windows))
    point = point_metrics(truth[rows], alarms.to_numpy()[rows])
    out = {f"point_{k}": v for k, v in point.items()}
    out.update(events)
    out["threshold"] = float(threshold)
    out["alarms"] = int(alarms.to_numpy()[rows].sum())
    out["readings"] = int(rows.sum())
    return {k: out[k] for k in METRIC_KEYS}


def evaluate_at_false_alarm_rate(
    scored: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    score_col: str,
    rate: float,
    eval_start: EvalStart,
    merge_gap: float = DEFAULT_MERGE_GAP,
) -> dict[str, Any]:
    """`evaluate_detector` with the threshold set at `rate` on the scores before eval_start (the normal part).

    The training part is taken as normal without looking at labels (as a deployed detector would).
    """
    _require(scored, ["sensor_id", "timestamp", score_col], "scored")
    if eval_start is None:
        raise ValueError("eval_start is needed: the rows before it are the normal data the threshold uses")
    normal = scored[score_col].to_numpy(dtype=float)[before_eval_start(scored, eval_start)]
    threshold = threshold_for_false_alarm_rate(normal, rate)
    out = evaluate_detector(
        scored, windows, score_col=score_col, threshold=threshold, eval_start=eval_start, merge_gap=merge_gap
    )
    return {**out, "false_alarm_rate_target": float(rate)}


def detector_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The metrics of several detectors side by side: one row per detector (index `detector`), one column per metric."""
    frame = pd.DataFrame.from_dict({k: dict(v) for k, v in results.items()}, orient="index")
    first = [k for k in METRIC_KEYS if k in frame.columns]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    return frame.rename_axis("detector")


# --- internals ----------------------------------------------------------------------------------
_NO_TIMES = np.array([], dtype="datetime64[ns]")


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def _scaled_sigmoid(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def _floats(values) -> np.ndarray:
    """Float array with every missing marker (None, pd.NA) as NaN."""
    if isinstance(values, pd.Series | pd.Index | pd.api.extensions.ExtensionArray):
        return pd.Series(values).to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(pd.Series(np.asarray(values, dtype=object).ravel()).astype(float), dtype=float)


def _as_bool(values) -> np.ndarray:
    """Truthiness with NaN/None/NA as False."""
    s = pd.Series(values)
    if s.dtype == bool:
        return s.to_numpy()
    if pd.api.types.is_numeric_dtype(s.dtype) and not isinstance(s.dtype, pd.BooleanDtype):
        arr = s.to_numpy(dtype=float, na_value=np.nan)
        return np.nan_to_num(arr, nan=0.0) != 0
    return np.array([False if pd.isna(v) else bool(v) for v in s], dtype=bool)


def _require(frame: pd.DataFrame, cols: list[str], name: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; it has {list(frame.columns)}")


def _check_windows(windows: pd.DataFrame) -> pd.DataFrame:
    """Typed copy of the windows frame; fails naming rows with a missing or reversed start/end."""
    _require(windows, ["sensor_id", "start", "end"], "windows")
    w = windows.reset_index(drop=True)
    kind = w["anomaly_kind"] if "anomaly_kind" in w.columns else pd.Series([None] * len(w), dtype=object)
    out = pd.DataFrame(
        {
            "sensor_id": w["sensor_id"].astype(object),
            "start": pd.to_datetime(w["start"]).astype("datetime64[ns]"),
            "end": pd.to_datetime(w["end"]).astype("datetime64[ns]"),
            "anomaly_kind": kind.astype(object).where(kind.notna(), "unknown"),
        }
    )
    bad = out["start"].isna() | out["end"].isna() | (out["start"] > out["end"])
    if bad.any():
        raise ValueError(
            f"windows: {int(bad.sum())} row(s) with a missing start/end or start > end: rows {list(out.index[bad][:5])}"
        )
    return out


def _eval_starts(eval_start: EvalStart, sensors) -> pd.Series:
    """eval_start as a datetime Series indexed by sensor_id (NaT = no exclusion)."""
    sensors = list(pd.unique(np.asarray(list(sensors), dtype=object)))
    if eval_start is None:
        values = [pd.NaT] * len(sensors)
    elif isinstance(eval_start, pd.Series | Mapping):
        mapping = dict(eval_start)
        values = [mapping.get(s, pd.NaT) for s in sensors]
    else:
        values = [pd.Timestamp(eval_start)] * len(sensors)
    return pd.Series(
        pd.to_datetime(pd.Series(values, dtype=object)).to_numpy("datetime64[ns]"), index=sensors
    )


def _in_eval(frame: pd.DataFrame, starts: pd.Series) -> np.ndarray:
    """Rows at/after their sensor's evaluation start."""
    start = frame["sensor_id"].map(starts).to_numpy("datetime64[ns]")
    ts = frame["timestamp"].to_numpy("datetime64[ns]")
    return np.isnat(start) | (ts >= start)


def _inside_windows(frame: pd.DataFrame, windows: pd.DataFrame) -> np.ndarray:
    """Rows of `frame` inside any labelled window of their sensor (both ends inclusive)."""
    sid = frame["sensor_id"].to_numpy(dtype=object)
    ts = frame["timestamp"].to_numpy("datetime64[ns]")
    inside = np.zeros(len(frame), dtype=bool)
    for s, start, end in zip(windows["sensor_id"], windows["start"], windows["end"], strict=True):
        inside |= (sid == s) & (ts >= np.datetime64(start, "ns")) & (ts <= np.datetime64(end, "ns"))
    return inside


def _prepare(scored: pd.DataFrame, windows: pd.DataFrame, alarm_col: str, eval_start: EvalStart) -> dict:
    """Validated inputs: windows clipped to the evaluation period, sorted alarm times and step per sensor."""
    _require(scored, ["sensor_id", "timestamp", alarm_col], "scored")
    dup = scored.duplicated(["sensor_id", "timestamp"])
    if dup.any():
        first = scored.loc[dup, ["sensor_id", "timestamp"]].head(3).to_dict("records")
        raise ValueError(
            f"scored: {int(dup.sum())} repeated (sensor_id, timestamp) row(s), e.g. {first}; one row per reading"
        )
    w = _check_windows(windows)
    starts = _eval_starts(eval_start, [*scored["sensor_id"].unique(), *w["sensor_id"].unique()])
    alarm = _as_bool(scored[alarm_col]) & _in_eval(scored, starts)
    hits = scored.loc[alarm, ["sensor_id", "timestamp"]]
    alarms = {
        sid: np.sort(ts.to_numpy("datetime64[ns]"))
        for sid, ts in hits.groupby("sensor_id", sort=True)["timestamp"]
    }
    steps = {sid: infer_freq(ts) for sid, ts in scored.groupby("sensor_id", sort=True)["timestamp"]}
    limit = w["sensor_id"].map(starts).to_numpy("datetime64[ns]")
    eval_from = np.where(np.isnat(limit) | (limit < w["start"].to_numpy()), w["start"].to_numpy(), limit)
    clipped = w.assign(eval_from=pd.to_datetime(eval_from))
    clipped = clipped[clipped["end"] >= clipped["eval_from"]].reset_index(drop=True)
    return {"windows": clipped, "windows_all": w, "alarms": alarms, "steps": steps}


def _summarise(table: pd.DataFrame, n_false: int) -> dict[str, Any]:
    """The event metric dict from a window table and the number of false-alarm events."""
    n = len(table)
    detected = int(table["detected"].sum())
    ttd = table.loc[table["detected"], "time_to_detect_h"].to_numpy(dtype=float)
    precision, recall = _ratio(detected, detected + n_false), _ratio(detected, n)
    return {
        "event_precision": precision,
        "event_recall": recall,
        "event_f1": _f1(precision, recall),
        "windows": n,
        "detected": detected,
        "missed": n - detected,
        "false_alarm_events": int(n_false),
        "mean_time_to_detect_h": float(np.mean(ttd)) if len(ttd) else None,
        "median_time_to_detect_h": float(np.median(ttd)) if len(ttd) else None,
        "early_detection_score": float(table["early_detection_credit"].mean()) if n else 0.0,
    }
