"""Evaluation: hand-computed point/event metrics, eval_start exclusion, metric properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ml.sensors import evaluation as ev
from ml.sensors.evaluation import ALARM_COL

T0 = pd.Timestamp("2024-01-01")
H = pd.Timedelta("1h")


def at(i: int) -> pd.Timestamp:
    return T0 + i * H


def scored(n: int, alarms=(), sensor: str = "s1") -> pd.DataFrame:
    flags = np.zeros(n, dtype=bool)
    flags[list(alarms)] = True
    return pd.DataFrame(
        {
            "sensor_id": sensor,
            "timestamp": pd.date_range(T0, periods=n, freq="h"),
            "value": 1.0,
            ALARM_COL: flags,
        }
    )


def windows(*rows: tuple[str, int, int, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [(s, at(a), at(b), k) for s, a, b, k in rows], columns=["sensor_id", "start", "end", "anomaly_kind"]
    )


def nab_credit(offset: float, width: float) -> float:
    """NAB's scaled sigmoid at relative position -(width - offset) / width, over its value at -1."""

    def s(y):
        return 2 / (1 + math.exp(5 * y)) - 1

    return s(-(width - offset) / width) / s(-1)


# s1: W1 detected at its start, W2 detected 5 h late, W3 missed; alarms 70,71 (1 step apart) are one
# false-alarm event, 80 and 95 are two more. s2: one 60-step window holding 50 alarms (counts once).
HAND = pd.concat(
    [scored(100, [10, 35, 70, 71, 80, 95]), scored(60, range(5, 55), sensor="s2")], ignore_index=True
)
HAND_WINDOWS = windows(
    ("s1", 10, 19, "spike"), ("s1", 30, 39, "level_shift"), ("s1", 50, 59, "drift"), ("s2", 0, 59, "stuck")
)


def test_event_metrics_match_hand_computed_numbers():
    m = ev.event_metrics(HAND, HAND_WINDOWS, merge_gap=3)
    assert (m["windows"], m["detected"], m["missed"], m["false_alarm_events"]) == (4, 3, 1, 3)
    assert m["event_recall"] == pytest.approx(3 / 4)
    assert m["event_precision"] == pytest.approx(3 / 6)
    assert m["event_f1"] == pytest.approx(2 * 0.5 * 0.75 / 1.25)  # 0.6
    assert m["mean_time_to_detect_h"] == pytest.approx(10 / 3)  # (0 + 5 + 5) / 3
    assert m["median_time_to_detect_h"] == pytest.approx(5.0)
    credits = [1.0, nab_credit(5, 10), 0.0, nab_credit(5, 60)]
    assert nab_credit(5, 10) == pytest.approx(0.8598, abs=1e-4)  # S(-0.5) / S(-1) = 0.84828 / 0.98661
    assert m["early_detection_score"] == pytest.approx(sum(credits) / 4)


def test_window_table_counts_a_window_once_and_scores_early_alarms_higher():
    t = ev.window_detections(HAND, HAND_WINDOWS)
    assert list(t["detected"]) == [True, True, False, True]
    assert list(t["n_alarms"]) == [1, 1, 0, 50]
    assert list(t["time_to_detect_h"].fillna(-1)) == [0.0, 5.0, -1, 5.0]
    assert t["early_detection_credit"].iloc[0] == pytest.approx(1.0)
    assert 0 < t["early_detection_credit"].iloc[1] < 1 and t["early_detection_credit"].iloc[2] == 0
    kinds = ev.event_metrics_by_kind(HAND, HAND_WINDOWS).set_index("anomaly_kind")
    assert kinds.loc["spike", "recall"] == 1 and kinds.loc["drift", "recall"] == 0
    assert kinds.loc["level_shift", "mean_time_to_detect_h"] == 5 and np.isnan(
        kinds.loc["drift", "mean_time_to_detect_h"]
    )


def test_last_step_of_a_window_still_earns_some_credit():
    credit = ev.early_detection_credit(at(9), at(0), at(9), H)
    assert credit == pytest.approx(nab_credit(9, 10)) and 0.2 < credit < 0.3


@pytest.mark.parametrize(
    ("alarms", "merge_gap", "events"),
    [([70, 71], 3, 1), ([70, 80], 3, 2), ([70, 73], 3, 1), ([70, 74], 3, 2), ([70, 71], 0, 2)],
)
def test_false_alarms_merge_when_at_most_merge_gap_steps_apart(alarms, merge_gap, events):
    fa = ev.false_alarm_events(scored(100, alarms), windows(), merge_gap=merge_gap)
    assert len(fa) == events and fa["n_alarms"].sum() == len(alarms)


