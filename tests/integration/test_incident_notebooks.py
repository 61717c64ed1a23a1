"""The incident and monitoring notebooks (04-09) under papermill with SMOKE on the small project, then the
batch scores of the open incidents. Its own xdist group, so it runs beside the sensor notebooks."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from test_pipeline import out, small_project  # noqa: F401 - small_project is a fixture

from ml.config import ROOT
from ml.data import ingest
from ml.reports.notebooks import execute, recorded

pytestmark = [pytest.mark.xdist_group("incident-notebooks"), pytest.mark.slow]


@pytest.fixture
def registry_env(tmp_path, monkeypatch):
    """A fresh MLflow registry and export dir per test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    monkeypatch.setenv("OPSLAB_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path


def test_sla_and_ttr_notebooks_register_and_open_incidents_get_scored(small_project, tmp_path, monkeypatch):  # noqa: F811
    """Notebooks 04 and 05 under papermill with SMOKE, then the batch scores of every open incident name
    the model versions that produced them."""
    base, _ = small_project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    monkeypatch.setenv("OPSLAB_MODELS_DIR", str(tmp_path / "models"))
    params = {"PARAMS_FILE": str(base / "params.yaml"), "SMOKE": True}
    sla_record = recorded(execute("04_sla_breach", parameters=params, out_dir=tmp_path))
    assert set(sla_record["synthetic"]) == {"model", "uncalibrated", "logistic", "majority"}
    assert (
        0.5 < sla_record["headline"]["roc_auc"] <= 1 and sla_record["synthetic"]["majority"]["roc_auc"] == 0.5
    )
    assert sla_record["registry"]["version"] == "1" and len(sla_record["model_sha256"]) == 64
    assert (out(base, "sla", "charts") / "reliability.png").exists()
    ttr_record = recorded(execute("05_time_to_resolve", parameters=params, out_dir=tmp_path))
    h = ttr_record["headline"]
    assert (
        0 < h["coverage"] <= 1 and "baseline_mae_p50_hours" in h and ttr_record["registry"]["version"] == "1"
    )

    from ml import registry

    for name, rec in (("incident-sla", sla_record), ("incident-ttr", ttr_record)):
        if not rec["registry"]["promoted"]:  # small data may miss a gate: promote by hand, as a user can
            registry.promote(name, "1", export_dir=tmp_path / "models")  # never the project's models/
    scores_file = tmp_path / "open_incidents.parquet"
    run = subprocess.run(
        [sys.executable, "-m", "ml.incidents.scoring", "--silver", str(base / "silver"), "--out", str(scores_file)],
        capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    scores = pd.read_parquet(scores_file)
    silver = ingest.read_silver(base / "silver", "incidents")
    assert set(scores["number"]) == set(
        silver.loc[silver["resolved_at"].isna() & silver["made_sla"].isna(), "number"]
    )
    assert len(scores) > 0 and scores["p_breach"].between(0, 1).all()
    assert (scores["ttr_p10_hours"] <= scores["ttr_p50_hours"]).all()
    assert (scores["ttr_p50_hours"] <= scores["ttr_p90_hours"]).all()
    assert set(scores["sla_model_version"]) == {"1"} and set(scores["ttr_model_sha256"]) == {
        h and ttr_record["model_sha256"]
    }


def test_triage_clustering_and_system_team_notebooks_register(small_project, registry_env):  # noqa: F811
    base, _ = small_project
    params = {"PARAMS_FILE": str(base / "params.yaml"), "SMOKE": True}
    triage = recorded(execute("07_triage", parameters=params, out_dir=registry_env))
    assert triage["registry"]["version"] == "1" and len(triage["model_sha256"]) == 64
    assert (out(base, "triage", "charts") / "comparison.md").exists()
    team = recorded(execute("08_system_team", parameters=params, out_dir=registry_env))
    assert team["registry"]["version"] == "1" and len(team["model_sha256"]) == 64
    clusters = recorded(execute("06_clustering", parameters=params, out_dir=registry_env))
    assert clusters["registry"]["version"] == "1" and len(clusters["model_sha256"]) == 64


def test_drift_monitoring_notebook_records_first_detections(small_project, registry_env):  # noqa: F811
    base, _ = small_project
    record = recorded(
        execute("09_drift_monitoring", parameters={"PARAMS_FILE": str(base / "params.yaml"), "SMOKE": True},
                out_dir=registry_env)
    )  # fmt: skip
    assert record["smoke"] is True
    assert (out(base, "monitoring", "charts")).exists()
