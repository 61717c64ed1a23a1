"""The registry pins a model's pip requirements itself, so MLflow never infers them in a subprocess."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import numpy as np
import pytest

from ml import registry
from ml.config import ROOT

PIN = re.compile(r"^[a-z0-9][a-z0-9-]*==[0-9][^\s=;,<>!~]*$")


@pytest.mark.parametrize("flavor", ["sklearn", "forecaster"])
def test_every_requirement_is_an_exact_sorted_pin(flavor):
    reqs = registry.pip_requirements(flavor)
    assert reqs, "no requirements"
    assert all(PIN.match(r) for r in reqs), [r for r in reqs if not PIN.match(r)]
    names = [r.split("==")[0] for r in reqs]
    assert names == sorted(set(names)), "unsorted or duplicated"
    assert {"mlflow", "numpy", "pandas", "scikit-learn", "scipy"} <= set(names)
    assert registry.pip_requirements(flavor) == reqs  # deterministic (and cached)


def test_flavors_pin_what_they_load():
    sk = {r.split("==")[0] for r in registry.pip_requirements("sklearn")}
    fc = {r.split("==")[0] for r in registry.pip_requirements("forecaster")}
    assert "skops" in sk
    assert {"prophet", "statsmodels"} <= fc
    with pytest.raises(ValueError, match="unknown model flavor"):
        registry.pip_requirements("xgboost")


def test_scikit_learn_is_pinned_to_the_installed_version():
    import sklearn

    assert f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in registry.pip_requirements()
    assert f"scikit-learn=={sklearn.__version__}" in registry.pip_requirements()


def test_the_returned_list_is_a_copy():
    registry.pip_requirements().append("junk")
    assert "junk" not in registry.pip_requirements()


def test_pins_match_uv_lock():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"] if "version" in p}
    for flavor in ("sklearn", "forecaster"):
        for req in registry.pip_requirements(flavor):
            name, version = req.split("==")
            assert locked.get(name) == version, f"{req}: uv.lock has {locked.get(name)}"


def test_saving_a_model_does_not_infer_requirements(tmp_path, monkeypatch):
    """MLflow swallows errors in its inference (falls back to defaults), so record calls instead of raising."""
    import mlflow.models
    import mlflow.utils.environment
    import mlflow.utils.requirements_utils
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    calls: list[str] = []

    def spy(name):
        def record(*args, **kwargs):
            calls.append(name)
            return []

        return record

    # mlflow.sklearn.save_model calls `mlflow.models.infer_pip_requirements`, which runs `uv export` or
    # `_infer_requirements` -> `_capture_imported_modules` (the `_capture_modules.py` subprocess).
    monkeypatch.setattr(mlflow.models, "infer_pip_requirements", spy("infer_pip_requirements"))
    monkeypatch.setattr(mlflow.utils.environment, "_infer_requirements", spy("_infer_requirements"))
    monkeypatch.setattr(mlflow.utils.environment, "export_uv_requirements", spy("export_uv_requirements"))
    monkeypatch.setattr(
        mlflow.utils.requirements_utils, "_capture_imported_modules", spy("_capture_imported_modules")
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    sha = registry.save_sklearn(model, tmp_path / "model")

    assert calls == []
    assert (tmp_path / "model" / "requirements.txt").read_text().split() == registry.pip_requirements()
    assert sha == registry.sha256_file(tmp_path / "model" / registry.MODEL_FILE)
