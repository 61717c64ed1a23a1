"""Anomaly detector behaviour: a spike is flagged, a normal series mostly is not, scores are causal and in [0,1]."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml import features
from ml.sensors import anomaly

PARAMS = {
    "seed": 1,
    "train_fraction": 0.5,
    "false_alarm_rate": 0.01,
    "n_estimators": 50,
    "max_samples": 128,
    "short_window": 6,
    "long_window": 24,
}


def series(n_days=20, seed=0, sensors=("cpu-01", "cpu-02")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 24 * n_days
    ts = pd.date_range("2024-01-01", periods=n, freq="1h")
    parts = [
        pd.DataFrame(
            {
                "sensor_id": sid,
                "timestamp": ts,
                "value": 40 + 15 * np.sin(2 * np.pi * (np.arange(n) % 24) / 24) + rng.normal(0, 1, n),
            }
        )
        for sid in sensors
    ]
    grid = features.sensor_grid(pd.concat(parts, ignore_index=True).assign(kind="cpu_pct", unit="pct"))
    return grid.assign(is_anomaly=False)


@pytest.fixture(scope="module")
def fitted():
    s = series()
    return s, anomaly.fit_detector(s, PARAMS)


def test_a_spike_is_flagged_and_explained(fitted):
    s, pipe = fitted
    t = pd.Timestamp("2024-01-15 13:00")
    hit = (s["sensor_id"] == "cpu-01") & (s["timestamp"] == t)
    spiked = s.copy()
    spiked.loc[hit, "value"] += 40
    out = anomaly.score_readings(pipe, spiked)
    row = out[hit.to_numpy()].iloc[0]
    assert row["is_anomaly"] and row["score"] >= 0.99
    assert row["top_feature"] in features.SENSOR_FEATURES


def test_normal_test_period_stays_near_the_target_false_alarm_rate(fitted):
    s, pipe = fitted
    test = (~anomaly.training_rows(s, PARAMS["train_fraction"])).to_numpy()
    out = anomaly.score_readings(pipe, s)  # the whole series: the test period keeps its history as context
    assert out["score"].between(0, 1).all()
    assert out.loc[test, "is_anomaly"].mean() < 0.03  # target 1% (threshold set on held-out normal data)


def test_stuck_values_are_flagged(fitted):
    s, pipe = fitted
    stuck = s.copy()
    window = (stuck["sensor_id"] == "cpu-02") & stuck["timestamp"].between(
        "2024-01-16 02:00", "2024-01-16 14:00"
    )
    stuck.loc[window, "value"] = 41.0
    out = anomaly.score_readings(pipe, stuck)
    assert out.loc[window.to_numpy(), "is_anomaly"].any()


def test_scores_are_causal(fitted):
    s, pipe = fitted
    cut = pd.Timestamp("2024-01-14 00:00")
    changed = s.copy()
    changed.loc[changed["timestamp"] > cut, "value"] *= 3
    a = anomaly.score_readings(pipe, s, explain="none")
    b = anomaly.score_readings(pipe, changed, explain="none")
    past = (s["timestamp"] <= cut).to_numpy()
    pd.testing.assert_frame_equal(a[past], b[past])


def test_missing_readings_get_no_score_and_do_not_break_scoring(fitted):
    s, pipe = fitted
    gappy = s.copy()
    gappy.loc[gappy.index[300:305], "value"] = np.nan
    out = anomaly.score_readings(pipe, gappy)
    assert out["score"].isna().sum() == 5 and not out.loc[gappy.index[300:305], "is_anomaly"].any()


def test_same_seed_same_scores_other_seed_differs():
    s = series()
    a = anomaly.score_readings(anomaly.fit_detector(s, PARAMS), s, explain="none")
    b = anomaly.score_readings(anomaly.fit_detector(s, PARAMS), s, explain="none")
    c = anomaly.score_readings(anomaly.fit_detector(s, {**PARAMS, "seed": 2}), s, explain="none")
    pd.testing.assert_frame_equal(a, b)
    assert not a["score"].equals(c["score"])


def test_nab_runner_writes_results_files_with_the_same_rows(tmp_path):
    root = tmp_path / "nab"
    (root / "data" / "realTest").mkdir(parents=True)
    s = series(n_days=20, sensors=("x",))
    frame = s[["timestamp", "value"]].assign(timestamp=s["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    frame.loc[300, "value"] = 500.0
    frame.to_csv(root / "data" / "realTest" / "tiny.csv", index=False)
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({"realTest/tiny.csv": [[f"{frame.loc[i, 'timestamp']}.000000" for i in (298, 302)]]})
    )
    summary = anomaly.run_nab(root, tmp_path / "results", PARAMS, n_jobs=1)
    out = pd.read_csv(tmp_path / "results" / "opslab" / "realTest" / "opslab_tiny.csv")
    assert summary["files"] == 1 and list(out.columns) == ["timestamp", "value", "anomaly_score", "label"]
    assert list(out["timestamp"]) == list(frame["timestamp"]) and len(out) == len(frame)
    assert out["anomaly_score"].between(0, 1).all() and out["label"].sum() == 5
    assert out.loc[300, "anomaly_score"] == out["anomaly_score"].max()


def test_nab_runner_names_an_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no NAB csv files"):
        anomaly.run_nab(tmp_path, tmp_path / "out", PARAMS)