def test_merge_gap_is_in_steps_of_each_sensor():
    five_min = scored(100, [10, 12]).assign(
        timestamp=pd.date_range(T0, periods=100, freq="5min"), sensor_id="fast"
    )
    assert len(ev.false_alarm_events(five_min, windows(), merge_gap=2)) == 1
    assert len(ev.false_alarm_events(five_min, windows(), merge_gap=1)) == 2


def test_point_metrics_hand_example_and_nan_handling():
    m = ev.point_metrics([1, 1, 0, 0, np.nan], [1, 0, 1, np.nan, 1])
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)  # NaN prediction = no alarm; NaN truth skipped
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(0.5)
    assert ev.point_metrics([0, 0], [0, 0])["f1"] == 0.0


def test_evaluate_detector_flat_dict_matches_hand_numbers_and_is_json_ready():
    frame = HAND.assign(score=HAND[ALARM_COL].astype(float))
    before = frame.copy(deep=True)
    out = ev.evaluate_detector(frame, HAND_WINDOWS, score_col="score", threshold=0.5, merge_gap=3)
    assert tuple(out) == ev.METRIC_KEYS
    # s1: alarms 10, 35 inside windows (tp 2), 4 outside (fp), 30 window rows -> fn 28; s2: tp 50, fn 10
    assert (out["point_tp"], out["point_fp"], out["point_fn"]) == (52, 4, 38)
    assert out["point_precision"] == pytest.approx(52 / 56) and out["point_recall"] == pytest.approx(52 / 90)
    assert out["event_f1"] == pytest.approx(0.6) and out["alarms"] == 56 and out["readings"] == 160
    json.dumps(out, allow_nan=False)
    pd.testing.assert_frame_equal(frame, before)  # input untouched
    table = ev.detector_table({"a": out, "b": {**out, "event_f1": 0.1}})
    assert list(table.index) == ["a", "b"] and list(table.columns[: len(ev.METRIC_KEYS)]) == list(
        ev.METRIC_KEYS
    )


def test_missing_readings_are_not_counted_as_point_misses():
    frame = HAND.assign(score=HAND[ALARM_COL].astype(float))
    frame.loc[(frame["sensor_id"] == "s2") & (frame["timestamp"] == at(59)), "value"] = np.nan
    out = ev.evaluate_detector(frame, HAND_WINDOWS, score_col="score", threshold=0.5)
    assert out["point_fn"] == 37 and out["readings"] == 159


def test_eval_start_excludes_alarms_and_windows_before_it():
    frame = scored(100, [5, 10, 22, 27, 35])
    w = windows(("s1", 10, 19, "spike"), ("s1", 20, 29, "drift"), ("s1", 30, 39, "stuck"))
    for start in (at(25), {"s1": at(25)}, pd.Series({"s1": at(25)}), {"s1": at(25), "other": at(0)}):
        t = ev.window_detections(frame, w, eval_start=start)
        # W1 (ends before 25) is dropped; W2 is clipped to start at 25, its alarm at 22 does not count
        assert list(t["start"]) == [at(20), at(30)] and list(t["eval_from"]) == [at(25), at(30)]
        assert list(t["time_to_detect_h"]) == [2.0, 5.0]
        m = ev.event_metrics(frame, w, eval_start=start)
        assert (m["windows"], m["detected"], m["false_alarm_events"]) == (2, 2, 0)  # alarm at 5 ignored
    assert ev.event_metrics(frame, w)["false_alarm_events"] == 1  # without eval_start it counts
    assert ev.event_metrics(frame, w, eval_start={"other": at(50)})["windows"] == 3  # s1: no exclusion
    out = ev.evaluate_detector(
        frame.assign(score=frame[ALARM_COL].astype(float)),
        w,
        score_col="score",
        threshold=0.5,
        eval_start=at(25),
    )
    assert out["readings"] == 75 and out["point_tp"] == 2 and out["point_fp"] == 0


def test_bad_inputs_fail_with_a_readable_message():
    with pytest.raises(ValueError, match="repeated"):
        ev.event_metrics(pd.concat([scored(5), scored(5)]), windows())
    with pytest.raises(ValueError, match="start > end"):
        ev.event_metrics(scored(5), windows(("s1", 3, 1, "spike")))
    with pytest.raises(ValueError, match="missing column"):
        ev.event_metrics(scored(5).drop(columns=ALARM_COL), windows())
    with pytest.raises(ValueError, match="no non-NaN"):
        ev.threshold_for_false_alarm_rate([np.nan], 0.01)


