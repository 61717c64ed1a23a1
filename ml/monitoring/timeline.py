"""Drift over time (PSI of every window of batches against one reference, when drift was first detected) and
model quality over time once labels arrive."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from ml.monitoring.drift import SensorLevels, incident_monitor_frame, is_categorical, psi_table, sensor_wide

# --- windows ----------------------------------------------------------------------------------


def windows_between(
    frame: pd.DataFrame, edges: Sequence[Any], time: str | None = None
) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """Slices (edge_i, edge_i+1] of `frame` by a time column (or its DatetimeIndex): (window start, rows).

    With the batches' as_of times as edges, each window holds what one incremental export delivered.
    """
    t = pd.DatetimeIndex(frame.index if time is None else frame[time])
    edges = [pd.Timestamp(e) for e in edges]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        part = frame[np.asarray((t > lo) & (t <= hi))]
        out.append((lo, part))
    return out


def time_windows(
    frame: pd.DataFrame, freq: str = "7D", time: str | None = None, start: Any = None
) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """Consecutive [start, start + freq) windows over a time column (or the DatetimeIndex)."""
    t = pd.DatetimeIndex(frame.index if time is None else frame[time])
    if len(t) == 0:
        return []
    step = pd.Timedelta(freq)
    lo = pd.Timestamp(start) if start is not None else t.min().normalize()
    out = []
    while lo <= t.max():
        out.append((lo, frame[np.asarray((t >= lo) & (t < lo + step))]))
        lo += step
    return out


def reference_period(frame: pd.DataFrame, fraction: float, time: str | None = None) -> pd.Series:
    """Boolean mask of the first `fraction` of the time span (the training period of a time-ordered split)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    t = pd.Series(pd.DatetimeIndex(frame.index if time is None else frame[time]), index=frame.index)
    cutoff = t.min() + (t.max() - t.min()) * fraction
    return t <= cutoff


# --- sensor changes -----------------------------------------------------------------------------


def flagged_mask(
    scores: pd.DataFrame, like: pd.DataFrame, margin: str = "6h", flag: str = "is_anomaly"
) -> pd.DataFrame:
    """Boolean frame shaped like a `sensor_wide` frame: True within `margin` of a reading flagged in `scores`."""
    flags = scores.loc[scores[flag].astype(bool), ["sensor_id", "timestamp"]]
    mask = pd.DataFrame(False, index=like.index, columns=like.columns)
    pad = pd.Timedelta(margin)
    for sid, g in flags.groupby("sensor_id"):
        if sid not in mask.columns:
            continue
        col = np.zeros(len(mask), dtype=bool)
        idx = mask.index
        for t in pd.to_datetime(g["timestamp"]):
            col |= np.asarray((idx >= t - pad) & (idx <= t + pad))
        mask[sid] = col
    return mask


