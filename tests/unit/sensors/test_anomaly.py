"""Anomaly detector behaviour: a spike is flagged, a normal series mostly is not, scores are causal and in [0,1]."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import config, features
from ml.data.gold import sensor_grid
from ml.sensors import anomaly
from ml.testing.models import DETECTOR_TEST_PARAMS as PARAMS


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
    grid = sensor_grid(pd.concat(parts, ignore_index=True).assign(kind="cpu_pct", unit="pct"))
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
    assert row["is_anomaly"] and row["score"] > row["threshold"] >= anomaly.MIN_THRESHOLD
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


def test_params_take_the_project_section_and_refuse_unknown_keys():
    s = series(n_days=10, sensors=("cpu-01",))
    with pytest.raises(ValueError, match="n_estimatorz"):
        anomaly.fit_detector(s, {**PARAMS, "n_estimatorz": 10})
    forest = anomaly.make_detector({"seed": 5}).named_steps["detector"]
    declared = config.load_params()["anomaly"]
    assert forest.n_estimators == declared["n_estimators"] and forest.random_state == 5
