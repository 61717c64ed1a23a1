"""Shared pytest fixtures.

Real-data tests take `shared_data` and carry the `realdata` marker, e.g.::

    @pytest.mark.realdata
    def test_nab_sample_loads(shared_data):
        readings, windows = load_nab_dir(shared_data / "nab_sample")

Run only them with `pytest -m realdata`, or skip them with `-m "not realdata"`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ml.config import ROOT, SHARED_DATA

# in-process services in tests log no predictions into the project's data/ (real servers get a tmp folder)
os.environ.setdefault("OPSLAB_PREDICTION_LOG", "off")


def _project_state() -> dict[str, tuple[int, int]]:
    """(size, mtime) of what a user's `make all` produced: the registry and the exported champions."""
    paths = [ROOT / "mlflow.db", *sorted((ROOT / "models").glob("*/*"))]
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def project_state_untouched():
    """The suite works in temporary registries and export dirs only: it must never change the project's
    own `mlflow.db` or `models/` (a smoke model once replaced an exported champion through a default path)."""
    before = _project_state()
    yield
    after = _project_state()
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert not changed, f"the test suite changed the project's own files: {changed[:5]}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (real data samples); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present (CI has it; a fresh clone does not)")
    return SHARED_DATA


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A scratch MLflow registry (SQLite + artifacts) in the test's tmp dir."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    return tmp_path
