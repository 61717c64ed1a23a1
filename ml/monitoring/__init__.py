"""Drift and data-quality monitoring: PSI, reference datasets saved with each model, Evidently reports.

The cheap part (PSI, reference samples, saving/loading a reference) imports only numpy and pandas, so the
HTTP service can score a batch without loading Evidently; the Evidently wrappers import it lazily.
PSI (population stability index) compares the share of rows per bin: sum((c - r) * ln(c / r)) over the
bins, with bins cut at the reference's quantiles (numeric) or the categories seen (categorical), missing
values as a bin of their own and empty bins smoothed with a small epsilon. Rule of thumb: < 0.1 stable,
0.1-0.25 moderate shift, > 0.25 large shift.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.monitoring.reference import (  # noqa: F401 - re-exported: the reference is part of monitoring's API
    REFERENCE_FILE,
    REFERENCE_META,
    load_reference,
    reference_info,
    reference_sample,
    save_reference,
)

PSI_EPS = 1e-4  # floor on a bin's share, so an empty bin gives a large but finite PSI
NAN_BIN = "<missing>"

# --- PSI --------------------------------------------------------------------------------------


def is_categorical(values: pd.Series) -> bool:
    """True for object/str/category/bool columns (PSI over category shares), False for numbers and dates."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return True
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return False
    return True


def _as_series(values: Any, name: str) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return pd.Series(arr)


