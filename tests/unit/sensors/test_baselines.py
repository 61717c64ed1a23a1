"""Causal baselines: hand examples, missing readings, per-sensor scoring, causality, a flat series with a spike."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.sensors import baselines as bl
from ml.sensors import evaluation as ev

T0 = pd.Timestamp("2024-01-01")


def test_rolling_zscore_hand_example():
    z = bl.rolling_zscore_scores(pd.Series([1.0, 2, 3, 4, 10]), window=4, min_periods=2)
    assert z.iloc[:2].isna().all()
    assert z.iloc[2] == pytest.approx(1.5 / np.std([1, 2], ddof=1))
    assert z.iloc[4] == pytest.approx(7.5 / np.std([1, 2, 3, 4], ddof=1))  # 5.809


def test_seasonal_residual_hand_example():
    # period 2: e_t = median(x[t-2], x[t-4]); residuals r2..r6 = 1, 0, -0.5, 2, 3.5
    x = pd.Series([0.0, 10, 1, 10, 0, 12, 4])
    s = bl.seasonal_residual_scores(x, period=2, n_periods=2, scale_window=4, min_scale_periods=2)
    assert s.iloc[:4].isna().all()  # too few past residuals for a scale
    # t5: past residuals [1, 0, -0.5] -> median 0, MAD 0.5
    assert s.iloc[5] == pytest.approx(2 / (1.4826 * 0.5))
    # t6: past residuals [1, 0, -0.5, 2] -> median 0.5, |dev| [0.5, 0.5, 1, 1.5] -> MAD 0.75
    assert s.iloc[6] == pytest.approx(3.5 / (1.4826 * 0.75))


def test_baselines_skip_missing_readings_and_score_each_sensor_on_its_own():
    t = np.arange(24 * 6)
    one = pd.DataFrame(
        {
            "sensor_id": "a",
            "timestamp": pd.date_range(T0, periods=len(t), freq="h"),
            "value": np.sin(2 * np.pi * t / 24) + 0.1 * np.cos(t),
        }
    )
    one.loc[100, "value"] = np.nan
    two = one.assign(sensor_id="b", value=one["value"] * 3 + 7)
    frame = pd.concat([one, two]).sample(frac=1, random_state=0)  # shuffled rows, own index
    for fn in (bl.rolling_zscore_scores, bl.seasonal_residual_scores):
        scores = fn(frame)
        assert scores.index.equals(frame.index)
        alone = fn(one["value"])
        np.testing.assert_allclose(scores.loc[frame["sensor_id"] == "a"].sort_index(), alone, equal_nan=True)
        assert np.isnan(alone.iloc[100]) and np.isfinite(alone.iloc[101:]).all()


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(st.floats(-1e3, 1e3) | st.just(float("nan")), min_size=40, max_size=80),
    cut=st.integers(0, 39),
    bump=st.floats(-1e4, 1e4),
)
def test_baselines_are_causal(values, cut, bump):
    """Changing readings after t never changes the scores at or before t."""
    x = pd.Series(values)
    changed = x.copy()
    changed.iloc[cut + 1 :] = changed.iloc[cut + 1 :] + bump
    changed.iloc[-1] = np.nan
    for fn in (
        lambda s: bl.rolling_zscore_scores(s, window=6),
        lambda s: bl.seasonal_residual_scores(s, period=4, n_periods=3),
    ):
        np.testing.assert_array_equal(fn(x).iloc[: cut + 1], fn(changed).iloc[: cut + 1])


@settings(max_examples=20, deadline=None)
@given(
    level=st.floats(-1e3, 1e3),
    height=st.floats(1e-2, 1e3),
    sign=st.sampled_from([-1, 1]),
    at_day=st.integers(7, 10),
    hour=st.integers(0, 23),
)
def test_flat_series_with_one_spike(level, height, sign, at_day, hour):
    """Both baselines score the spike highest and, at a 1% false-alarm threshold, flag only it.

    Exception, by definition: the rolling z-score's mean/std of the previous 24 readings include the spike
    for 24 steps, so those readings are not exactly 0 while the threshold from a flat past is 0.
    """
    n, spike, train = 24 * 12, 24 * at_day + hour, 24 * 6
    x = pd.Series(np.full(n, level))
    x.iloc[spike] = level + sign * height * max(1.0, abs(level))
    for name, scores, tainted in (
        ("zscore", bl.rolling_zscore_scores(x, window=24), set(range(spike + 1, spike + 25))),
        ("seasonal", bl.seasonal_residual_scores(x, period=24, n_periods=7), set()),
    ):
        assert scores.idxmax() == spike, name
        thr = ev.threshold_for_false_alarm_rate(scores.iloc[:train], 0.01)
        flagged = set(np.flatnonzero(ev.alarms_from_scores(scores.to_numpy(), thr)))
        assert spike in flagged and flagged - {spike} <= tainted, name


def test_a_frame_off_its_grid_is_refused():
    frame = pd.DataFrame(
        {"sensor_id": "s1", "timestamp": pd.date_range(T0, periods=30, freq="h"), "value": 1.0}
    )
    with pytest.raises(ValueError, match="regular time grid"):
        bl.rolling_zscore_scores(frame.drop(index=[3]))
    with pytest.raises(ValueError, match="missing column"):
        bl.seasonal_residual_scores(frame.drop(columns="value"))


# --- real data ------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_baselines_on_nab_sample(shared_data):
    from ml.data.gold import sensor_grid
    from ml.data.sources import load_nab_dir, nab_probationary_rows
    from ml.features import infer_freq

    readings, wins = load_nab_dir(shared_data / "nab_sample")
    grid = sensor_grid(readings)
    eval_start = ev.eval_start_after_rows(readings, nab_probationary_rows)
    assert len(eval_start) == 4
    results = {}
    for sid, g in grid.groupby("sensor_id"):
        period = int(pd.Timedelta("1D") / infer_freq(g["timestamp"]))
        frame = g.assign(
            zscore=bl.rolling_zscore_scores(g), seasonal=bl.seasonal_residual_scores(g, period=period)
        )
        mine = wins[wins["sensor_id"] == sid]
        for col in ("zscore", "seasonal"):
            s = frame[col]
            assert s.index.equals(g.index) and (s.dropna() >= 0).all() and np.isfinite(s.dropna()).all()
            out = ev.evaluate_at_false_alarm_rate(
                frame, mine, score_col=col, rate=0.01, eval_start=eval_start
            )
            assert tuple(out)[: len(ev.METRIC_KEYS)] == ev.METRIC_KEYS
            assert out["windows"] == len(mine) and np.isfinite(out["threshold"])
            for key in ("event_precision", "event_recall", "event_f1", "early_detection_score", "point_f1"):
                assert 0 <= out[key] <= 1
            json.dumps(out, allow_nan=False)
            results[f"{sid.rsplit('/', 1)[-1]} {col}"] = out
    table = ev.detector_table(results)
    print("\nNAB sample, 1% false-alarm threshold on the probationary period:")
    print(table[["event_precision", "event_recall", "event_f1", "detected", "windows", "false_alarm_events"]])
