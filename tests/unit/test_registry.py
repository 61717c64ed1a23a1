"""The MLflow registry (real SQLite store in a temp dir): versions, gates, aliases, sha256, canonical bytes."""

from __future__ import annotations

import pandas as pd
import pytest

from ml import registry
from ml.sensors import anomaly
from ml.testing.models import SMALL_ANOMALY_PARAMS as PARAMS
from ml.testing.models import small_series


def test_canonical_model_bytes_are_identical_across_fits(tmp_path):
    a = registry.save_sklearn(anomaly.fit_detector(small_series(), PARAMS), tmp_path / "a")
    b = registry.save_sklearn(anomaly.fit_detector(small_series(), PARAMS), tmp_path / "b")
    assert a == b == registry.sha256_file(tmp_path / "a" / registry.MODEL_FILE)
    c = registry.save_sklearn(anomaly.fit_detector(small_series(), {**PARAMS, "seed": 4}), tmp_path / "c")
    assert c != a


def test_saved_model_loads_with_the_trusted_list_and_scores_the_same(tmp_path):
    series = small_series()
    pipe = anomaly.fit_detector(series, PARAMS)
    sha = registry.save_sklearn(pipe, tmp_path / "m")
    loaded = registry.load_sklearn(tmp_path / "m", sha)
    pd.testing.assert_frame_equal(
        anomaly.score_readings(pipe, series), anomaly.score_readings(loaded, series)
    )


def test_tampered_model_file_is_refused(tmp_path):
    sha = registry.save_sklearn(anomaly.fit_detector(small_series(), PARAMS), tmp_path / "m")
    f = tmp_path / "m" / registry.MODEL_FILE
    f.write_bytes(f.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="does not match the registered model_sha256"):
        registry.load_sklearn(tmp_path / "m", sha)


def test_gates_decide_champion_and_a_worse_model_stays_challenger(store):
    series = small_series()
    pipe = anomaly.fit_detector(series, PARAMS)
    example = series[["sensor_id", "timestamp", "value"]].head(5)
    gates = [
        registry.Gate("event_f1", ">=", 0.5),
        registry.Gate("event_f1", ">=", vs_champion=True, tolerance=0.01),
    ]
    first = registry.log_and_register(
        "sensor-anomaly-test",
        pipe,
        params={"anomaly": PARAMS},
        metrics={"event_f1": 0.8},
        gates=gates,
        input_example=example,
        export_dir=store / "models",
    )
    assert first.promoted and first.alias == "champion" and first.version == "1"
    info = registry.champion_info("sensor-anomaly-test")
    assert info["version"] == "1" and info["model_sha256"] == first.model_sha256
    assert (store / "models" / "sensor-anomaly-test" / "opslab_model.json").exists()

    worse = registry.log_and_register(
        "sensor-anomaly-test",
        pipe,
        params={"anomaly": PARAMS},
        metrics={"event_f1": 0.7},
        gates=gates,
        input_example=example,
        export_dir=store / "models",
    )
    assert not worse.promoted and worse.alias == "challenger" and worse.version == "2"
    assert any("worse than champion" in g for g in worse.gates)
    assert registry.champion_info("sensor-anomaly-test")["version"] == "1"

    failing = registry.log_and_register(
        "sensor-anomaly-test",
        pipe,
        params={},
        metrics={"event_f1": 0.2},
        gates=gates,
        export_dir=store / "models",
    )
    assert not failing.promoted and any("FAILED" in g for g in failing.gates)

    model, meta = registry.load_champion("sensor-anomaly-test")
    assert meta["version"] == "1" and meta["model_sha256"] == first.model_sha256
    scored = anomaly.score_readings(model, series)
    assert scored["score"].between(0, 1).all()
    c = registry.client()
    run = c.get_run(first.run_id)
    assert run.data.tags["model_sha256"] == first.model_sha256 and run.data.tags["git_commit"]
    assert run.data.params["anomaly.n_estimators"] == "20"
    mv = c.get_model_version("sensor-anomaly-test", "1")
    assert mv.tags["model_sha256"] == first.model_sha256


