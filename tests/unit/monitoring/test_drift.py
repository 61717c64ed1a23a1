"""Drift monitoring: PSI properties, references saved with a model, and drift found where it was injected.

The drift properties run over generator seeds: a batch after a known injected shift (sensor
recalibration, a new system's rollout) is flagged, a batch from the reference distribution is not.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml import monitoring
from ml.data import synth

FAST = settings(max_examples=40, deadline=None)
SEEDS = settings(max_examples=4, deadline=None, derandomize=True)  # each example generates data: keep few

finite = st.floats(-1e6, 1e6, allow_nan=False)
samples = st.lists(st.one_of(finite, st.just(float("nan"))), min_size=1, max_size=200)
labels = st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=1, max_size=200)


# --- PSI --------------------------------------------------------------------------------------


@FAST
@given(samples, samples)
def test_psi_is_finite_and_non_negative(a, b):
    value = monitoring.psi(np.array(a), np.array(b))
    assert np.isfinite(value) and value >= 0


@FAST
@given(labels, labels)
def test_categorical_psi_is_non_negative_and_zero_on_itself(a, b):
    ra, rb = pd.Series(a, dtype=object), pd.Series(b, dtype=object)
    assert monitoring.psi(ra, rb) >= 0
    assert monitoring.psi(ra, ra) == pytest.approx(0.0, abs=1e-12)


@FAST
@given(samples)
def test_psi_of_a_sample_with_itself_is_zero(a):
    assert monitoring.psi(np.array(a), np.array(a)) == pytest.approx(0.0, abs=1e-12)


@FAST
@given(st.integers(0, 10_000), st.floats(1.0, 3.0))
def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift(seed, shift):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=3000), rng.normal(size=3000)
    assert monitoring.psi(a, b) < 0.05 and monitoring.psi(b, a) < 0.05  # symmetric sanity: both ways small
    c = rng.normal(shift, 1.0, size=3000)
    assert monitoring.psi(a, c) > 0.25 and monitoring.psi(c, a) > 0.25  # ... and both ways large


@FAST
@given(st.integers(0, 10_000))
def test_numeric_psi_only_depends_on_order(seed):
    """Quantile bins: a monotone transform of both samples leaves PSI unchanged."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=500), rng.normal(0.3, 1.2, size=500)
    assert monitoring.psi(np.exp(a), np.exp(b)) == pytest.approx(monitoring.psi(a, b), rel=1e-9, abs=1e-12)


def test_noise_floor_predicts_psi_without_drift():
    rng = np.random.default_rng(0)
    values = [monitoring.psi(rng.normal(size=2000), rng.normal(size=300)) for _ in range(100)]
    assert np.mean(values) == pytest.approx(monitoring.psi_noise_floor(2000, 300), rel=0.3)
    small = [monitoring.psi(rng.normal(size=2000), rng.normal(size=50)) for _ in range(100)]
    assert np.mean(small) > monitoring.psi_noise_floor(2000, 50) > 0.1  # 50 records look "drifted" at 10 bins


def test_missing_values_are_a_bin_of_their_own_unless_dropped():
    ref = np.arange(1000.0)
    cur = np.where(np.arange(1000) % 3 == 0, np.nan, np.arange(1000.0))
    assert monitoring.psi(ref, cur) > 0.25  # a third missing is a shift
    assert monitoring.psi(ref, cur, dropna=True) < 0.01


def test_psi_table_names_missing_columns_and_refuses_empty_batches():
    ref = pd.DataFrame({"x": np.arange(100.0), "kind": ["a", "b"] * 50})
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['kind'\]"):
        monitoring.psi_table(ref, ref[["x"]])
    with pytest.raises(ValueError, match="empty"):
        monitoring.psi_table(ref, ref.iloc[:0])
    table = monitoring.psi_table(ref, pd.DataFrame({"x": np.arange(100.0) + 50, "kind": ["a"] * 100}))
    assert list(table.columns) == ["feature", "psi", "drifted", "kind"]
    assert table["psi"].is_monotonic_decreasing
    assert dict(zip(table["feature"], table["kind"], strict=True)) == {"x": "numeric", "kind": "categorical"}
    assert table["drifted"].all()


