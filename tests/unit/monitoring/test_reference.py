"""References saved with a model: a seeded, stratified sample that round-trips and detects tampering."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml.monitoring import reference


def test_reference_sample_is_seeded_fixed_size_and_stratified():
    frame = pd.DataFrame({"g": ["a"] * 700 + ["b"] * 250 + [None] * 50, "v": np.arange(1000)})
    s1 = reference.reference_sample(frame, n=100, seed=3, stratify="g")
    s2 = reference.reference_sample(frame, n=100, seed=3, stratify="g")
    pd.testing.assert_frame_equal(s1, s2)
    assert len(s1) == 100
    assert s1["g"].value_counts(dropna=False).to_dict() == {"a": 70, "b": 25, None: 5}
    assert s1["v"].is_monotonic_increasing  # the frame's own order is kept
    assert len(reference.reference_sample(frame, n=5000)) == 1000
    with pytest.raises(ValueError, match="stratify column 'nope'"):
        reference.reference_sample(frame, n=10, stratify="nope")


def test_saved_reference_round_trips_and_detects_tampering(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": ["x", None, "z"]})
    out = reference.save_reference(frame, tmp_path / "ref", meta={"model": "incident-sla"})
    info = json.loads((out / "reference.json").read_text())
    assert info["rows"] == 3 and info["columns"] == ["a", "b"] and info["model"] == "incident-sla"
    pd.testing.assert_frame_equal(reference.load_reference(out), frame)
    (out / "reference.parquet").write_bytes(b"not the saved data")
    with pytest.raises(ValueError, match="sha256"):
        reference.load_reference(out)


def test_training_reference_keeps_the_models_outputs_beside_each_sampled_row():
    t = pd.date_range("2024-01-01", periods=300, freq="h")
    records = pd.DataFrame({"sensor_id": ["s1", "s2", "s3"] * 100, "timestamp": t, "value": np.arange(300.0)})
    records.index = records.index + 1000  # any index: outputs are joined on it
    scores = pd.DataFrame({"score": records["value"] / 1000.0}, index=records.index)
    cfg = {"reference_rows": 60, "seed": 1}
    ref = reference.training_reference(records, "sensors", cfg, outputs=scores)
    assert list(ref.columns) == ["sensor_id", "timestamp", "value", "score"] and len(ref) == 60
    np.testing.assert_allclose(ref["score"], ref["value"] / 1000.0)  # each row keeps its own score
    plain = reference.training_reference(records, "sensors", cfg)
    pd.testing.assert_frame_equal(plain, ref.drop(columns="score"))  # the same rows either way
    with pytest.raises(ValueError, match="are record columns"):
        reference.training_reference(records, "sensors", cfg, outputs=records[["value"]])
    with pytest.raises(ValueError, match="not indexed like records"):
        reference.training_reference(records, "sensors", cfg, outputs=scores.reset_index(drop=True))