def test_promote_and_rollback_move_champion_and_write_a_comparison(store):
    series = small_series()
    pipe = anomaly.fit_detector(series, PARAMS)
    gates = [
        registry.Gate("event_f1", ">=", 0.5),
        registry.Gate("event_f1", ">=", vs_champion=True, tolerance=0.0),
    ]

    def register(f1):
        return registry.log_and_register(
            "m",
            pipe,
            params={},
            metrics={"event_f1": f1},
            gates=gates,
            export_dir=store / "models",
            comparison_path=store / "comparison.md",
        )

    assert register(0.6).promoted and register(0.7).promoted  # v1, then v2 beats it
    table = (store / "comparison.md").read_text()
    assert "| event_f1 | 0.7 | 0.6 | +0.1 |" in table and "promoted to champion" in table
    third = register(0.65)  # worse than v2: challenger only
    assert not third.promoted and registry.champion_info("m")["version"] == "2"
    assert str(registry.client().get_model_version_by_alias("m", "challenger").version) == "3"
    assert "kept as challenger" in (store / "comparison.md").read_text()

    back = registry.rollback("m", export_dir=store / "models")
    assert (back["champion_before"], back["champion_now"]) == ("2", "1")
    assert registry.champion_info("m")["version"] == "1"
    manifest = (store / "models" / "m" / "opslab_model.json").read_text()
    assert '"version": "1"' in manifest
    with pytest.raises(ValueError, match="no earlier champion"):
        registry.rollback("m")
    moved = registry.promote("m", "3", export_dir=store / "models")
    assert moved["champion_now"] == "3" and registry.champion_info("m")["version"] == "3"
    assert registry.rollback("m", export_dir=store / "models")["champion_now"] == "1"


FIT_AND_SAVE = """
import sys
from pathlib import Path
from ml import registry
from ml.data.synth.incidents import make_incidents
from ml.features import add_group_load
from ml.incidents import sla
from ml.incidents.targets import time_split
inc = add_group_load(make_incidents(n_incidents=600, seed=1))
train, test = time_split(inc, 0.2)
model = sla.fit_sla(train, {"max_iter": 10})
sla.breach_probability(model, test)  # a transform re-sets the vectorizer's object id
print(registry.save_sklearn(model, Path(sys.argv[1])))
"""


def test_text_model_bytes_are_identical_across_processes(tmp_path):
    """sklearn's TF-IDF keeps `id(stop_words)`, which changes per process: it must not reach the file."""
    import subprocess
    import sys

    from ml.config import ROOT

    shas = [
        subprocess.run(
            [sys.executable, "-c", FIT_AND_SAVE, str(tmp_path / name)],
            capture_output=True, text=True, cwd=ROOT, check=True, timeout=300,
        ).stdout.split()[-1]
        for name in ("a", "b")
    ]  # fmt: skip
    assert shas[0] == shas[1] and len(shas[0]) == 64


def test_training_reference_travels_inside_the_model_version(store):
    """The reference saved at training time is part of the version: in `models:/`, in the exported copy
    (the service's fallback) and found by the service's loader for both; a tampered copy is refused."""
    import mlflow

    from ml.monitoring import reference
    from ml.serving import loading

    series = small_series()
    ref = reference.training_reference(series, "sensors", {"reference_rows": 100, "seed": 0})
    assert len(ref) == 100 and list(ref.columns) == ["sensor_id", "timestamp", "value"]
    assert ref["sensor_id"].value_counts().to_dict() == {"cpu-01": 50, "cpu-02": 50}  # stratified by sensor
    reg = registry.log_and_register(
        "sensor-anomaly-test",
        anomaly.fit_detector(series, PARAMS),
        params={},
        metrics={"event_f1": 0.8},
        gates=[],
        export_dir=store / "models",
        reference=ref,
    )
    downloaded = mlflow.artifacts.download_artifacts(f"models:/sensor-anomaly-test/{reg.version}")
    pd.testing.assert_frame_equal(reference.load_reference(f"{downloaded}/{reference.REFERENCE_DIR}"), ref)
    exported = store / "models" / "sensor-anomaly-test"
    assert reference.reference_info(exported / reference.REFERENCE_DIR)["model"] == "sensor-anomaly-test"
    run = registry.client().get_run(reg.run_id)
    assert run.data.tags["training.drift_reference_rows"] == "100"

    for source in (
        loading.from_registry("sensor-anomaly-test", "models:/sensor-anomaly-test@champion", "registry"),
        loading.from_directory("sensor-anomaly-test", exported, "export"),
    ):
        frame, where = loading.load_reference(source)
        pd.testing.assert_frame_equal(frame, ref, obj=where)

    data = exported / reference.REFERENCE_DIR / reference.REFERENCE_FILE
    data.write_bytes(data.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="does not match"):
        reference.load_reference(exported / reference.REFERENCE_DIR)
