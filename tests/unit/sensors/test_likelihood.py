"""Causal score calibration: anomaly likelihood, hold suppression, range novelty."""

from __future__ import annotations

import numpy as np

from ml.sensors import likelihood as lk


def test_likelihood_is_high_only_where_the_raw_score_leaves_its_trailing_distribution():
    rng = np.random.default_rng(0)
    quiet, noisy = 0.4 + 0.01 * rng.standard_normal(600), 0.4 + 0.1 * rng.standard_normal(600)
    for raw in (quiet, noisy):
        jump = raw.copy()
        jump[500] += 8 * raw[:500].std()
        s = lk.anomaly_likelihood(jump, average=1, history=400, std_floor=0.001)
        assert s[500] > 0.5 and np.all((s >= 0) & (s <= 1))
        assert np.quantile(s[200:500], 0.99) < 0.4  # same meaning on a quiet and a noisy series


def test_likelihood_is_causal_and_uses_the_prior_before_enough_history():
    raw = np.random.default_rng(1).random(300)
    full = lk.anomaly_likelihood(raw, history=100, min_history=50)
    assert np.allclose(full[:200], lk.anomaly_likelihood(raw[:200], history=100, min_history=50))
    assert np.all(full[:50] == 0.0)
    assert lk.anomaly_likelihood([0.5, 5.0], min_history=50, prior=(0.5, 0.1))[1] == 1.0


def test_hold_keeps_only_new_peaks():
    s = np.array([0.1, 0.9, 0.8, 0.95, 0.2, 0.3, 0.9])
    assert list(lk.hold_suppression(s, 3)) == [0.1, 0.9, 0.0, 0.95, 0.0, 0.0, 0.0]
    assert list(lk.hold_suppression(s, 0)) == list(s)


def test_novelty_fires_outside_the_range_seen_so_far():
    v = np.array([1.0, 3.0, 2.0, 2.5, 5.0, 4.0, 0.0])
    n = lk.range_novelty(v, warmup=2)
    assert list(n > 0) == [False, False, False, False, True, False, True]
    assert lk.range_novelty([2.0, 10.0], seen=(0.0, 4.0))[1] == 1.0
