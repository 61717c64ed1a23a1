"""Loading models for the service, in process: one bad model fails alone, copies on disk are checked
against a reachable registry, the drift reference is hashed, and what /models shows to whom
(issue 16, items 3, 8, 10 and 11)."""

from __future__ import annotations

import json

import pytest

from ml import registry
from ml.monitoring import reference
from ml.sensors import anomaly
from ml.serving import loading, runtime, schemas, settings
from ml.serving.table import Endpoint, ModelSpec
from ml.testing.models import SMALL_ANOMALY_PARAMS as PARAMS
from ml.testing.models import small_series


@pytest.fixture(scope="module")
def detector():
    return anomaly.fit_detector(small_series(), PARAMS)


def _register(name: str, detector, store):
    series = small_series()[["sensor_id", "timestamp", "value"]]
    return registry.log_and_register(
        name,
        detector,
        params={},
        metrics={"f1": 1.0},
        gates=[],
        reference=series,
        export_dir=store / "models",
    )


# --- item 3: any error resolving or loading one model fails that model only ---------------------------
def test_a_malformed_manifest_or_any_resolve_error_fails_that_model_only(tmp_path, monkeypatch, detector):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent.db'}")  # unreachable
    monkeypatch.setenv("OPSLAB_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    sha = registry.save_sklearn(detector, tmp_path / "saved")
    good = registry.export_model(
        "d-good",
        tmp_path / "saved",
        version="1",
        sha256=sha,
        run_id="r",
        metrics={},
        export_dir=tmp_path / "models",
    )
    manifest = json.loads((good / loading.MANIFEST).read_text())
    bad_json = registry.export_model(
        "a-bad-json",
        tmp_path / "saved",
        version="1",
        sha256=sha,
        run_id="r",
        metrics={},
        export_dir=tmp_path / "models",
    )
    (bad_json / loading.MANIFEST).write_text("{not json")
    na = registry.export_model(
        "b-na-metric",
        tmp_path / "saved",
        version="1",
        sha256=sha,
        run_id="r",
        metrics={},
        export_dir=tmp_path / "models",
    )
    (na / loading.MANIFEST).write_text(
        json.dumps({**manifest, "name": "b-na-metric", "metrics": {"f1": "n/a"}})
    )
    real_resolve = loading.resolve

    def resolve(name, *args, **kwargs):
        if name == "c-boom":
            raise RuntimeError("something nobody expected at /secret/path")
        return real_resolve(name, *args, **kwargs)

    monkeypatch.setattr(loading, "resolve", resolve)
    names = ("a-bad-json", "b-na-metric", "c-boom", "d-good")  # loaded in this order: the good one last
    rt = runtime.Runtime(
        settings.get(),
        models={n: ModelSpec(n, "sklearn", ("/x",), "test") for n in names},
        endpoints={"/x": Endpoint("/x", "c-boom", schemas.Empty, schemas.Stamped, lambda *a: {})},
    )
    rt.start(background=False)
    states = {n: rt.slot(n).state for n in names}
    assert states["d-good"] == "loaded", states
    assert {states[n] for n in names[:3]} <= {"failed", "unavailable"}, states
    assert "malformed" in rt.slot("a-bad-json").error and "malformed" in rt.slot("b-na-metric").error
    results = rt.reload()  # no exception: the same failures, as results
    assert [r["status"] for r in results] == ["failed", "failed", "failed", "unchanged"]

    # --- item 8: paths and raw errors for admin keys only; a 503 does not carry them either
    admin = {m.name: m for m in rt.models_info(detail=True)}
    other = {m.name: m for m in rt.models_info(detail=False)}
    assert admin["d-good"].uri == str(good) and "/secret/path" in admin["c-boom"].error
    assert other["d-good"].uri is None and other["d-good"].model_sha256 == sha
    assert all(str(tmp_path) not in json.dumps(m.model_dump()) for m in other.values())
    assert "/secret/path" not in other["c-boom"].error
    answer = rt.call("/x", schemas.Empty())
    assert answer.status_code == 503 and b"/secret/path" not in answer.body and b"c-boom" in answer.body


# --- item 10: copies on disk against a reachable registry; the reference is hashed; no `..` ----------
def test_a_copy_rewritten_with_a_matching_manifest_is_refused_when_the_registry_disagrees(store, detector):
    reg = _register("t-model", detector, store)
    copy = store / "models" / "t-model"
    src = loading.from_directory("t-model", copy, "path")  # the untouched export passes
    assert src.model_sha256 == reg.model_sha256 and src.reference_sha256
    ref, where = loading.load_reference(src)
    assert len(ref) == len(small_series()) and where.endswith(reference.REFERENCE_DIR)

    # an attacker with write access replaces the model and rewrites the manifest to match it
    other = anomaly.fit_detector(small_series(seed=5), {**PARAMS, "seed": 9})
    new_sha = registry.save_sklearn(other, store / "evil")
    (copy / registry.MODEL_FILE).write_bytes((store / "evil" / registry.MODEL_FILE).read_bytes())
    manifest = json.loads((copy / loading.MANIFEST).read_text())
    (copy / loading.MANIFEST).write_text(json.dumps({**manifest, "model_sha256": new_sha}))
    with pytest.raises(loading.ResolveError, match="does not match the registry"):
        loading.from_directory("t-model", copy, "path")
    (copy / loading.MANIFEST).write_text(json.dumps({**manifest, "model_sha256": new_sha, "version": "7"}))
    with pytest.raises(loading.ResolveError, match="has no t-model v7"):
        loading.from_directory("t-model", copy, "path")


def test_a_reference_rewritten_with_matching_metadata_is_refused(store, detector):
    _register("t-ref", detector, store)
    copy = store / "models" / "t-ref"
    src = loading.from_directory("t-ref", copy, "path")
    ref_dir = copy / reference.REFERENCE_DIR
    frame = reference.load_reference(ref_dir)
    frame.loc[:, "value"] = frame["value"] + 100  # shifted reference: /check_drift would answer wrongly
    reference.save_reference(frame, ref_dir, meta={"model": "t-ref"})  # its own sha256 matches again
    assert len(reference.load_reference(ref_dir)) == len(frame)
    with pytest.raises(loading.ResolveError, match="reference sha256"):
        loading.load_reference(src)
    unhashed = loading.Source("path", str(copy), "1", src.model_sha256, local_dir=copy)
    with pytest.raises(loading.ResolveError, match="no reference_sha256"):
        loading.load_reference(unhashed)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/reference.parquet", ".."])
def test_a_reference_file_name_outside_its_folder_is_refused(tmp_path, name):
    reference.save_reference(small_series()[["sensor_id", "timestamp", "value"]], tmp_path / "ref")
    meta = json.loads((tmp_path / "ref" / reference.REFERENCE_META).read_text())
    (tmp_path / "ref" / reference.REFERENCE_META).write_text(json.dumps({**meta, "file": name}))
    with pytest.raises(ValueError, match="plain file name"):
        reference.load_reference(tmp_path / "ref")


def test_an_unreachable_registry_leaves_the_manifest_as_the_only_check(tmp_path, monkeypatch, detector):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent.db'}")
    sha = registry.save_sklearn(detector, tmp_path / "saved")
    copy = registry.export_model(
        "t-off", tmp_path / "saved", version="3", sha256=sha, run_id="r", metrics={}, export_dir=tmp_path
    )
    assert loading.from_directory("t-off", copy, "exported-copy").model_sha256 == sha


# --- item 11: load_champion refuses a version without model_sha256 and loads the bytes it hashed ----------
def test_load_champion_refuses_a_version_without_model_sha256(store, detector):
    reg = _register("t-champ", detector, store)
    model, info = registry.load_champion("t-champ")
    assert info["model_sha256"] == reg.model_sha256
    registry.client().delete_model_version_tag("t-champ", reg.version, "model_sha256")
    with pytest.raises(ValueError, match="no model_sha256"):
        registry.load_champion("t-champ")


def test_the_loaders_deserialise_the_bytes_they_hashed(tmp_path, monkeypatch, detector):
    sha = registry.save_sklearn(detector, tmp_path / "m")

    def reopen(*args, **kwargs):
        raise AssertionError("the model file was opened again after its sha256 was checked")

    import skops.io  # the module ml.registry loads with (it imports it only when loading)

    monkeypatch.setattr(skops.io, "load", reopen)
    assert registry.load_sklearn(tmp_path / "m", sha) is not None
    with pytest.raises(ValueError, match="no model_sha256"):
        registry.load_sklearn(tmp_path / "m", None)
