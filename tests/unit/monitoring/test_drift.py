"""PSI properties (finite, zero on itself, order-only for numbers, its noise floor) and the service's
`check_drift`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.data.synth.sensors import make_sensors
from ml.monitoring import drift

FAST = settings(max_examples=40, deadline=None)

finite = st.floats(-1e6, 1e6, allow_nan=False)
samples = st.lists(st.one_of(finite, st.just(float("nan"))), min_size=1, max_size=200)
labels = st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=1, max_size=200)


# --- PSI --------------------------------------------------------------------------------------


@FAST
@given(samples, samples)
def test_psi_is_finite_and_non_negative(a, b):
    value = drift.psi(np.array(a), np.array(b))
    assert np.isfinite(value) and value >= 0


@FAST
@given(labels, labels)
def test_categorical_psi_is_non_negative_and_zero_on_itself(a, b):
    ra, rb = pd.Series(a, dtype=object), pd.Series(b, dtype=object)
    assert drift.psi(ra, rb) >= 0
    assert drift.psi(ra, ra) == pytest.approx(0.0, abs=1e-12)


@FAST
@given(samples)
def test_psi_of_a_sample_with_itself_is_zero(a):
    assert drift.psi(np.array(a), np.array(a)) == pytest.approx(0.0, abs=1e-12)


@FAST
@given(st.integers(0, 10_000), st.floats(1.0, 3.0))
def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift(seed, shift):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=3000), rng.normal(size=3000)
    assert drift.psi(a, b) < 0.05 and drift.psi(b, a) < 0.05  # symmetric sanity: both ways small
    c = rng.normal(shift, 1.0, size=3000)
    assert drift.psi(a, c) > 0.25 and drift.psi(c, a) > 0.25  # ... and both ways large


@FAST
@given(st.integers(0, 10_000))
def test_numeric_psi_only_depends_on_order(seed):
    """Quantile bins: a monotone transform of both samples leaves PSI unchanged."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=500), rng.normal(0.3, 1.2, size=500)
    assert drift.psi(np.exp(a), np.exp(b)) == pytest.approx(drift.psi(a, b), rel=1e-9, abs=1e-12)


def test_noise_floor_predicts_psi_without_drift():
    rng = np.random.default_rng(0)
    values = [drift.psi(rng.normal(size=2000), rng.normal(size=300)) for _ in range(100)]
    assert np.mean(values) == pytest.approx(drift.psi_noise_floor(2000, 300), rel=0.3)
    small = [drift.psi(rng.normal(size=2000), rng.normal(size=50)) for _ in range(100)]
    assert np.mean(small) > drift.psi_noise_floor(2000, 50) > 0.1  # 50 records look "drifted" at 10 bins


def test_missing_values_are_a_bin_of_their_own_unless_dropped():
    ref = np.arange(1000.0)
    cur = np.where(np.arange(1000) % 3 == 0, np.nan, np.arange(1000.0))
    assert drift.psi(ref, cur) > 0.25  # a third missing is a shift
    assert drift.psi(ref, cur, dropna=True) < 0.01


def test_psi_table_names_missing_columns_and_refuses_empty_batches():
    ref = pd.DataFrame({"x": np.arange(100.0), "kind": ["a", "b"] * 50})
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['kind'\]"):
        drift.psi_table(ref, ref[["x"]])
    with pytest.raises(ValueError, match="empty"):
        drift.psi_table(ref, ref.iloc[:0])
    table = drift.psi_table(ref, pd.DataFrame({"x": np.arange(100.0) + 50, "kind": ["a"] * 100}))
    assert list(table.columns) == ["feature", "psi", "drifted", "kind"]
    assert table["psi"].is_monotonic_decreasing
    assert dict(zip(table["feature"], table["kind"], strict=True)) == {"x": "numeric", "kind": "categorical"}
    assert table["drifted"].all()


# --- the service's check ---------------------------------------------------------------------


def test_check_drift_for_the_service_uses_the_sensors_in_the_batch():
    readings, _ = make_sensors(n_sensors=4, days=21, seed=0, anomalies_per_sensor=0, recalibration=None)
    t = readings["timestamp"]
    reference = readings[t < "2024-01-15"]
    batch = readings[(t >= "2024-01-15") & (readings["sensor_id"] == "temp-01")].copy()
    table = drift.check_drift("sensors", reference, batch, threshold=0.1)
    assert table["feature"].tolist() == ["temp-01"]
    batch["value"] *= 1.3  # a unit or calibration change
    assert drift.check_drift("sensors", reference, batch)["drifted"].all()
    with pytest.raises(ValueError, match="not in the reference"):
        drift.check_drift("sensors", reference, batch.assign(sensor_id="new-01"))
