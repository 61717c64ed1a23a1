"""The abstaining classifier: per-class thresholds reach the target precision, any matrix and label type."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from ml.incidents.abstain import ABSTAIN, PrecisionTargetClassifier, calibration_split, precision_thresholds


def test_precision_thresholds_by_hand():
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.9, 0.4])
    pred = np.array(["a", "a", "a", "a", "a", "b", "b"], dtype=object)
    truth = np.array(["a", "a", "b", "a", "b", "a", "b"], dtype=object)
    t = precision_thresholds(conf, pred, truth, ["a", "b", "c"], 0.75)
    # class a, from the top: 1/1, 2/2, 2/3, 3/4 (>= .75), 3/5 -> the lowest threshold reaching .75 is 0.6
    assert t.loc["a", "threshold"] == 0.6 and t.loc["a", "covered"] == 4 and t.loc["a", "precision"] == 0.75
    assert np.isinf(t.loc["b", "threshold"]) and "never reaches precision 0.75" in t.loc["b", "reason"]
    assert np.isinf(t.loc["c", "threshold"]) and "never predicted" in t.loc["c", "reason"]
    # ties enter together: a cut inside a run of equal confidences is not allowed
    tied = precision_thresholds(np.array([0.7, 0.7]), np.array(["a", "a"]), np.array(["a", "b"]), ["a"], 0.75)
    assert np.isinf(tied.loc["a", "threshold"])
    # a minimum number of supporting predictions
    few = precision_thresholds(conf, pred, truth, ["a"], 0.75, min_predictions=5)
    assert np.isinf(few.loc["a", "threshold"])


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.floats(0, 1), st.sampled_from("ab"), st.sampled_from("ab")), min_size=1, max_size=40
    ),
    target=st.floats(0.3, 1.0),
)
def test_the_threshold_is_the_lowest_cut_reaching_the_target(data, target):
    conf = np.array([d[0] for d in data])
    pred, truth = np.array([d[1] for d in data], dtype=object), np.array([d[2] for d in data], dtype=object)
    table = precision_thresholds(conf, pred, truth, ["a", "b"], target)
    for c in "ab":
        mask = pred == c
        cuts = [t for t in np.unique(conf[mask]) if (truth[mask & (conf >= t)] == c).mean() >= target - 1e-12]
        thr = table.loc[c, "threshold"]
        assert (min(cuts) == thr) if cuts else np.isinf(thr)


def test_the_calibration_slice_keeps_a_row_on_each_side():
    assert (
        calibration_split(10, 0.2) == 8 and calibration_split(2, 0.9) == 1 and calibration_split(2, 0.01) == 1
    )
    with pytest.raises(ValueError, match="calibration_fraction"):
        calibration_split(10, 1.0)


def test_the_classifier_is_generic_over_any_matrix_and_label_type():
    """features='passthrough': a numeric matrix in time order, integer labels (answered as strings)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    model = clone(PrecisionTargetClassifier(features="passthrough")).fit(X, y)
    assert list(model.classes_) == ["0", "1", "2"] and model.input_columns() == []
    frame = model.predict_frame(X[:50])
    assert set(frame["prediction"]) <= {"0", "1", "2", ABSTAIN}
    assert (frame["abstain"] == (frame["confidence"] < frame["threshold"])).all()
    with pytest.raises(ValueError, match="rows"):
        PrecisionTargetClassifier(features="passthrough").fit(X, y[:-1])
