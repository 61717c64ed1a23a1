"""Silver -> gold: the feature tables, one per task (DVC stage `featurize`).

    python -m ml.data.gold --params params.yaml --metrics metrics/features.json

Sensors: each sensor on its own regular time grid, missing readings as flagged NaN rows, labelled anomaly
windows marked (both sensor models featurise raw readings themselves, with `ml.features`). Incidents:
open-time fields plus features derived only from them, kept apart from the outcomes (the targets). Archive:
each source's daily activity on a gap-free daily grid (the archive forecaster featurises it with `ml.features`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from ml import config
from ml.config import load_params, resolve
from ml.data import schemas
from ml.data.ingest import atomic_write_parquet, read_silver
from ml.features import GROUP_LOAD, group_load, incident_text, infer_freq


# --- sensors ----------------------------------------------------------------------------------
def sensor_grid(readings: pd.DataFrame, freq: str | None = None) -> pd.DataFrame:
    """Put each sensor on a regular time grid (missing readings become NaN rows, flagged `is_missing`).

    `freq=None` (or "auto") infers each sensor's own step, so 5-minute NAB files and hourly synthetic
    sensors both keep their resolution.
    """
    parts = []
    for sid, g in readings.sort_values(["sensor_id", "timestamp"]).groupby("sensor_id", sort=True):
        g = g.set_index("timestamp")
        g = g[~g.index.duplicated(keep="last")]  # a repeated timestamp (NAB has some): the later one stands
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


# --- incidents --------------------------------------------------------------------------------
INCIDENT_DERIVED = [
    "open_hour",
    "open_weekday",
    "is_weekend",
    "is_night",
    "text",
    "text_chars",
    "text_words",
    GROUP_LOAD,
]


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
    base[GROUP_LOAD] = group_load(t, base["assignment_group"])
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


# --- archive ----------------------------------------------------------------------------------
ARCHIVE_FLOW_COLUMNS = ["files_archived", "archived_gb", "saved_gb"]


def archive_grid(activity: pd.DataFrame) -> pd.DataFrame:
    """Each source's days from its first to its last row: a missing day archived nothing (flows 0) and kept
    the state of the day before (files, mix, policy); such rows are flagged `is_filled`."""
    cols = [c for c in schemas.ARCHIVE_COLUMNS if c in activity.columns]
    if activity.empty:
        return pd.DataFrame(columns=[*cols, "is_filled"])
    parts = []
    for sid, g in activity.sort_values(["source_id", "date"]).groupby("source_id", sort=True):
        g = g.drop_duplicates("date", keep="last").set_index("date")
        days = pd.date_range(g.index.min(), g.index.max(), freq="D", name="date")
        full = g.reindex(days)
        filled = full["source_id"].isna().to_numpy()
        flows = [c for c in ARCHIVE_FLOW_COLUMNS if c in full.columns]
        full[flows] = full[flows].fillna(0)
        full = full.ffill().assign(source_id=sid, is_filled=filled)
        parts.append(full.reset_index()[[*cols, "is_filled"]])
    out = pd.concat(parts, ignore_index=True)
    return out.astype({c: activity[c].dtype for c in cols if c != "date"})


# --- gold -------------------------------------------------------------------------------------
def build_gold(silver: dict[str, pd.DataFrame], params: dict | None = None) -> dict[str, pd.DataFrame]:
    """Every gold table from the silver tables: one frame per task (`params`: the `features` section)."""
    freq = config.section("features", params)["sensor_freq"]
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
    activity = silver.get("archive_activity")
    if activity is not None and len(activity):
        gold["archive_daily"] = archive_grid(activity)
    return {k: v.reset_index(drop=True) for k, v in gold.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.data.gold", description="Build the gold feature tables.")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--metrics", default=None)
    args = ap.parse_args(argv)
    cfg = config.section("features", load_params(args.params).get("features"))
    silver_dir, out = resolve(cfg["silver"]), resolve(cfg["gold"])
    tables = ("sensor_readings", "anomaly_windows", "incidents", "archive_activity")
    silver = {t: read_silver(silver_dir, t) for t in tables}
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
