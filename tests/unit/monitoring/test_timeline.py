"""Drift over time found where it was injected (a sensor recalibration, a new system's rollout), and model
quality over time. The injected-shift properties run over generator seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.data.synth.incidents import make_incidents
from ml.data.synth.sensors import make_sensors, sensor_shifts
from ml.monitoring import drift, timeline

SEEDS = settings(max_examples=4, deadline=None, derandomize=True)  # each example generates data: keep few

RECAL = {"at": "2024-01-29", "sensors": 2, "offset_pct": 0.08}


@SEEDS
@given(st.integers(0, 2**16))
def test_sensor_recalibration_is_detected_and_a_normal_week_is_not(seed):
    """Weeks 2-3 of week-over-week changes are the reference; week 4 is normal, week 5 follows the step."""
    kw = dict(n_sensors=4, days=35, seed=seed, missing_rate=0.0, anomalies_per_sensor=0, recalibration=RECAL)
    readings, _ = make_sensors(**kw)
    shifted = sensor_shifts(**{k: v for k, v in kw.items() if k != "anomalies_per_sensor"})
    changes = timeline.sensor_changes(readings, "7D")
    weeks = dict(timeline.time_windows(changes, "7D", start="2024-01-08"))
    reference = pd.concat([weeks[pd.Timestamp("2024-01-08")], weeks[pd.Timestamp("2024-01-15")]])
    threshold = 0.5  # a fixed threshold here; notebook 09 calibrates its own on the first weeks
    normal = drift.psi_table(reference, weeks[pd.Timestamp("2024-01-22")], threshold, dropna=True)
    after = drift.psi_table(reference, weeks[pd.Timestamp("2024-01-29")], threshold, dropna=True)
    assert not normal["drifted"].any(), normal
    flagged = set(after.loc[after["drifted"], "feature"])
    assert flagged and flagged <= set(shifted["sensor_id"]), after
    # temperature, memory and request-rate sensors are quiet enough for an 8% step to stand out
    clear = {s for s in shifted["sensor_id"] if not s.startswith("cpu")}
    assert clear <= flagged, after


def test_drift_over_time_and_first_detection_find_the_rollout_window():
    rollout = {"at": "2024-04-01", "system": "HR portal", "share": 0.2}
    incidents = make_incidents(n_incidents=2500, months=6, seed=1, rollout=rollout)
    frame = drift.incident_monitor_frame(incidents).assign(opened_at=incidents["opened_at"])
    reference = frame[frame["opened_at"] < "2024-03-01"].drop(columns="opened_at")
    windows = [
        (s, w.drop(columns="opened_at"))
        for s, w in timeline.time_windows(frame, "14D", "opened_at", "2024-01-01")
    ]
    table = timeline.drift_over_time(reference, windows, threshold=0.1, min_rows=50)
    assert {"window_start", "feature", "psi", "drifted", "share_drifted"} <= set(table.columns)
    first = timeline.first_detection(table, injected_at="2024-04-01").set_index("feature")
    assert first.loc["cmdb_ci", "first_drift_after"] == pd.Timestamp("2024-03-25")  # the window holding 04-01
    assert 0 < first.loc["cmdb_ci", "delay_days"] <= 14
    cmdb = table[table["feature"] == "cmdb_ci"].set_index("window_start")["psi"]
    assert cmdb[cmdb.index >= "2024-04-08"].min() > cmdb[cmdb.index < "2024-03-01"].max()
    assert len(timeline.drift_share(table)) == len(windows)


def test_rolling_performance_tracks_a_model_that_degrades():
    rng = np.random.default_rng(0)
    t = pd.date_range("2024-01-01", periods=4000, freq="2h")
    y = rng.random(len(t)) < 0.3
    good = np.where(y, 0.8, 0.2) + rng.normal(0, 0.1, len(t))
    score = np.where(t < "2024-06-01", good, rng.random(len(t)))  # the model stops working in June
    frame = pd.DataFrame({"t": t, "p": np.clip(score, 0, 1), "y": y})
    perf = timeline.rolling_performance(frame, time="t", score="p", label="y", window="28D", step="7D")
    early = perf[perf["window_end"] < "2024-05-01"]
    late = perf[perf["window_end"] > "2024-07-01"]
    assert early["roc_auc"].min() > 0.9 and late["roc_auc"].max() < 0.7
    assert late["brier"].min() > early["brier"].max()
    reg = pd.DataFrame({"t": t, "pred": 5.0, "y": 5.0 + rng.normal(0, 1, len(t)), "lo": 3.0, "hi": 7.0})
    perf = timeline.rolling_performance(
        reg, time="t", score="pred", label="y", kind="regression", lower="lo", upper="hi"
    )
    assert perf["coverage"].between(0.9, 1.0).all() and perf["mae"].between(0.6, 1.0).all()


def hand_table(psi_by_feature: dict[str, list[float]], start: str = "2024-01-01") -> pd.DataFrame:
    """A drift_over_time-shaped table: one weekly window per PSI value."""
    rows = []
    for feature, values in psi_by_feature.items():
        for i, psi in enumerate(values):
            rows.append({"window_start": pd.Timestamp(start) + pd.Timedelta(weeks=i), "feature": feature,
                         "psi": psi, "drifted": False, "kind": "numeric", "n_rows": 168, "share_drifted": 0.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_threshold_comes_from_the_calibration_windows_only():
    table = hand_table({"a": [0.2, 0.4, 0.1, 9.0], "b": [0.3, 0.1, 0.2, 0.1]})
    assert timeline.calibration_windows(table, 2) == (pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-08"))
    assert (
        timeline.calibrated_threshold(table, 2, margin=1.25, floor=0.1) == 0.5
    )  # 1.25 x 0.4, the 9.0 unseen
    assert timeline.calibrated_threshold(table, 2, margin=1.25, floor=0.6) == 0.6
    assert timeline.calibration_windows(table, 9)[1] == pd.Timestamp(
        "2024-01-15"
    )  # one window is left to judge
    short = table[table["window_start"] == pd.Timestamp("2024-01-01")]
    assert (
        timeline.calibrated_threshold(short, 2, margin=1.25, floor=0.3, after="2023-12-31") == 0.3
    )  # none left
    with pytest.raises(ValueError, match="calibration needs"):
        timeline.calibration_windows(table, 0)


def test_alerts_are_judged_after_calibration_with_false_alarms_as_a_rate():
    # weeks 0-1 calibrate; the shift lands in the window starting 2024-02-05 (week 5)
    table = timeline.recut(
        hand_table({"a": [0.1, 0.1, 0.9, 0.1, 0.1, 2.0, 2.0], "b": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]}), 0.5
    )
    first, overall = timeline.alert_summary(table, "2024-02-07", after="2024-01-08")
    a = first.set_index("feature").loc["a"]
    assert a["alert_before_shift"] and a["first_alert"] == pd.Timestamp(
        "2024-01-22"
    )  # found without the date
    assert a["false_alarm_rate"] == pytest.approx(1 / 3) and a["detected_at"] == pd.Timestamp("2024-02-12")
    assert overall["evaluation_windows_before_shift"] == 3 and overall["false_alarm_rate"] == pytest.approx(
        1 / 6
    )
    assert overall["detected_after_shift"] == ["a"] and overall["features_with_false_alarms"] == ["a"]
    sustained, quiet = timeline.alert_summary(table, "2024-02-07", after="2024-01-08", persistence=2)
    assert quiet["false_alarm_rate"] == 0.0  # the one-week burst is not sustained
    assert sustained.set_index("feature").loc["a", "detected_at"] == pd.Timestamp("2024-02-19")
