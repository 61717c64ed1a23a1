"""Silver -> gold: each sensor on its own regular grid, labelled windows, incident tables from open-time fields."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ml.data import gold, schemas
from ml.testing.models import sine_readings


def test_grid_fills_gaps_with_flagged_nan_rows_and_keeps_each_sensor_step():
    r = pd.concat(
        [sine_readings(drop=[5, 6, 7]), sine_readings(n=30, sensors=("nab",), freq="5min")], ignore_index=True
    )
    grid = gold.sensor_grid(r)
    cpu = grid[grid["sensor_id"] == "cpu-01"]
    assert len(cpu) == 72 and cpu["is_missing"].sum() == 3 and cpu["value"].isna().sum() == 3
    nab = grid[grid["sensor_id"] == "nab"]
    assert len(nab) == 30 and (nab["timestamp"].diff().dropna() == pd.Timedelta("5min")).all()


def test_label_windows_marks_both_ends_inclusive():
    grid = gold.sensor_grid(sine_readings())
    w = pd.DataFrame(
        {
            "sensor_id": ["cpu-01"],
            "start": [pd.Timestamp("2024-01-01 10:00")],
            "end": [pd.Timestamp("2024-01-01 12:00")],
            "anomaly_kind": ["spike"],
        }
    )
    labelled = gold.label_windows(grid, w)
    hit = labelled[labelled["is_anomaly"]]
    assert list(hit["timestamp"].dt.hour) == [10, 11, 12] and set(hit["sensor_id"]) == {"cpu-01"}
    assert "is_anomaly" not in grid.columns  # input untouched


def incidents_frame(n=40) -> pd.DataFrame:
    opened = pd.date_range("2024-01-01 08:00", periods=n, freq="3h")
    resolved = opened + pd.to_timedelta(np.arange(n) % 9 + 1, unit="h")
    df = pd.DataFrame({c: [None] * n for c in schemas.INCIDENT_COLUMNS})
    df["number"] = [f"INC{i:04d}" for i in range(n)]
    df["opened_at"], df["sys_updated_at"] = opened, resolved
    df["priority"], df["impact"], df["urgency"] = 3, 2, 2
    df["assignment_group"] = np.where(np.arange(n) % 2, "DBA", "Service Desk")
    df["short_description"], df["description"] = "db slow", "the database is slow"
    df["sla_target_hours"] = 5.0
    df["resolved_at"] = resolved.where(np.arange(n) < n - 5)
    df["made_sla"] = pd.array(
        [(h <= 5) if i < n - 5 else None for i, h in enumerate(np.arange(n) % 9 + 1)], dtype="boolean"
    )
    df["state"] = np.where(np.arange(n) < n - 5, "Closed", "In Progress")
    df["root_cause"] = "x"
    return df


def test_incident_feature_tables_use_open_time_fields_only():
    tables = gold.build_gold(
        {
            "sensor_readings": sine_readings().iloc[:0],
            "anomaly_windows": pd.DataFrame(),
            "incidents": incidents_frame(),
        },
        {},
    )
    allowed = set(schemas.OPEN_TIME_COLUMNS) | set(gold.INCIDENT_DERIVED) | {"number"}
    for name in ("incident_sla", "incident_ttr", "incident_open"):
        feats = {c for c in tables[name].columns if not c.startswith("target_")}
        assert feats <= allowed, f"{name} leaks {feats - allowed}"
        assert not feats & set(schemas.OUTCOME_COLUMNS)
    assert len(tables["incident_open"]) == 5 and len(tables["incident_sla"]) == 35
    assert tables["incident_sla"]["target_breached"].sum() == sum((i % 9 + 1) > 5 for i in range(35))


def test_cli_writes_every_table_and_the_row_counts(tmp_path):
    silver, out = tmp_path / "silver", tmp_path / "gold"
    silver.mkdir()
    sine_readings().to_parquet(silver / "sensor_readings.parquet")
    pd.DataFrame(columns=["sensor_id", "start", "end", "anomaly_kind"]).to_parquet(
        silver / "anomaly_windows.parquet"
    )
    incidents_frame().to_parquet(silver / "incidents.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"features": {"silver": str(silver), "gold": str(out)}}))  # JSON is YAML
    assert gold.main(["--params", str(params), "--metrics", str(tmp_path / "features.json")]) == 0
    rows = json.loads((tmp_path / "features.json").read_text())["gold_rows"]
    assert rows == {
        "sensor_series": 144,
        "incident_sla": 35,
        "incident_ttr": 35,
        "incident_text": 40,
        "incident_open": 5,
    }
    assert {p.stem for p in out.glob("*.parquet")} == set(rows)