# --- reference datasets -----------------------------------------------------------------------


def test_reference_sample_is_seeded_fixed_size_and_stratified():
    frame = pd.DataFrame({"g": ["a"] * 700 + ["b"] * 250 + [None] * 50, "v": np.arange(1000)})
    s1 = monitoring.reference_sample(frame, n=100, seed=3, stratify="g")
    s2 = monitoring.reference_sample(frame, n=100, seed=3, stratify="g")
    pd.testing.assert_frame_equal(s1, s2)
    assert len(s1) == 100
    assert s1["g"].value_counts(dropna=False).to_dict() == {"a": 70, "b": 25, None: 5}
    assert s1["v"].is_monotonic_increasing  # the frame's own order is kept
    assert len(monitoring.reference_sample(frame, n=5000)) == 1000
    with pytest.raises(ValueError, match="stratify column 'nope'"):
        monitoring.reference_sample(frame, n=10, stratify="nope")


def test_saved_reference_round_trips_and_detects_tampering(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": ["x", None, "z"]})
    out = monitoring.save_reference(frame, tmp_path / "ref", meta={"model": "incident-sla"})
    info = json.loads((out / "reference.json").read_text())
    assert info["rows"] == 3 and info["columns"] == ["a", "b"] and info["model"] == "incident-sla"
    pd.testing.assert_frame_equal(monitoring.load_reference(out), frame)
    (out / "reference.parquet").write_bytes(b"not the saved data")
    with pytest.raises(ValueError, match="sha256"):
        monitoring.load_reference(out)


# --- drift where it was injected --------------------------------------------------------------
RECAL = {"at": "2024-01-29", "sensors": 2, "offset_pct": 0.08}


@SEEDS
@given(st.integers(0, 2**16))
def test_sensor_recalibration_is_detected_and_a_normal_week_is_not(seed):
    """Weeks 2-3 of week-over-week changes are the reference; week 4 is normal, week 5 follows the step."""
    kw = dict(n_sensors=4, days=35, seed=seed, missing_rate=0.0, anomalies_per_sensor=0, recalibration=RECAL)
    readings, _ = synth.make_sensors(**kw)
    shifted = synth.sensor_shifts(**{k: v for k, v in kw.items() if k != "anomalies_per_sensor"})
    changes = monitoring.sensor_changes(readings, "7D")
    weeks = dict(monitoring.time_windows(changes, "7D", start="2024-01-08"))
    reference = pd.concat([weeks[pd.Timestamp("2024-01-08")], weeks[pd.Timestamp("2024-01-15")]])
    threshold = 0.5  # params: monitoring.sensors.psi_threshold
    normal = monitoring.psi_table(reference, weeks[pd.Timestamp("2024-01-22")], threshold, dropna=True)
    after = monitoring.psi_table(reference, weeks[pd.Timestamp("2024-01-29")], threshold, dropna=True)
    assert not normal["drifted"].any(), normal
    flagged = set(after.loc[after["drifted"], "feature"])
    assert flagged and flagged <= set(shifted["sensor_id"]), after
    # temperature, memory and request-rate sensors are quiet enough for an 8% step to stand out
    clear = {s for s in shifted["sensor_id"] if not s.startswith("cpu")}
    assert clear <= flagged, after


@SEEDS
@given(st.integers(0, 2**16))
def test_rollout_is_detected_by_evidently_and_psi_and_a_reference_batch_is_not(seed):
    rollout = {"at": "2024-05-01", "system": "HR portal", "share": 0.15}
    incidents = synth.make_incidents(n_incidents=2000, months=6, seed=seed, rollout=rollout)
    frame = monitoring.incident_monitor_frame(incidents)
    before = (incidents["opened_at"] < "2024-05-01").to_numpy()
    held_out = np.random.default_rng(seed).random(len(frame)) < 0.3  # same period, same distribution
    reference, same, after = frame[before & ~held_out], frame[before & held_out], frame[~before]

    shifted = monitoring.drift_report(reference, after, summary_preset=False)
    assert shifted["columns"]["cmdb_ci"]["drifted"] and shifted["columns"]["assignment_group"]["drifted"]
    assert shifted["share_drifted"] > 0
    assert not any(
        c["drifted"]
        for c in monitoring.drift_report(reference, same, summary_preset=False)["columns"].values()
    )

    psi_after = monitoring.psi_table(reference, after).set_index("feature")["psi"]
    assert psi_after["cmdb_ci"] > 0.25 and psi_after["assignment_group"] > 0.25
    assert monitoring.psi_table(reference, same)["psi"].max() < 0.1


def test_drift_over_time_and_first_detection_find_the_rollout_window():
    rollout = {"at": "2024-04-01", "system": "HR portal", "share": 0.2}
    incidents = synth.make_incidents(n_incidents=2500, months=6, seed=1, rollout=rollout)
    frame = monitoring.incident_monitor_frame(incidents).assign(opened_at=incidents["opened_at"])
    reference = frame[frame["opened_at"] < "2024-03-01"].drop(columns="opened_at")
    windows = [
        (s, w.drop(columns="opened_at"))
        for s, w in monitoring.time_windows(frame, "14D", "opened_at", "2024-01-01")
    ]
    table = monitoring.drift_over_time(reference, windows, threshold=0.1, min_rows=50)
    assert {"window_start", "feature", "psi", "drifted", "share_drifted"} <= set(table.columns)
    first = monitoring.first_detection(table, injected_at="2024-04-01").set_index("feature")
    assert first.loc["cmdb_ci", "first_drift_after"] == pd.Timestamp("2024-03-25")  # the window holding 04-01
    assert 0 < first.loc["cmdb_ci", "delay_days"] <= 14
    cmdb = table[table["feature"] == "cmdb_ci"].set_index("window_start")["psi"]
    assert cmdb[cmdb.index >= "2024-04-08"].min() > cmdb[cmdb.index < "2024-03-01"].max()
    assert len(monitoring.drift_share(table)) == len(windows)


def test_check_drift_for_the_service_uses_the_sensors_in_the_batch():
    readings, _ = synth.make_sensors(n_sensors=4, days=21, seed=0, anomalies_per_sensor=0, recalibration=None)
    t = readings["timestamp"]
    reference = readings[t < "2024-01-15"]
    batch = readings[(t >= "2024-01-15") & (readings["sensor_id"] == "temp-01")].copy()
    table = monitoring.check_drift("sensors", reference, batch, threshold=0.1)
    assert table["feature"].tolist() == ["temp-01"]
    batch["value"] *= 1.3  # a unit or calibration change
    assert monitoring.check_drift("sensors", reference, batch)["drifted"].all()
    with pytest.raises(ValueError, match="not in the reference"):
        monitoring.check_drift("sensors", reference, batch.assign(sensor_id="new-01"))


def test_rolling_performance_tracks_a_model_that_degrades():
    rng = np.random.default_rng(0)
    t = pd.date_range("2024-01-01", periods=4000, freq="2h")
    y = rng.random(len(t)) < 0.3
    good = np.where(y, 0.8, 0.2) + rng.normal(0, 0.1, len(t))
    score = np.where(t < "2024-06-01", good, rng.random(len(t)))  # the model stops working in June
    frame = pd.DataFrame({"t": t, "p": np.clip(score, 0, 1), "y": y})
    perf = monitoring.rolling_performance(frame, time="t", score="p", label="y", window="28D", step="7D")
    early = perf[perf["window_end"] < "2024-05-01"]
    late = perf[perf["window_end"] > "2024-07-01"]
    assert early["roc_auc"].min() > 0.9 and late["roc_auc"].max() < 0.7
    assert late["brier"].min() > early["brier"].max()
    reg = pd.DataFrame({"t": t, "pred": 5.0, "y": 5.0 + rng.normal(0, 1, len(t)), "lo": 3.0, "hi": 7.0})
    perf = monitoring.rolling_performance(
        reg, time="t", score="pred", label="y", kind="regression", lower="lo", upper="hi"
    )
    assert perf["coverage"].between(0.9, 1.0).all() and perf["mae"].between(0.6, 1.0).all()