def _numeric(values: pd.Series, name: str) -> np.ndarray:
    """Values as float (datetimes as ns since epoch); a non-number raises a ValueError naming `name`."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        out = values.astype("datetime64[ns]").astype("int64").astype(float)
        return np.where(values.isna().to_numpy(), np.nan, out)
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(float).to_numpy()
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna() & values.notna()
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} value(s) are not numbers, e.g. {values[bad].iloc[0]!r}")
    return num.astype(float).to_numpy()


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    shares = counts / total if total else np.zeros_like(counts, dtype=float)
    shares = np.maximum(shares, PSI_EPS)
    return shares / shares.sum()


def psi_bins(reference: Any, current: Any, bins: int = 10, dropna: bool = False) -> pd.DataFrame:
    """The bins PSI sums over: label, reference share, current share and each bin's PSI term."""
    ref = _as_series(reference, "reference")
    cur = _as_series(current, "current")
    if dropna:
        ref, cur = ref.dropna(), cur.dropna()
    if len(ref) == 0:
        raise ValueError("reference is empty")
    if len(cur) == 0:
        raise ValueError("current is empty")
    if not isinstance(bins, int | np.integer) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if is_categorical(ref):
        r = ref.astype(object).where(ref.notna(), NAN_BIN).astype(str)
        c = cur.astype(object).where(cur.notna(), NAN_BIN).astype(str)
        labels = sorted(set(r) | set(c))
        r_counts = r.value_counts().reindex(labels, fill_value=0).to_numpy(dtype=float)
        c_counts = c.value_counts().reindex(labels, fill_value=0).to_numpy(dtype=float)
    else:
        r = _numeric(ref, "reference")
        c = _numeric(cur, "current")
        r_ok, c_ok = r[~np.isnan(r)], c[~np.isnan(c)]
        if len(r_ok):
            # edges are reference values (no interpolation between them), so PSI depends only on the
            # order of the values: any strictly increasing transform of both samples leaves it unchanged
            edges = np.unique(np.quantile(r_ok, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf"))
        else:
            edges = np.array([], dtype=float)
        # right-closed bins (-inf, e1], (e1, e2], ..., (ek, inf): a tied value sits with the bin below
        k = len(edges) + 1
        r_counts = np.bincount(np.searchsorted(edges, r_ok, side="left"), minlength=k).astype(float)
        c_counts = np.bincount(np.searchsorted(edges, c_ok, side="left"), minlength=k).astype(float)
        bounds = [-np.inf, *edges.tolist(), np.inf]
        labels = [f"({bounds[i]:.6g}, {bounds[i + 1]:.6g}]" for i in range(k)]
        r_nan, c_nan = float(np.isnan(r).sum()), float(np.isnan(c).sum())
        if r_nan or c_nan:
            labels.append(NAN_BIN)
            r_counts = np.append(r_counts, r_nan)
            c_counts = np.append(c_counts, c_nan)
    rs, cs = _shares(r_counts), _shares(c_counts)
    return pd.DataFrame({"bin": labels, "reference": rs, "current": cs, "psi": (cs - rs) * np.log(cs / rs)})


def psi(
    reference: np.ndarray | pd.Series, current: np.ndarray | pd.Series, bins: int = 10, dropna: bool = False
) -> float:
    """Population stability index of `current` against `reference` (0 = same distribution).

    Numeric values: `bins` quantile bins cut on the reference (fewer when it has ties). Object, string,
    category and bool values: one bin per category seen in either sample. Missing values form their own
    bin (or, with `dropna=True`, are left out); bin shares are floored at PSI_EPS. Raises ValueError on
    an empty input.
    """
    return float(psi_bins(reference, current, bins, dropna)["psi"].sum())


def psi_noise_floor(n_reference: int, n_current: int, bins: int = 10) -> float:
    """PSI expected with no drift at all, from sampling alone: about (bins - 1) * (1/n_ref + 1/n_cur).

    A batch of 50 records scored with 10 bins expects ~0.18 > 0.1: small batches need fewer bins, a
    higher threshold or more records (autocorrelated readings count as fewer). `bins` = categories seen
    for a categorical feature. Below ~10 rows per bin it is a lower bound (empty bins add more).
    """
    if n_reference < 1 or n_current < 1 or bins < 2:
        raise ValueError("need n_reference, n_current >= 1 and bins >= 2")
    return float((bins - 1) * (1.0 / n_reference + 1.0 / n_current))


def psi_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    threshold: float = 0.1,
    columns: Sequence[str] | None = None,
    bins: int = 10,
    dropna: bool = False,
) -> pd.DataFrame:
    """PSI of every (or the given) reference column in `current`: feature, psi, drifted (psi > threshold), kind.

    Sorted by PSI, largest first. Raises a ValueError naming the column(s) when `current` lacks a column
    or either frame is empty.
    """
    cols = list(reference.columns if columns is None else columns)
    if not cols:
        raise ValueError("no columns to compare")
    missing_ref = [c for c in cols if c not in reference.columns]
    if missing_ref:
        raise ValueError(f"reference has no column(s) {missing_ref}")
    missing = [c for c in cols if c not in current.columns]
    if missing:
        raise ValueError(f"current batch lacks column(s) {missing} that the reference has")
    if len(reference) == 0:
        raise ValueError("reference is empty (0 rows)")
    if len(current) == 0:
        raise ValueError(f"current batch is empty (0 rows); expected columns {cols}")
    rows = []
    for col in cols:
        try:
            value = psi(reference[col], current[col], bins=bins, dropna=dropna)
        except ValueError as exc:
            raise ValueError(f"column {col!r}: {exc}") from exc
        kind = "categorical" if is_categorical(reference[col]) else "numeric"
        rows.append((str(col), value, bool(value > threshold), kind))
    table = pd.DataFrame(rows, columns=["feature", "psi", "drifted", "kind"])
    return table.sort_values(["psi", "feature"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


# --- reference datasets -----------------------------------------------------------------------


# --- reading received files -------------------------------------------------------------------
TABLES = {"sensors": "sensor_readings", "incidents": "incidents"}


def read_records(path: str | os.PathLike, table: str | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """A records file (parquet, CSV or JSON records) as a typed frame, plus unparseable values per column.

    Parquet is read as stored. CSV/JSON are typed like ingestion does (`ml.data.ingest` column types) when
    `table` is a silver table name; a value that does not parse becomes missing and is counted.
    Raises FileNotFoundError / ValueError naming the file when it cannot be read.
    """
    from ml.data import ingest

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(p), {}
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise ValueError(f"{p}: not a readable parquet file ({exc.__class__.__name__}: {exc})") from exc
    if suffix not in (".csv", ".json"):
        raise ValueError(f"{p}: unsupported file type {suffix!r}; expected .parquet, .csv or .json")
    raw = ingest.read_received(p.read_bytes(), str(p))
    if table is None:
        return raw, {}
    return type_records(raw, table, str(p))


def type_records(
    raw: pd.DataFrame, table: str, file: str = "<records>"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Received string records typed like ingestion types them -> (typed frame, unparseable count per column).

    A missing required column raises `ml.data.ingest.DataValidationError` (a ValueError) naming it; columns
    the table does not declare are kept as received.
    """
    from ml.data import ingest

    errors = ingest.RowErrors()
    typed = ingest._coerce(raw, table, file, errors)  # the one definition of the landing column types
    bad: dict[str, int] = {}
    for column, _reason in errors.problems.values():
        bad[column] = bad.get(column, 0) + 1
    extra = [c for c in raw.columns if c not in typed.columns]
    return (pd.concat([typed, raw[extra]], axis=1) if extra else typed), bad


def landing_batches(landing: str | os.PathLike, domain: str) -> list[tuple[pd.Timestamp, Path]]:
    """The generator's dated export files of a domain, oldest first: (as_of, path), from the manifest."""
    root = Path(landing)
    manifest = root / "manifest.json"
    prefix = {"sensors": "sensors/readings_", "incidents": "incidents/incidents_"}[domain]
    if manifest.exists():
        files = json.loads(manifest.read_text())["files"]
        out = [(pd.Timestamp(f["as_of"]), root / f["path"]) for f in files if f["path"].startswith(prefix)]
    else:  # no manifest: the as_of is in the file name (YYYYmmddTHHMM)
        out = [
            (pd.Timestamp(pd.to_datetime(p.stem.split("_")[-1], format="%Y%m%dT%H%M")), p)
            for p in sorted((root / prefix).parent.glob(Path(prefix).name + "*"))
        ]
    if not out:
        raise FileNotFoundError(f"{root}: no {domain} batches ({prefix}*)")
    return sorted(out, key=lambda t: t[0])


def read_landing(landing: str | os.PathLike, domain: str) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    """Every landing batch of a domain, typed and de-duplicated (a re-sent reading or a later version of a
    ticket replaces the earlier one), and the batches' as_of times."""
    from ml.data import ingest

    table = TABLES[domain]
    batches = landing_batches(landing, domain)
    frames = [read_records(path, table)[0].assign(_batch=i) for i, (_, path) in enumerate(batches)]
    frame = pd.concat(frames, ignore_index=True).sort_values("_batch", kind="stable")
    frame = frame.drop_duplicates(subset=ingest.KEYS[table], keep="last").drop(columns="_batch")
    order = ingest.KEYS[table] if domain == "sensors" else ["opened_at", "number"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True), [a for a, _ in batches]


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


# --- sensor monitoring features ---------------------------------------------------------------


def _season_bin(ts: pd.DatetimeIndex) -> np.ndarray:
    """Hour of day, weekday (0-23) and weekend (24-47) apart: the project's seasonal profile bins."""
    return ((ts.dayofweek >= 5) * 24 + ts.hour).to_numpy()


def sensor_wide(readings: pd.DataFrame, freq: str | None = None) -> pd.DataFrame:
    """Readings as one column per sensor on a regular time grid (a missing reading is NaN)."""
    missing = [c for c in ("sensor_id", "timestamp", "value") if c not in readings.columns]
    if missing:
        raise ValueError(f"readings need columns sensor_id, timestamp, value; missing {missing}")
    if readings.empty:
        raise ValueError("readings are empty")
    frame = readings[["sensor_id", "timestamp", "value"]].copy()
    frame["sensor_id"] = frame["sensor_id"].astype(str)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame = frame.drop_duplicates(["sensor_id", "timestamp"], keep="last")
    wide = frame.pivot(index="timestamp", columns="sensor_id", values="value").sort_index()
    wide.columns.name = None
    step = (
        pd.Timedelta(freq) if freq else pd.Series(wide.index).diff().mode().iloc[0] if len(wide) > 1 else None
    )
    if step is not None and len(wide) > 1:
        wide = wide.reindex(pd.date_range(wide.index[0], wide.index[-1], freq=step))
    wide.index.name = "timestamp"
    return wide.astype(float)


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


class SensorLevels:
    """Each sensor's value minus its reference profile (median per hour of day, weekdays and weekends apart).

    `fit` on the reference readings (the model's training period); `transform` gives one column per
    sensor. The level keeps trends and steps, so it answers "how far is the sensor from what the model
    was trained on" (the service's /check_drift for sensors); a sensor unseen in the reference raises.
    """

    def fit(self, readings: pd.DataFrame) -> SensorLevels:
        wide = sensor_wide(readings)
        bins = _season_bin(wide.index)
        profiles = {}
        for sid in wide.columns:
            by_bin = wide[sid].groupby(bins).median().reindex(range(48))
            by_hour = wide[sid].groupby(bins % 24).median().reindex(range(24))
            profiles[sid] = by_bin.fillna(pd.Series(np.tile(by_hour.to_numpy(), 2))).to_numpy()
        self.profiles_ = profiles
        return self

    def transform(self, readings: pd.DataFrame) -> pd.DataFrame:
        wide = sensor_wide(readings)
        unknown = sorted(set(wide.columns) - set(self.profiles_))
        if unknown:
            raise ValueError(
                f"sensor_id {unknown[0]!r} is not in the reference (known: {len(self.profiles_)})"
            )
        bins = _season_bin(wide.index)
        return pd.DataFrame(
            {sid: wide[sid].to_numpy() - self.profiles_[sid][bins] for sid in wide.columns}, index=wide.index
        )


def reference_period(frame: pd.DataFrame, fraction: float, time: str | None = None) -> pd.Series:
    """Boolean mask of the first `fraction` of the time span (the training period of a time-ordered split)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    t = pd.Series(pd.DatetimeIndex(frame.index if time is None else frame[time]), index=frame.index)
    cutoff = t.min() + (t.max() - t.min()) * fraction
    return t <= cutoff


# --- incident monitoring features -------------------------------------------------------------
INCIDENT_CATEGORICAL = [
    "category",
    "subcategory",
    "cmdb_ci",
    "assignment_group",
    "contact_type",
    "priority",
    "location",
]
INCIDENT_NUMERIC = ["text_chars", "open_hour"]


def incident_monitor_frame(incidents: pd.DataFrame) -> pd.DataFrame:
    """The ticket mix a model sees, from raw incident records (open-time fields only).

    Categories as strings (priority too: its levels are categories, not a scale), the text length
    (characters of short description + description) and the hour of arrival. Columns a source lacks
    (no text in the UCI log) are left out; the index is kept.
    """
    from ml.features import incident_text

    if "opened_at" not in incidents.columns:
        raise ValueError("incidents need an opened_at column")
    out = pd.DataFrame(index=incidents.index)
    for col in INCIDENT_CATEGORICAL:
        if col in incidents.columns:
            s = incidents[col]
            out[col] = s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v))
    if {"short_description", "description"} <= set(incidents.columns):
        out["text_chars"] = incident_text(incidents).str.len().astype(float)
    out["open_hour"] = pd.to_datetime(incidents["opened_at"]).dt.hour.astype(float)
    return out


def monitor_frame(domain: str, records: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Raw records -> the monitored feature frame of a domain (the one place both sides of a PSI come from).

    incidents: `incident_monitor_frame`. sensors: `SensorLevels` fitted on `reference` readings (or on
    `records` themselves when no reference is given), one column per sensor.
    """
    if domain == "incidents":
        return incident_monitor_frame(records)
    if domain == "sensors":
        levels = SensorLevels().fit(reference if reference is not None else records)
        return levels.transform(records)
    raise ValueError(f"domain must be 'incidents' or 'sensors', got {domain!r}")


def check_drift(
    domain: str,
    reference_records: pd.DataFrame,
    current_records: pd.DataFrame,
    threshold: float = 0.1,
    bins: int = 10,
) -> pd.DataFrame:
    """PSI per monitored feature of a batch of raw records against the reference saved with a model.

    Sensors: one feature per sensor present in the batch (level against the reference profile, missing
    readings left out). Incidents: the ticket-mix columns. Returns `psi_table` columns.
    """
    if current_records is None or len(current_records) == 0:
        raise ValueError("current batch is empty (0 records)")
    if domain == "sensors":
        levels = SensorLevels().fit(reference_records)
        ref = levels.transform(reference_records)
        cur = levels.transform(current_records)
        return psi_table(ref, cur, threshold=threshold, columns=list(cur.columns), bins=bins, dropna=True)
    ref = monitor_frame(domain, reference_records)
    cur = monitor_frame(domain, current_records)
    return psi_table(ref, cur, threshold=threshold, bins=bins)


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


# --- charts -----------------------------------------------------------------------------------


def plot_drift_over_time(
    table: pd.DataFrame,
    *,
    title: str,
    threshold: float,
    injected_at: Any = None,
    injected_label: str = "injected shift",
    features: Sequence[str] | None = None,
):
    """Two panels: share of drifted features per window (bars), per-feature PSI over time (lines, log)."""
    import matplotlib.pyplot as plt

    shares = drift_share(table)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, height_ratios=[1, 2])
    step = shares["window_start"].diff().median()
    step = step if pd.notna(step) else pd.Timedelta("7D")
    top.bar(shares["window_start"], shares["share_drifted"].fillna(0), width=step * 0.8, align="edge")
    top.set_ylabel("share of features\nwith PSI > threshold")
    top.set_ylim(0, 1)
    top.set_title(title)
    wide = table.pivot(index="window_start", columns="feature", values="psi")
    shown = (
        list(features) if features is not None else list(wide.max().sort_values(ascending=False).index[:6])
    )
    mid = wide.index + step / 2
    for feature in shown:
        bottom.plot(mid, wide[feature].clip(lower=1e-3), marker="o", ms=3, label=feature)
    others = [f for f in wide.columns if f not in shown]
    if others:
        bottom.plot(
            mid, wide[others].max(axis=1).clip(lower=1e-3), color="grey", ls=":", label="max of the others"
        )
    bottom.axhline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:g}")
    bottom.set_yscale("log")
    bottom.set_ylabel("PSI against the reference (log)")
    bottom.set_xlabel("window (one per landing batch)")
    bottom.legend(loc="upper left", fontsize=8, ncol=3)
    if injected_at is not None:
        at = pd.Timestamp(injected_at)
        for ax in (top, bottom):
            ax.axvline(at, color="black", ls="-.", lw=1.2)
        top.annotate(injected_label, (at, 0.9), xytext=(4, 0), textcoords="offset points", fontsize=9)
    fig.autofmt_xdate()
    return fig


def plot_psi_heatmap(table: pd.DataFrame, *, title: str, threshold: float, highlight: Sequence[str] = ()):
    """Features x windows heatmap of PSI (log colours, x where above the threshold); highlighted rows first."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    wide = table.pivot(index="feature", columns="window_start", values="psi")
    wide = wide.loc[sorted(wide.index, key=lambda f: (f not in highlight, f))]
    data = wide.clip(lower=1e-2).to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(11, 0.28 * len(wide) + 1.5))
    top = max(10.0, float(np.nanmax(data))) if np.isfinite(data).any() else 10.0
    im = ax.imshow(data, aspect="auto", cmap="viridis", norm=LogNorm(vmin=1e-2, vmax=top))
    for i, j in zip(*np.nonzero(np.nan_to_num(data) > threshold), strict=True):
        ax.text(j, i, "x", ha="center", va="center", color="white", fontsize=7)
    ax.set_yticks(range(len(wide)), [f"* {f}" if f in highlight else f for f in wide.index], fontsize=8)
    labels = [pd.Timestamp(c).strftime("%m-%d") for c in wide.columns]
    ax.set_xticks(range(wide.shape[1]), labels, fontsize=8, rotation=90)
    ax.set_xlabel("window start")
    ax.set_title(title)
    ax.grid(False)
    fig.colorbar(im, ax=ax, label=f"PSI (x: above {threshold:g})")
    return fig


def plot_rolling_performance(
    perf: pd.DataFrame,
    metrics: Sequence[str],
    *,
    title: str,
    event_at: Any = None,
    event_label: str = "",
    reference_until: Any = None,
):
    """One panel per metric of a `rolling_performance` frame, the training period shaded."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 1, figsize=(11, 2.6 * len(metrics)), sharex=True, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        ax.plot(perf["window_end"], perf[metric], marker="o", ms=3)
        ax.set_ylabel(metric)
        if reference_until is not None:
            ax.axvspan(perf["window_end"].min(), pd.Timestamp(reference_until), color="grey", alpha=0.15)
        if event_at is not None:
            ax.axvline(pd.Timestamp(event_at), color="black", ls="-.", lw=1.2)
    axes[0, 0].set_title(title)
    if event_at is not None and event_label:
        axes[0, 0].annotate(event_label, (pd.Timestamp(event_at), 0.95), xycoords=("data", "axes fraction"),
                            xytext=(4, -10), textcoords="offset points", fontsize=9)  # fmt: skip
    axes[-1, 0].set_xlabel("end of the trailing window (by opened_at)")
    fig.autofmt_xdate()
    return fig


# --- Evidently ---------------------------------------------------------------------------------


def _evidently_dataset(frame: pd.DataFrame, numerical: Sequence[str], categorical: Sequence[str]):
    from evidently import DataDefinition, Dataset

    cols = [*numerical, *categorical]
    data = frame[cols].copy()
    for c in categorical:
        data[c] = data[c].astype(object).where(data[c].notna(), None)
    for c in numerical:
        data[c] = pd.to_numeric(data[c], errors="coerce").astype(float)
    definition = DataDefinition(numerical_columns=list(numerical), categorical_columns=list(categorical))
    return Dataset.from_pandas(data, data_definition=definition)


def split_columns(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(numerical, categorical) columns by dtype, as PSI and Evidently should treat them."""
    cols = list(frame.columns if columns is None else columns)
    cat = [c for c in cols if is_categorical(frame[c])]
    return [c for c in cols if c not in cat], cat


def _rounded(obj: Any, digits: int = 10) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if np.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj


def save_snapshot_json(snapshot, path: str | os.PathLike) -> Path:
    """Evidently's JSON (metrics and tests) with sorted keys and floats to 10 significant digits, so a
    rerun on the same data writes the same bytes (category order, hence float sums, follows str hashing)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = _rounded(json.loads(snapshot.json()))
    out.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")
    return out


def summarize_snapshot(snapshot) -> dict[str, Any]:
    """The small summary of an Evidently snapshot: share drifted, per-column drift, tests passed/failed."""
    data = snapshot.dict()
    columns: dict[str, dict[str, Any]] = {}
    share = n_drifted = None
    by_metric: dict[str, dict[str, Any]] = {}
    for m in data["metrics"]:
        cfg = m.get("config", {})
        kind = str(cfg.get("type", "")).rsplit(":", 1)[-1]
        by_metric[m.get("id")] = m
        if kind == "DriftedColumnsCount" and share is None:
            share, n_drifted = float(m["value"]["share"]), int(m["value"]["count"])
        elif kind == "ValueDrift":
            columns[cfg["column"]] = {
                "method": cfg.get("method"),
                "score": float(m["value"]),
                "threshold": cfg.get("threshold"),
            }
    counts = {"SUCCESS": 0, "FAIL": 0, "WARNING": 0, "ERROR": 0}
    failed = []
    for t in data["tests"]:
        status = t.get("status", "")
        status = str(getattr(status, "value", status)).upper()  # a TestStatus enum in dict(), a str in JSON
        counts[status] = counts.get(status, 0) + 1
        params = t.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and params.get("column") in columns:
            columns[params["column"]]["drifted"] = status != "SUCCESS"
        if status in ("FAIL", "ERROR"):
            failed.append({"name": t.get("name"), "description": t.get("description"), "status": status})
    drift_failed = sum(1 for f in failed if str(f["name"]).startswith(("Value Drift", "Share of Drifted")))
    return {
        "share_drifted": share,
        "n_drifted": n_drifted,
        "columns": columns,
        "tests": {
            "total": len(data["tests"]),
            "passed": counts.get("SUCCESS", 0),
            "failed": counts.get("FAIL", 0) + counts.get("ERROR", 0),
            "warning": counts.get("WARNING", 0),
            "failed_drift": drift_failed,
            "failed_summary": len(failed) - drift_failed,
        },
        "failed_tests": failed,
    }


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    out_html: str | os.PathLike | None = None,
    out_json: str | os.PathLike | None = None,
    drift_share: float = 0.5,
    method: str | None = None,
    threshold: float | None = None,
    summary_preset: bool = True,
    include_tests: bool = True,
) -> dict[str, Any]:
    """Evidently 0.7 `Report` (DataDriftPreset + DataSummaryPreset, tests on) of current vs reference.

    Saves the HTML and Evidently's JSON when paths are given; returns `summarize_snapshot` plus row
    counts, paths and the seconds it took. `method`/`threshold` override Evidently's per-column choice
    (e.g. method="psi", threshold=0.1); `drift_share` is the share of drifted columns that fails the
    dataset-level test.
    """
    import time

    from evidently import Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    if numerical is None and categorical is None:
        numerical, categorical = split_columns(reference)
    numerical, categorical = list(numerical or []), list(categorical or [])
    cols = [*numerical, *categorical]
    missing = [c for c in cols if c not in current.columns]
    if missing:
        raise ValueError(f"current lacks column(s) {missing} that the report compares")
    if len(current) == 0 or len(reference) == 0:
        raise ValueError("reference and current need at least one row each")
    started = time.perf_counter()
    presets: list[Any] = [DataDriftPreset(drift_share=drift_share, method=method, threshold=threshold)]
    if summary_preset:
        presets.append(DataSummaryPreset())
    report = Report(presets, include_tests=include_tests)
    with warnings.catch_warnings():  # scipy's chi-square divides by a category's zero expected count
        warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
        snapshot = report.run(
            _evidently_dataset(current, numerical, categorical),
            _evidently_dataset(reference, numerical, categorical),
        )
    out = summarize_snapshot(snapshot)
    if out_html:
        Path(out_html).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(out_html))
    if out_json:
        save_snapshot_json(snapshot, out_json)
    out.update(
        rows_reference=int(len(reference)),
        rows_current=int(len(current)),
        html=str(out_html) if out_html else None,
        json=str(out_json) if out_json else None,
        seconds=round(time.perf_counter() - started, 2),
    )
    return out


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
    from sklearn.metrics import brier_score_loss, roc_auc_score

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
