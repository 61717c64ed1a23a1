"""Gold transforms: causal sensor features, open-time-only incident features, one table per task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml import features
from ml.data import schemas


def readings(n=72, sensors=("cpu-01", "cpu-02"), drop=(), freq="1h") -> pd.DataFrame:
    rows = []
    for k, sid in enumerate(sensors):
        ts = pd.date_range("2024-01-01", periods=n, freq=freq)
        vals = 50 + 10 * np.sin(2 * np.pi * np.arange(n) / 24) + k
        rows.append(
            pd.DataFrame({"sensor_id": sid, "kind": "cpu_pct", "unit": "pct", "timestamp": ts, "value": vals})
        )
    df = pd.concat(rows, ignore_index=True)
    return df.drop(index=list(drop)).reset_index(drop=True)


def test_grid_fills_gaps_with_flagged_nan_rows_and_keeps_each_sensor_step():
    r = pd.concat(
        [readings(drop=[5, 6, 7]), readings(n=30, sensors=("nab",), freq="5min")], ignore_index=True
    )
    grid = features.sensor_grid(r)
    cpu = grid[grid["sensor_id"] == "cpu-01"]
    assert len(cpu) == 72 and cpu["is_missing"].sum() == 3 and cpu["value"].isna().sum() == 3
    nab = grid[grid["sensor_id"] == "nab"]
    assert len(nab) == 30 and (nab["timestamp"].diff().dropna() == pd.Timedelta("5min")).all()


def test_label_windows_marks_both_ends_inclusive():
    grid = features.sensor_grid(readings())
    w = pd.DataFrame(
        {
            "sensor_id": ["cpu-01"],
            "start": [pd.Timestamp("2024-01-01 10:00")],
            "end": [pd.Timestamp("2024-01-01 12:00")],
            "anomaly_kind": ["spike"],
        }
    )
    labelled = features.label_windows(grid, w)
    hit = labelled[labelled["is_anomaly"]]
    assert list(hit["timestamp"].dt.hour) == [10, 11, 12] and set(hit["sensor_id"]) == {"cpu-01"}
    assert "is_anomaly" not in grid.columns  # input untouched


def fitted(grid: pd.DataFrame) -> features.SensorWindowFeatures:
    return features.SensorWindowFeatures().fit(grid[grid["timestamp"] < "2024-01-02 06:00"])


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(min_value=30, max_value=70), bump=st.floats(min_value=-1e3, max_value=1e3))
def test_sensor_features_are_causal(cut, bump):
    """Changing readings after time t never changes the features at or before t."""
    grid = features.sensor_grid(readings(drop=[40]))
    model = fitted(grid)
    base = model.transform(grid)
    changed = grid.copy()
    t_cut = changed["timestamp"].min() + pd.Timedelta(hours=cut)
    changed.loc[changed["timestamp"] > t_cut, "value"] += bump
    after = model.transform(changed)
    past = (grid["timestamp"] <= t_cut).to_numpy()
    pd.testing.assert_frame_equal(base[past], after[past])


def test_features_keep_input_row_order_and_are_finite():
    grid = features.sensor_grid(readings())
    shuffled = grid.sample(frac=1.0, random_state=0)
    model = fitted(grid)
    f = model.transform(shuffled)
    assert list(f.index) == list(shuffled.index) and list(f.columns) == features.SENSOR_FEATURES
    assert np.isfinite(f.to_numpy()).all()
    pd.testing.assert_frame_equal(f.sort_index(), model.transform(grid).sort_index())


def test_window_features_flag_a_spike_and_a_stuck_value():
    grid = features.sensor_grid(readings())
    model = fitted(grid)
    cpu1 = grid["sensor_id"] == "cpu-01"
    grid.loc[cpu1 & (grid["timestamp"] == "2024-01-02 12:00"), "value"] = 500.0
    stuck = cpu1 & grid["timestamp"].between("2024-01-03 00:00", "2024-01-03 10:00")
    grid.loc[stuck, "value"] = 42.0
    f = model.transform(grid).set_index([grid["sensor_id"], grid["timestamp"]])
    assert f.loc[("cpu-01", pd.Timestamp("2024-01-02 12:00")), "z_long"] > 10
    assert f.loc[("cpu-01", pd.Timestamp("2024-01-03 10:00")), "flat_run"] == 10
    assert f.loc["cpu-02", "z_long"].abs().max() < 5


def test_unknown_sensor_and_missing_column_are_named():
    grid = features.sensor_grid(readings())
    model = fitted(grid)
    other = grid.assign(sensor_id="temp-99")
    with pytest.raises(ValueError, match="temp-99"):
        model.transform(other)
    with pytest.raises(ValueError, match="value"):
        model.transform(grid.drop(columns="value"))


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
    gold = features.build_gold(
        {
            "sensor_readings": readings().iloc[:0],
            "anomaly_windows": pd.DataFrame(),
            "incidents": incidents_frame(),
        },
        {},
    )
    allowed = set(schemas.OPEN_TIME_COLUMNS) | set(features.INCIDENT_DERIVED) | {"number"}
    for name in ("incident_sla", "incident_ttr", "incident_open"):
        feats = {c for c in gold[name].columns if not c.startswith("target_")}
        assert feats <= allowed, f"{name} leaks {feats - allowed}"
        assert not feats & set(schemas.OUTCOME_COLUMNS)
    assert len(gold["incident_open"]) == 5 and len(gold["incident_sla"]) == 35
    assert gold["incident_sla"]["target_breached"].sum() == sum((i % 9 + 1) > 5 for i in range(35))


def test_group_load_counts_only_earlier_incidents_of_the_same_group():
    t = pd.Series(
        pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-02 03:00"])
    )
    g = pd.Series(["A", "A", "B", "A"])
    assert list(features.group_load(t, g)) == [0, 1, 0, 0]


@pytest.mark.parametrize(
    "text,expected", [(("Disk full", "node 3"), "Disk full. node 3"), ((None, None), "")]
)
def test_incident_text_joins_fields(text, expected):
    df = pd.DataFrame({"short_description": [text[0]], "description": [text[1]]})
    assert features.incident_text(df).iloc[0] == expected