def sensor_changes(
    readings: pd.DataFrame, lag: str = "7D", exclude: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Week-over-week change of every sensor: value(t) - value(t - lag), one column per sensor.

    A linear trend and a weekly (and daily) pattern cancel out, so the change is stationary in normal
    operation and a step (a recalibration, a unit change) shows up for one `lag` after it happens.
    `exclude` (a boolean frame like `sensor_wide`, e.g. `flagged_mask` of the anomaly scores) blanks
    readings before differencing, so short anomalies do not count as drift.
    """
    wide = sensor_wide(readings)
    if exclude is not None:
        wide = wide.mask(exclude.reindex_like(wide).fillna(False).astype(bool))
    return wide - wide.shift(freq=pd.Timedelta(lag)).reindex(wide.index)


# --- drift over time --------------------------------------------------------------------------


def drift_over_time(
    reference: pd.DataFrame,
    frames_by_window: Iterable[tuple[Any, pd.DataFrame]],
    *,
    threshold: float = 0.1,
    bins: int = 10,
    columns: Sequence[str] | None = None,
    dropna: bool = False,
    min_rows: int = 1,
) -> pd.DataFrame:
    """PSI of every feature in every window against one reference: a long table.

    Columns: window_start, feature, psi, drifted, kind, n_rows, share_drifted (the window's share of
    drifted features). Windows with fewer than `min_rows` rows get NaN PSI and are not counted.
    """
    cols = list(reference.columns if columns is None else columns)
    parts = []
    for start, frame in frames_by_window:
        n = int(len(frame))
        if n >= max(min_rows, 1):
            table = psi_table(reference, frame, threshold=threshold, columns=cols, bins=bins, dropna=dropna)
        else:
            kinds = ["categorical" if is_categorical(reference[c]) else "numeric" for c in cols]
            table = pd.DataFrame({"feature": cols, "psi": np.nan, "drifted": False, "kind": kinds})
        share = float(table["drifted"].mean()) if n >= max(min_rows, 1) else np.nan
        parts.append(table.assign(window_start=pd.Timestamp(start), n_rows=n, share_drifted=share))
    if not parts:
        raise ValueError("no windows to score")
    out = pd.concat(parts, ignore_index=True)
    return out[["window_start", "feature", "psi", "drifted", "kind", "n_rows", "share_drifted"]]


def drift_share(table: pd.DataFrame) -> pd.DataFrame:
    """One row per window of a `drift_over_time` table: rows, features drifted, share drifted, max PSI."""
    g = table.groupby("window_start", sort=True)
    return pd.DataFrame(
        {
            "n_rows": g["n_rows"].first(),
            "n_drifted": g["drifted"].sum().astype(int),
            "share_drifted": g["share_drifted"].first(),
            "max_psi": g["psi"].max(),
            "top_feature": g.apply(
                lambda d: d.loc[d["psi"].idxmax(), "feature"] if d["psi"].notna().any() else None,
                include_groups=False,
            ),
        }
    ).reset_index()


def first_detection(
    table: pd.DataFrame,
    threshold: float | None = None,
    injected_at: Any = None,
    window: str | None = None,
    persistence: int = 1,
) -> pd.DataFrame:
    """When each feature was first seen drifting in a `drift_over_time` table, one row per feature.

    `threshold` re-cuts the PSI (default: the table's own `drifted` flag). With `injected_at` (a known
    shift), also: `drifted_before` (a drifted window that ended before the shift: a false alarm or
    another drift), the first drifted window that ends after the shift, `detected_at` (that window's
    end, when its batch has arrived) and `delay_days` from the shift. `window` is the window length
    (default: the spacing of the table's windows). With `persistence` k > 1 a window counts only when the
    feature drifted in it and in the k - 1 windows before (an alert on sustained drift, not on a burst).
    """
    if not isinstance(persistence, int | np.integer) or persistence < 1:
        raise ValueError(f"persistence must be a positive integer, got {persistence!r}")
    flag = (table["drifted"] if threshold is None else table["psi"] > threshold).astype(float)
    data = table.assign(_flag=flag.to_numpy()).sort_values(["feature", "window_start"], kind="stable")
    if persistence > 1:
        run = data.groupby("feature", sort=False)["_flag"].transform(
            lambda f: f.rolling(persistence, min_periods=persistence).min()
        )
        data["_flag"] = run.fillna(0.0)
    data["_flag"] = data["_flag"].astype(bool)
    starts = pd.DatetimeIndex(sorted(data["window_start"].unique()))
    if window is not None:
        span = pd.Timedelta(window)
    else:
        span = pd.Series(starts).diff().median() if len(starts) > 1 else pd.Timedelta(0)
    rows = []
    for feature, g in data.groupby("feature", sort=False):
        g = g.sort_values("window_start")
        hit = g[g["_flag"]]
        scored = g["psi"].notna().any()
        row = {
            "feature": feature,
            "first_drift_window": hit["window_start"].iloc[0] if len(hit) else pd.NaT,
            "psi_at_first": float(hit["psi"].iloc[0]) if len(hit) else np.nan,
            "max_psi": float(g["psi"].max()),
            "max_psi_window": g.loc[g["psi"].idxmax(), "window_start"] if scored else pd.NaT,
            "windows_drifted": int(g["_flag"].sum()),
            "windows": int(g["psi"].notna().sum()),
        }
        if injected_at is not None:
            at = pd.Timestamp(injected_at)
            ends = g["window_start"] + span
            after = g[g["_flag"] & (ends > at)]
            row["drifted_before"] = bool((g["_flag"] & (ends <= at)).any())
            row["first_drift_after"] = after["window_start"].iloc[0] if len(after) else pd.NaT
            row["psi_after"] = float(after["psi"].iloc[0]) if len(after) else np.nan
            row["detected_at"] = after["window_start"].iloc[0] + span if len(after) else pd.NaT
            row["delay_days"] = (row["detected_at"] - at) / pd.Timedelta("1D") if len(after) else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    key = "first_drift_after" if injected_at is not None else "first_drift_window"
    out = out.sort_values([key, "feature"], na_position="last", kind="stable")
    return out.reset_index(drop=True)


def calibration_windows(table: pd.DataFrame, n: int, after: Any = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first, last) start of the first `n` scored windows of a `drift_over_time` table that start after
    `after` (the end of the reference: a window inside it is scored against itself): the calibration period
    a threshold is chosen on. The windows after it are the evaluation period."""
    starts = pd.DatetimeIndex(sorted(table.loc[table["psi"].notna(), "window_start"].unique()))
    if after is not None:
        starts = starts[starts > pd.Timestamp(after)]
    if n < 1:
        raise ValueError(f"calibration needs at least 1 window, got {n}")
    n = min(n, len(starts) - 1)  # at least one window is left to judge
    if n < 1:  # too short a run (a smoke run): no calibration window; the threshold is the floor
        edge = pd.Timestamp(after) if after is not None else (starts[0] if len(starts) else pd.Timestamp(0))
        return edge, edge
    return starts[0], starts[n - 1]


def calibrated_threshold(
    table: pd.DataFrame, n_windows: int, *, margin: float, floor: float, after: Any = None
) -> float:
    """A PSI threshold chosen on the calibration windows only (`calibration_windows`): `margin` times the
    largest PSI of any feature in them (the noise floor of windows this size), never below `floor`."""
    first, last = calibration_windows(table, n_windows, after)
    calib = table.loc[table["window_start"].between(first, last), "psi"].dropna()
    return float(max(floor, margin * calib.max())) if len(calib) else float(floor)


def recut(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The table with `drifted` and `share_drifted` re-cut at another threshold."""
    out = table.assign(drifted=(table["psi"] > threshold).to_numpy())
    share = out.groupby("window_start")["drifted"].transform("mean")
    return out.assign(share_drifted=share.where(out["psi"].notna()))


def alert_summary(
    table: pd.DataFrame,
    shift_at: Any,
    *,
    after: Any,
    persistence: int = 1,
    window: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """How the monitor did on the evaluation windows (starting after `after`), per feature and overall.

    An alert is a drifted window (with `persistence` k: drifted in it and the k - 1 windows before). The
    first alert is found without knowing `shift_at`; then: `alert_before_shift` (a false alarm, or a change
    nobody injected), the false-alarm rate (alerting windows / windows that end before the shift),
    `detected_at` (the end of the first alerting window that ends after the shift) and its delay in days.
    Overall: the false-alarm rate over every feature and the features alerting after the shift.
    """
    data = table[table["window_start"] > pd.Timestamp(after)]
    if not data["psi"].notna().any():  # a run too short to keep windows back (smoke): judge them all
        data = table
    first = first_detection(data, injected_at=shift_at, window=window, persistence=persistence)
    span = pd.Timedelta(window) if window is not None else pd.Series(
        sorted(table["window_start"].unique())).diff().median()  # fmt: skip
    flag = data.sort_values(["feature", "window_start"], kind="stable")
    alert = flag["drifted"].astype(float)
    if persistence > 1:
        alert = alert.groupby(flag["feature"]).transform(
            lambda f: f.rolling(persistence, min_periods=persistence).min()
        )
    flag = flag.assign(
        _alert=alert.fillna(0.0).astype(bool), _before=flag["window_start"] + span <= pd.Timestamp(shift_at)
    )
    before = flag[flag["_before"] & flag["psi"].notna()]
    per = before.groupby("feature")["_alert"].agg(["sum", "size"])
    first = first.assign(
        first_alert=first["first_drift_window"] + span,
        alert_before_shift=first["drifted_before"],
        false_alarm_rate=first["feature"].map(per["sum"] / per["size"]).fillna(0.0).to_numpy(),
    )
    overall = {
        "evaluation_windows_before_shift": int(before["window_start"].nunique()),
        "false_alarm_rate": float(before["_alert"].mean()) if len(before) else 0.0,
        "features_with_false_alarms": sorted(first.loc[first["alert_before_shift"], "feature"]),
        "detected_after_shift": sorted(first.loc[first["detected_at"].notna(), "feature"]),
    }
    return first, overall


def sensor_change_drift(
    readings: pd.DataFrame,
    as_ofs: Sequence[Any],
    *,
    scores: pd.DataFrame | None = None,
    lag: str = "7D",
    reference_weeks: int = 2,
    exclude_margin: str = "6h",
    threshold: float = 0.5,
    bins: int = 10,
    min_rows: int = 168,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drift of week-over-week sensor changes per batch window: (drift_over_time table, reference, all changes).

    Readings within `exclude_margin` of an anomaly alarm in `scores` are left out; the reference is the
    first `reference_weeks` whole weeks of changes (the first `lag` has none); windows run between
    consecutive batch `as_ofs` and start once changes exist.
    """
    wide = sensor_wide(readings)
    exclude = flagged_mask(scores, wide, exclude_margin) if scores is not None else None
    changes = sensor_changes(readings, lag, exclude=exclude)
    start = wide.index[0] + pd.Timedelta(lag)
    ref_end = start + pd.Timedelta(weeks=reference_weeks)
    reference = changes[(changes.index >= start) & (changes.index < ref_end)]
    step = wide.index[1] - wide.index[0]
    edges = [wide.index[0] - step, *as_ofs]
    windows = [(s + step, w) for s, w in windows_between(changes, edges) if s + step >= start]
    table = drift_over_time(
        reference, windows, threshold=threshold, bins=bins, dropna=True, min_rows=min_rows
    )
    return table, reference, changes


def sensor_level_drift(
    readings: pd.DataFrame,
    as_ofs: Sequence[Any],
    *,
    reference_fraction: float = 0.3,
    threshold: float = 0.1,
    bins: int = 10,
    min_rows: int = 168,
) -> pd.DataFrame:
    """Drift of each sensor's level against its training period (first `reference_fraction` of the span)."""
    train = readings[reference_period(readings, reference_fraction, "timestamp").to_numpy()]
    levels = SensorLevels().fit(train)
    wide = levels.transform(readings)
    reference = levels.transform(train)
    step = wide.index[1] - wide.index[0]
    windows = [(s + step, w) for s, w in windows_between(wide, [wide.index[0] - step, *as_ofs])]
    return drift_over_time(reference, windows, threshold=threshold, bins=bins, dropna=True, min_rows=min_rows)


def incident_drift(
    incidents: pd.DataFrame,
    as_ofs: Sequence[Any],
    *,
    reference_until: Any,
    threshold: float = 0.1,
    bins: int = 10,
    min_rows: int = 100,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ticket-mix drift per batch window (tickets opened since the previous as_of) against the tickets
    opened before `reference_until`: (drift_over_time table, reference frame)."""
    frame = incident_monitor_frame(incidents)
    opened = pd.Series(pd.to_datetime(incidents["opened_at"]).to_numpy(), index=frame.index)
    reference = frame[(opened < pd.Timestamp(reference_until)).to_numpy()]
    edges = [opened.min().normalize() - pd.Timedelta("1s"), *as_ofs]
    parts = windows_between(frame.assign(_t=opened), edges, "_t")
    windows = [(pd.Timestamp(s).ceil("D"), w[list(frame.columns)]) for s, w in parts]
    table = drift_over_time(reference, windows, threshold=threshold, bins=bins, min_rows=min_rows)
    return table, reference


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A frame as a GitHub markdown table (dates without a time of day when they are all midnight)."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            t = out[col]
            midnight = bool((t.dropna() == t.dropna().dt.normalize()).all())
            out[col] = t.dt.strftime("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M").fillna("-")
    return out.to_markdown(index=False, floatfmt=floatfmt)


# --- prediction monitoring --------------------------------------------------------------------


def performance(
    frame: pd.DataFrame,
    *,
    score: str,
    label: str,
    kind: str = "classification",
    lower: str | None = None,
    upper: str | None = None,
) -> dict[str, float]:
    """Quality of scores against labels that have arrived: classification -> ROC AUC, Brier score, mean
    score, positive rate; regression -> MAE, mean label (and the share of labels in [lower, upper])."""
    if kind not in ("classification", "regression"):
        raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")
    part = frame.dropna(subset=[score, label])
    s = part[score].astype(float).to_numpy()
    y = part[label].astype(float).to_numpy()
    out: dict[str, float] = {"n": int(len(part)), "mean_score": float(s.mean()) if len(s) else np.nan}
    if kind == "classification":
        out["positive_rate"] = float(y.mean()) if len(y) else np.nan
        out["brier"] = float(brier_score_loss(y, s)) if len(y) else np.nan
        out["roc_auc"] = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else np.nan
    else:
        out["mean_label"] = float(y.mean()) if len(y) else np.nan
        out["mae"] = float(np.abs(s - y).mean()) if len(y) else np.nan
        if lower and upper:
            lo, hi = part[lower].astype(float).to_numpy(), part[upper].astype(float).to_numpy()
            out["coverage"] = float(((y >= lo) & (y <= hi)).mean()) if len(y) else np.nan
    return out


def rolling_performance(
    frame: pd.DataFrame,
    *,
    time: str,
    score: str,
    label: str,
    kind: str = "classification",
    window: str = "28D",
    step: str = "7D",
    lower: str | None = None,
    upper: str | None = None,
    min_rows: int = 30,
) -> pd.DataFrame:
    """Model quality over time from (time, score, label) rows whose label has arrived.

    Every `step`, `performance` of the rows in the trailing `window` (classification: ROC AUC, Brier,
    mean score, positive rate; regression: MAE and, with `lower`/`upper` interval columns, coverage).
    Windows with fewer than `min_rows` labelled rows are left out.
    """
    if kind not in ("classification", "regression"):
        raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")
    needed = [time, score, label, *([lower] if lower else []), *([upper] if upper else [])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}")
    data = frame[needed].dropna(subset=[score, label]).copy()
    data[time] = pd.to_datetime(data[time])
    data = data.sort_values(time)
    if data.empty:
        return pd.DataFrame(columns=["window_end", "n"])
    span, stride = pd.Timedelta(window), pd.Timedelta(step)
    end = data[time].min().normalize() + span
    rows = []
    while end <= data[time].max() + stride:
        part = data[(data[time] >= end - span) & (data[time] < end)]
        if len(part) >= min_rows:
            stats = performance(part, score=score, label=label, kind=kind, lower=lower, upper=upper)
            rows.append({"window_end": end, **stats})
        end += stride
    return pd.DataFrame(rows)
