"""Input drift of one batch: PSI per feature against a reference, and the monitored feature frames.

PSI (population stability index) sums (c - r) * ln(c / r) over bins of the reference (r) and current (c)
shares: quantile bins of the reference (numbers) or one per category, missing values a bin of their own,
empty bins floored at PSI_EPS. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift.
Only numpy and pandas: the service's /check_drift (`check_drift`) runs without Evidently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ml.features import incident_text

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


# --- monitored features -----------------------------------------------------------------------


def _season_bin(ts: pd.DatetimeIndex) -> np.ndarray:
    """Hour of day, weekday (0-23) and weekend (24-47) apart: the project's seasonal profile bins."""
    return ((ts.dayofweek >= 5) * 24 + ts.hour).to_numpy()


class GridTooLarge(ValueError):
    """The regular grid a batch of readings spans would be larger than allowed."""


def sensor_wide(
    readings: pd.DataFrame, freq: str | pd.Timedelta | None = None, max_cells: int | None = None
) -> pd.DataFrame:
    """Readings as one column per sensor on a regular time grid (a missing reading is NaN).

    The grid's step is `freq`, else the most common gap of the readings; it starts at the first reading
    (readings off it are left out). `max_cells` caps grid points x sensors: a few readings years apart
    would otherwise build a grid of millions of rows (GridTooLarge, checked before anything is built).
    """
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
        points = (wide.index[-1] - wide.index[0]) // step + 1
        if max_cells is not None and points * wide.shape[1] > max_cells:
            raise GridTooLarge(
                f"readings from {wide.index[0]} to {wide.index[-1]} span {points} steps of {step} for "
                f"{wide.shape[1]} sensor(s), over the {max_cells} grid cells allowed; send a shorter span"
            )
        wide = wide.reindex(pd.date_range(wide.index[0], wide.index[-1], freq=step))
    wide.index.name = "timestamp"
    return wide.astype(float)


class SensorLevels:
    """Each sensor's value minus its reference profile (median per hour of day, weekdays and weekends apart).

    `fit` on the reference readings (the model's training period); `transform` gives one column per
    sensor. The level keeps trends and steps, so it answers "how far is the sensor from what the model
    was trained on" (the service's /check_drift for sensors); a sensor unseen in the reference raises.
    """

    def fit(self, readings: pd.DataFrame) -> SensorLevels:
        wide = sensor_wide(readings)
        gaps = pd.Series(wide.index).diff().dropna()
        self.step_ = gaps.mode().iloc[0] if len(gaps) else None  # the reference's grid step
        bins = _season_bin(wide.index)
        profiles = {}
        for sid in wide.columns:
            by_bin = wide[sid].groupby(bins).median().reindex(range(48))
            by_hour = wide[sid].groupby(bins % 24).median().reindex(range(24))
            profiles[sid] = by_bin.fillna(pd.Series(np.tile(by_hour.to_numpy(), 2))).to_numpy()
        self.profiles_ = profiles
        return self

    def transform(
        self, readings: pd.DataFrame, freq: pd.Timedelta | None = None, max_cells: int | None = None
    ) -> pd.DataFrame:
        """Levels on a grid of step `freq` (default: the batch's most common gap), at most `max_cells`."""
        if "sensor_id" in readings:  # before any grid is built: an unknown sensor costs nothing
            unknown = sorted(set(readings["sensor_id"].astype(str)) - set(self.profiles_))
            if unknown:
                raise ValueError(
                    f"sensor_id {unknown[0]!r} is not in the reference (known: {len(self.profiles_)})"
                )
        wide = sensor_wide(readings, freq, max_cells)
        bins = _season_bin(wide.index)
        return pd.DataFrame(
            {sid: wide[sid].to_numpy() - self.profiles_[sid][bins] for sid in wide.columns}, index=wide.index
        )


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
    max_cells: int | None = None,
) -> pd.DataFrame:
    """PSI per monitored feature of a batch of raw records against the reference saved with a model.

    Sensors: one feature per sensor present in the batch (level against the reference profile, missing
    readings left out), on a grid with the reference's step and at most `max_cells` points x sensors
    (GridTooLarge above). Incidents: the ticket-mix columns. Returns `psi_table` columns.
    """
    if current_records is None or len(current_records) == 0:
        raise ValueError("current batch is empty (0 records)")
    if domain == "sensors":
        levels = SensorLevels().fit(reference_records)
        ref = levels.transform(reference_records)
        cur = levels.transform(current_records, levels.step_, max_cells)
        return psi_table(ref, cur, threshold=threshold, columns=list(cur.columns), bins=bins, dropna=True)
    ref = monitor_frame(domain, reference_records)
    cur = monitor_frame(domain, current_records)
    return psi_table(ref, cur, threshold=threshold, bins=bins)