# --- threshold ------------------------------------------------------------------------------------
def test_threshold_is_the_higher_quantile_and_ignores_nan():
    scores = np.r_[np.arange(100.0), np.nan]
    thr = ev.threshold_for_false_alarm_rate(scores, 0.05)
    assert thr == 95.0 and ev.alarms_from_scores(scores, thr).sum() == 4
    assert not ev.alarms_from_scores(pd.Series([np.nan, 1.0]), 0.5).iloc[0]


@settings(max_examples=30, deadline=None)
@given(
    scores=st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=1, max_size=200),
    rate=st.floats(0, 1),
)
def test_threshold_alarms_at_most_rate_of_normal_scores(scores, rate):
    s = np.asarray(scores)
    assume((~np.isnan(s)).any())
    thr = ev.threshold_for_false_alarm_rate(s, rate)
    assert ev.alarms_from_scores(s, thr).sum() <= rate * (~np.isnan(s)).sum() + 1e-9


# --- event metric properties --------------------------------------------------------------------
N = 48


@st.composite
def cases(draw):
    alarms = draw(st.lists(st.integers(0, N - 1), max_size=20, unique=True))
    spans = draw(st.lists(st.tuples(st.integers(0, N - 1), st.integers(0, 8)), max_size=4))
    w = windows(*[("s1", a, min(a + d, N - 1), "spike") for a, d in spans])
    start = at(draw(st.integers(0, 12)))
    return scored(N, alarms), w, start, draw(st.integers(0, 4))


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_metrics_are_in_unit_interval(case):
    frame, w, start, gap = case
    out = ev.evaluate_detector(
        frame.assign(score=frame[ALARM_COL].astype(float)),
        w,
        score_col="score",
        threshold=0.5,
        eval_start=start,
        merge_gap=gap,
    )
    for key in ("point_precision", "point_recall", "point_f1", "event_precision", "event_recall", "event_f1"):
        assert 0 <= out[key] <= 1
    assert 0 <= out["early_detection_score"] <= 1 and out["detected"] <= out["windows"]
    credits = ev.window_detections(frame, w, eval_start=start)["early_detection_credit"]
    assert ((credits > 0) & (credits <= 1) | (credits == 0)).all()


@settings(max_examples=30, deadline=None)
@given(case=cases(), data=st.data())
def test_alarm_inside_an_undetected_window_never_lowers_recall(case, data):
    frame, w, start, gap = case
    table = ev.window_detections(frame, w, eval_start=start)
    missed = table[~table["detected"]]
    assume(len(missed))
    row = missed.iloc[data.draw(st.integers(0, len(missed) - 1))]
    lo, hi = int((row["eval_from"] - T0) / H), int((row["end"] - T0) / H)
    added = frame.copy()
    added.loc[data.draw(st.integers(lo, hi)), ALARM_COL] = True
    before = ev.event_metrics(frame, w, eval_start=start, merge_gap=gap)
    after = ev.event_metrics(added, w, eval_start=start, merge_gap=gap)
    assert after["event_recall"] > before["event_recall"]
    assert after["event_precision"] >= before["event_precision"]


@settings(max_examples=30, deadline=None)
@given(case=cases(), data=st.data())
def test_alarm_outside_windows_never_raises_precision_unless_it_joins_two_events(case, data):
    frame, w, start, gap = case
    inside = ev._inside_windows(frame, w)
    free = [i for i in range(N) if not inside[i] and at(i) >= start and not frame.loc[i, ALARM_COL]]
    assume(free)
    i = data.draw(st.sampled_from(free))
    added = frame.copy()
    added.loc[i, ALARM_COL] = True
    before = ev.event_metrics(frame, w, eval_start=start, merge_gap=gap)
    after = ev.event_metrics(added, w, eval_start=start, merge_gap=gap)
    assert after["detected"] == before["detected"]
    if after["false_alarm_events"] >= before["false_alarm_events"]:
        assert after["event_precision"] <= before["event_precision"]
    else:  # the one way the count drops: the new alarm bridges events on both sides
        fa = ev.false_alarm_events(frame, w, eval_start=start, merge_gap=gap)
        assert ((at(i) - fa["end"] <= gap * H) & (fa["end"] < at(i))).any()
        assert ((fa["start"] - at(i) <= gap * H) & (fa["start"] > at(i))).any()


def test_an_alarm_can_join_two_false_alarm_events_into_one():
    """A documented consequence of merging by gaps: filling the gap makes one event of two."""
    assert len(ev.false_alarm_events(scored(20, [2, 6]), windows(), merge_gap=2)) == 2
    assert len(ev.false_alarm_events(scored(20, [2, 4, 6]), windows(), merge_gap=2)) == 1
