"""Shared transforms from silver tables to the gold feature tables (one per task).

Pure functions, frames in and frames out, never changing their input. The same functions serve the
notebooks, batch scoring and the service, so a transform is written once. Sensor features are causal
(a row at time t reads only readings up to t); incident features use open-time fields only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ml.config import load_params, resolve
from ml.data import schemas

# --- sensors ----------------------------------------------------------------------------------


def infer_freq(timestamps: pd.Series) -> pd.Timedelta:
    """A series' sampling step: the most common gap between consecutive readings."""
    gaps = timestamps.sort_values().diff().dropna()
    if gaps.empty:
        return pd.Timedelta("1h")
    return gaps.mode().iloc[0]


def sensor_grid(readings: pd.DataFrame, freq: str | None = None) -> pd.DataFrame:
    """Put each sensor on a regular time grid (missing readings become NaN rows, flagged `is_missing`).

    `freq=None` (or "auto") infers each sensor's own step, so 5-minute NAB files and hourly synthetic
    sensors both keep their resolution.
    """
    parts = []
    for sid, g in readings.sort_values(["sensor_id", "timestamp"]).groupby("sensor_id", sort=True):
        g = g.set_index("timestamp")
        g = g[
            ~g.index.duplicated(keep="last")
        ]  # a repeated timestamp (NAB has some): the later reading stands
        step = infer_freq(g.index.to_series()) if freq in (None, "auto") else pd.Timedelta(freq)
        full = pd.date_range(g.index.min(), g.index.max(), freq=step)
        v = g["value"].reindex(full)
        parts.append(
            pd.DataFrame(
                {
                    "sensor_id": sid,
                    "kind": g["kind"].iloc[0],
                    "unit": g["unit"].iloc[0],
                    "timestamp": full,
                    "value": v.to_numpy(dtype=float),
                    "is_missing": v.isna().to_numpy(),
                }
            )
        )
    cols = ["sensor_id", "kind", "unit", "timestamp", "value", "is_missing"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def label_windows(grid: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Mark rows inside a labelled anomaly window (both ends included) with `is_anomaly` and its kind."""
    out = grid.copy()
    out["is_anomaly"] = False
    out["anomaly_kind"] = None
    for w in windows.itertuples(index=False):
        inside = (out["sensor_id"] == w.sensor_id) & out["timestamp"].between(w.start, w.end)
        out.loc[inside, "is_anomaly"] = True
        out.loc[inside, "anomaly_kind"] = w.anomaly_kind
    return out


SENSOR_FEATURES = [
    "dev_season",
    "diff_1",
    "z_short",
    "z_long",
    "spread_ratio",
    "flat_run",
    "drift",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
]


class SensorWindowFeatures(TransformerMixin, BaseEstimator):
    """Raw readings (sensor_id, timestamp, value) -> causal window features, normalised per sensor.

    `fit` learns, on training readings only, each sensor's robust level and scale and its typical
    hour-of-day profile (weekdays and weekends apart). `transform` computes, for every reading, features that use only that sensor's
    readings up to and including it (rolling windows count readings, so any sampling step works), and
    returns them in the input's row order. A sensor unseen in training raises a ValueError naming it.
    """

    def __init__(
        self, short_window: int = 6, long_window: int = 24, baseline_window: int = 168, max_flat_run: int = 48
    ):
        self.short_window = short_window
        self.long_window = long_window
        self.baseline_window = baseline_window
        self.max_flat_run = max_flat_run

    def fit(self, X: pd.DataFrame, y=None):
        frame = _readings_frame(X)
        self.sensors_ = {}
        for sid, g in frame.groupby("sensor_id", sort=True):
            v = g["value"].dropna()
            if len(v) < 2:
                raise ValueError(f"sensor {sid!r}: needs at least 2 training readings, got {len(v)}")
            centre = float(v.median())
            scale = float(v.quantile(0.75) - v.quantile(0.25)) or float(v.std()) or 1.0
            norm = (g["value"] - centre) / scale
            how = _season_bin(g["timestamp"])
            profile = norm.groupby(how).median().reindex(range(48))
            by_hour = norm.groupby(how % 24).median().reindex(range(24))
            profile = profile.fillna(pd.Series(np.tile(by_hour.to_numpy(), 2))).fillna(0.0)
            resid = (norm - profile.to_numpy()[how]).dropna()
            diffs = norm.dropna().diff().abs()
            self.sensors_[sid] = {
                "centre": centre,
                "scale": scale,
                "profile": [float(x) for x in profile],
                "resid_std": float(resid.std()) if len(resid) > 2 and resid.std() > 1e-9 else 1.0,
                "diff_scale": float(diffs.median()) if len(diffs) and diffs.median() > 1e-9 else 1.0,
            }
        self.feature_names_out_ = list(SENSOR_FEATURES)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        frame = _readings_frame(X)
        unknown = sorted(set(frame["sensor_id"]) - set(self.sensors_))
        if unknown:
            raise ValueError(
                f"sensor_id {unknown[0]!r} was not in the training data (known: {len(self.sensors_)})"
            )
        order = frame.sort_values(["sensor_id", "timestamp"], kind="stable")
        parts = [self._one_sensor(g, self.sensors_[sid]) for sid, g in order.groupby("sensor_id", sort=False)]
        feats = pd.concat(parts) if parts else pd.DataFrame(columns=SENSOR_FEATURES, dtype=float)
        return feats.reindex(frame.index)[SENSOR_FEATURES]

    def get_feature_names_out(self, input_features=None):
        return np.asarray(SENSOR_FEATURES, dtype=object)

    def _one_sensor(self, g: pd.DataFrame, st: dict) -> pd.DataFrame:
        v = ((g["value"] - st["centre"]) / st["scale"]).ffill().fillna(0.0)
        how = _season_bin(g["timestamp"])
        resid = v - np.asarray(st["profile"])[how]  # seasonally adjusted reading
        # the recent normal: median residual over the past baseline window (trend and slow change absorbed)
        base = resid.shift(1).rolling(self.baseline_window, min_periods=2).median().fillna(0.0)
        past = v.shift(1)
        out = {
            "dev_season": (resid - base) / st["resid_std"],
            "diff_1": (v - past).fillna(0.0) / st["diff_scale"],
        }
        for name, w in (("z_short", self.short_window), ("z_long", self.long_window)):
            mean = past.rolling(w, min_periods=2).mean()
            std = past.rolling(w, min_periods=2).std()
            floor = 0.25 * st["resid_std"]  # a near-constant past window must not blow z up to infinity
            out[name] = ((v - mean) / np.maximum(std, floor)).fillna(0.0)
        spread = resid.rolling(self.short_window, min_periods=2).std()
        out["spread_ratio"] = (spread / st["resid_std"]).fillna(1.0)
        same = v.diff().abs() < 1e-9
        run = same.groupby((~same).cumsum()).cumsum()
        out["flat_run"] = run.clip(upper=self.max_flat_run).astype(float)
        # drift: the last long window's mean residual against the baseline before that window began
        before = base.shift(self.long_window).fillna(base)
        out["drift"] = (resid.rolling(self.long_window, min_periods=1).mean() - before) / st["resid_std"]
        ts = pd.DatetimeIndex(g["timestamp"])
        hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60.0
        dow = ts.dayofweek.to_numpy()
        out["hour_sin"], out["hour_cos"] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
        out["dow_sin"], out["dow_cos"] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
        # one frame at the end (not column by column): a request of a few readings is dominated by overhead
        return pd.DataFrame({k: np.asarray(c, dtype=float) for k, c in out.items()}, index=g.index)


def _readings_frame(X: pd.DataFrame) -> pd.DataFrame:
    """Check and type the raw reading columns a sensor model reads (errors name the column)."""
    missing = [c for c in ("sensor_id", "timestamp", "value") if c not in X.columns]
    if missing:
        raise ValueError(f"readings need columns sensor_id, timestamp, value; missing {missing}")
    frame = X[["sensor_id", "timestamp", "value"]].copy()
    frame["sensor_id"] = frame["sensor_id"].astype(str)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["value"] = pd.to_numeric(frame["value"], errors="raise").astype(float)
    return frame


def _season_bin(ts: pd.Series) -> np.ndarray:
    """Hour of day, split weekday (0-23) / weekend (24-47): enough data per bin from a few weeks of training."""
    return ((ts.dt.dayofweek >= 5) * 24 + ts.dt.hour).to_numpy()


# --- incidents --------------------------------------------------------------------------------
INCIDENT_DERIVED = [
    "open_hour",
    "open_weekday",
    "is_weekend",
    "is_night",
    "text",
    "text_chars",
    "text_words",
    "group_load_24h",
]


def incident_text(incidents: pd.DataFrame) -> pd.Series:
    """Ticket text for NLP: short description then description, empty when the source has none."""
    short = incidents["short_description"].fillna("").astype(str)
    desc = incidents["description"].fillna("").astype(str)
    return (short + ". " + desc).str.strip(". ").rename("text")


def group_load(opened_at: pd.Series, group: pd.Series, window: str = "24h") -> pd.Series:
    """Incidents opened for the same group in the `window` strictly before each one (known at open time)."""
    out = pd.Series(0, index=opened_at.index, dtype=int, name="group_load_24h")
    span = pd.Timedelta(window)
    for _, idx in opened_at.groupby(group.fillna("?").to_numpy()).groups.items():
        times = np.sort(opened_at.loc[idx].to_numpy())
        own = opened_at.loc[idx].to_numpy()
        out.loc[idx] = np.searchsorted(times, own, "left") - np.searchsorted(times, own - span, "left")
    return out


def incident_open_features(incidents: pd.DataFrame) -> pd.DataFrame:
    """Open-time fields plus features derived only from them (calendar, text size, group load)."""
    base = incidents[["number", *schemas.OPEN_TIME_COLUMNS]].copy()
    t = base["opened_at"]
    base["open_hour"] = t.dt.hour
    base["open_weekday"] = t.dt.dayofweek
    base["is_weekend"] = base["open_weekday"] >= 5
    base["is_night"] = (base["open_hour"] < 7) | (base["open_hour"] >= 20)
    base["text"] = incident_text(incidents)
    base["text_chars"] = base["text"].str.len()
    base["text_words"] = base["text"].str.split().str.len().fillna(0).astype(int)
    base["group_load_24h"] = group_load(t, base["assignment_group"])
    return base


def incident_targets(incidents: pd.DataFrame) -> pd.DataFrame:
    """Outcomes, kept apart from features: breach flag, hours to resolve, still-open flag."""
    ttr = (incidents["resolved_at"] - incidents["opened_at"]).dt.total_seconds() / 3600.0
    return pd.DataFrame(
        {
            "number": incidents["number"],
            "is_open": incidents["resolved_at"].isna() & incidents["made_sla"].isna(),
            "target_breached": (~incidents["made_sla"].astype("boolean")).astype("boolean"),
            "target_ttr_hours": ttr,
        }
    )


# --- gold -------------------------------------------------------------------------------------
def build_gold(silver: dict[str, pd.DataFrame], params: dict) -> dict[str, pd.DataFrame]:
    """Every gold table from the silver tables: one frame per task."""
    freq = params.get("sensor_freq", "auto")
    gold: dict[str, pd.DataFrame] = {}
    readings = silver["sensor_readings"]
    if len(readings):
        grid = label_windows(sensor_grid(readings, freq), silver["anomaly_windows"])
        gold["sensor_series"] = grid  # both sensor tasks start here; their models featurise raw readings
    incidents = silver["incidents"]
    if len(incidents):
        feats = incident_open_features(incidents)
        targets = incident_targets(incidents)
        table = feats.merge(targets, on="number", validate="one_to_one")
        closed = ~table["is_open"]
        gold["incident_sla"] = table[closed & table["target_breached"].notna()].drop(columns="is_open")
        gold["incident_ttr"] = table[closed & table["target_ttr_hours"].notna()].drop(columns="is_open")
        text = table[
            [
                "number",
                "opened_at",
                "text",
                "category",
                "subcategory",
                "assignment_group",
                "cmdb_ci",
                "is_open",
                "target_ttr_hours",
            ]
        ].copy()
        text["owning_team"] = incidents["owning_team"].to_numpy()
        text["truth_root_cause"] = incidents["root_cause"].to_numpy()  # evaluation only, never a feature
        gold["incident_text"] = text
        gold["incident_open"] = feats[table["is_open"].to_numpy()].reset_index(drop=True)
    return {k: v.reset_index(drop=True) for k, v in gold.items()}


def main(argv: list[str] | None = None) -> int:
    from ml.data.ingest import atomic_write_parquet, read_silver

    ap = argparse.ArgumentParser(prog="python -m ml.features", description="Build the gold feature tables.")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--metrics", default=None)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    cfg = params.get("features", {})
    silver_dir = resolve(cfg.get("silver", "data/silver"))
    out = resolve(cfg.get("gold", "data/gold"))
    silver = {t: read_silver(silver_dir, t) for t in ("sensor_readings", "anomaly_windows", "incidents")}
    gold = build_gold(silver, cfg)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in gold.items():
        atomic_write_parquet(frame, out / f"{name}.parquet")
        print(f"  gold/{name}.parquet: {len(frame):,} rows x {frame.shape[1]} columns")
    if args.metrics:
        Path(resolve(args.metrics)).write_text(
            json.dumps({"gold_rows": {k: len(v) for k, v in gold.items()}}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
