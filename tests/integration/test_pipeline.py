"""End to end on small parameters: generator -> ingest -> gold, the EDA notebook under papermill, and DVC itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ml.config import ROOT, load_params
from ml.data import ingest
from ml.data.gold import build_gold
from ml.data.synth import export
from ml.data.synth.incidents import make_incidents
from ml.data.synth.sensors import make_sensors
from ml.reports.notebooks import execute, recorded

pytestmark = pytest.mark.xdist_group("pipeline")

SMALL_GENERATE = {
    "seed": 7,
    "sensors": {
        "n_sensors": 8,
        "days": 21,
        "freq": "1h",
        "start": "2024-01-01",
        "missing_rate": 0.01,
        "anomalies_per_sensor": 2,
        "batch_every": "7D",
        "resend_overlap": "6h",
        "recalibration": {"at": "2024-01-15", "sensors": 2, "offset_pct": 0.08},
    },
    "incidents": {
        "n_incidents": 1500,
        "start": "2024-01-01",
        "months": 3,
        "batch_every": "14D",
        "rollout": {"at": "2024-03-01", "system": "ServiceNow HR portal", "share": 0.15},
    },
    "archive": {
        "n_sources": 6,
        "days": 300,
        "start": "2024-01-01",
        "policy_changes": 1,
        "noise": 0.25,
        "batch_every": "28D",
        "resend_overlap": "1D",
    },
}


def small_params(base: Path) -> dict:
    """params.yaml with every path under `base` and small data sizes."""
    params = load_params(ROOT / "params.yaml")
    params["generate"] = SMALL_GENERATE
    params["ingest"].update(landing=str(base / "landing"), root=str(base))
    params["features"].update(silver=str(base / "silver"), gold=str(base / "gold"))
    for section, cfg in params.items():  # every output a notebook writes goes under base/<section>/
        for key in ("charts", "metrics", "scores", "tables"):
            if isinstance(cfg, dict) and key in cfg:
                cfg[key] = str(base / section / Path(cfg[key]).name)
        if isinstance(cfg, dict) and "real_charts" in cfg:
            cfg["real_charts"] = str(base / section / "real")
    return params


def out(base: Path, section: str, key: str) -> Path:
    """Where the small project's params send a notebook output."""
    return Path(yaml.safe_load((base / "params.yaml").read_text())[section][key])


@pytest.fixture(scope="module")
def small_project(tmp_path_factory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("opslab")
    params = small_params(base)
    export.write_landing(params["generate"], base / "landing")
    counts = ingest.run(params)
    silver = {
        t: ingest.read_silver(base / "silver", t)
        for t in ("sensor_readings", "anomaly_windows", "incidents", "archive_activity")
    }
    gold = build_gold(silver, params["features"])
    (base / "gold").mkdir()
    for name, frame in gold.items():
        ingest.atomic_write_parquet(frame, base / "gold" / f"{name}.parquet")
    (base / "params.yaml").write_text(yaml.safe_dump(params))
    return base, counts


def test_generated_batches_land_in_silver_exactly(small_project):
    base, counts = small_project
    assert counts["silver_rows"]["quarantine"] == 0
    readings, windows = make_sensors(
        seed=7,
        **{k: v for k, v in SMALL_GENERATE["sensors"].items() if k not in ("batch_every", "resend_overlap")},
    )
    silver = ingest.read_silver(base / "silver", "sensor_readings")
    pd.testing.assert_frame_equal(
        silver.reset_index(drop=True),
        readings.sort_values(["sensor_id", "timestamp"]).reset_index(drop=True),
        check_dtype=False,
    )
    incidents = ingest.read_silver(base / "silver", "incidents")
    final = make_incidents(
        seed=7, **{k: v for k, v in SMALL_GENERATE["incidents"].items() if k != "batch_every"}
    )
    assert len(incidents) == len(final) == 1500
    # re-running the whole ingest is a no-op: every batch is already in the ledger
    again = ingest.run(small_params(base))
    assert all(b["skipped"] for b in again["batches"]) and again["silver_rows"] == counts["silver_rows"]


@pytest.mark.slow
def test_eda_notebook_runs_under_papermill_and_records_results(small_project, tmp_path):
    base, _ = small_project
    nb = execute(
        "01_eda", parameters={"PARAMS_FILE": str(base / "params.yaml"), "SMOKE": True}, out_dir=tmp_path
    )
    record = recorded(nb)
    assert record["smoke"] is True and record["sensors"] == 6 and record["sensor_kinds"] >= 3
    assert record["anomaly_kinds"] == 5 and record["incidents"] == 1500
    assert 0 < record["sla_breach_rate_pct"] < 100
    metrics_file = out(base, "eda", "metrics")
    assert json.loads(metrics_file.read_text()) == {k: v for k, v in record.items() if k != "real"}
    charts = {p.name for p in out(base, "eda", "charts").glob("*.png")}
    assert set(record["charts"]) == charts and "sensor_seasonality.png" in charts
    real_file = metrics_file.parent / "real" / metrics_file.name
    if record["real"]:  # ../shared/data present (CI): the real samples went through the same loaders
        assert record["real"]["uci_incidents"] == 3000 and record["real"]["nab_windows"] == 12
        assert json.loads(real_file.read_text()) == record["real"]
        real_charts = {p.name for p in out(base, "eda", "real_charts").glob("*.png")}
        assert set(record["real"]["charts"]) == real_charts and "uci_breach_rates.png" in real_charts
    else:  # a fresh clone: no real-data file is written, so none that is committed gets erased
        assert not real_file.exists()


@pytest.mark.slow
def test_dvc_repro_runs_the_data_stages_and_a_second_run_does_nothing(tmp_path):
    """The real DVC pipeline on a copy of the project with small params: repro, then repro again is a no-op."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    proj = tmp_path / "proj"
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith(("docs/", "data/")):
            (proj / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, proj / rel)
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["generate"] = SMALL_GENERATE
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OPSLAB_ROOT": str(proj),
    }
    dvc = [str(Path(sys.executable).parent / "dvc")]
    first = subprocess.run([*dvc, "repro", "featurize"], cwd=proj, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running stage 'ingest'" in first.stdout
    second = subprocess.run([*dvc, "repro", "featurize"], cwd=proj, env=env, capture_output=True, text=True)
    assert second.returncode == 0 and "Running stage" not in second.stdout, second.stdout
    status = subprocess.run([*dvc, "status", "featurize"], cwd=proj, env=env, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    metrics = json.loads((proj / "metrics" / "ingest.json").read_text())
    assert metrics["silver_rows"]["incidents"] == 1500


@pytest.mark.slow
def test_anomaly_notebook_trains_registers_and_scores(small_project, tmp_path, monkeypatch):
    """Notebook 02 under papermill with SMOKE: forest vs baselines, a registered champion, batch scores."""
    base, _ = small_project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    monkeypatch.setenv("OPSLAB_MODELS_DIR", str(tmp_path / "models"))
    nb = execute(
        "02_anomaly_isolation_forest",
        parameters={"PARAMS_FILE": str(base / "params.yaml"), "SMOKE": True},
        out_dir=tmp_path,
    )
    record = recorded(nb)
    forest = record["synthetic"]["isolation_forest"]
    assert set(record["synthetic"]) == {"isolation_forest", "rolling_zscore", "seasonal_residual"}
    assert 0 <= forest["event_f1"] <= 1 and forest["windows"] > 0
    assert record["registry"]["version"] == "1" and len(record["model_sha256"]) == 64
    scores = pd.read_parquet(out(base, "anomaly", "scores"))
    assert scores["score"].dropna().between(0, 1).all() and set(scores["model_version"]) == {"1"}
    assert (tmp_path / "models" / "sensor-anomaly" / "opslab_model.json").exists()
    assert (
        "detections.png" in record["charts"] and (out(base, "anomaly", "charts") / "detections.png").exists()
    )


@pytest.mark.slow
def test_archive_notebook_backtests_registers_and_scores(small_project, tmp_path, monkeypatch):
    """Notebook 10 under papermill with SMOKE: baselines and the model in one holdout table, a registered
    version, and batch scores the registered model reproduces."""
    base, _ = small_project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    monkeypatch.setenv("OPSLAB_MODELS_DIR", str(tmp_path / "models"))
    nb = execute(
        "10_archive_forecast",
        parameters={"PARAMS_FILE": str(base / "params.yaml"), "SMOKE": True},
        out_dir=tmp_path,
    )
    record = recorded(nb)
    assert record["smoke"] and record["sources"] == 6
    models = {key.split(".")[0] for key in record["holdout"]}
    assert {"seasonal_naive", "linear", "hgb"} <= models, models
    for key, row in record["holdout"].items():
        assert row["mae"] >= 0 and np.isfinite(row["r2"]), (key, row)
    assert record["registry"]["version"] == "1" and len(record["model_sha256"]) == 64
    scores = pd.read_parquet(out(base, "archive", "scores"))
    assert len(scores) == 6 and (scores.filter(like="_next_") >= 0).all().all()
    assert record["registry"]["gates"], "the gates' verdicts are recorded"
    exported = (tmp_path / "models" / "archive-forecast" / "opslab_model.json").exists()
    assert exported == bool(record["registry"]["promoted"])  # only a champion is exported


@pytest.mark.slow
def test_forecast_notebook_backtests_registers_and_the_registered_model_forecasts(
    small_project, tmp_path, monkeypatch
):
    """Notebook 03 under papermill with SMOKE; then the registered forecaster loads, verified, and answers."""
    base, _ = small_project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    monkeypatch.setenv("OPSLAB_MODELS_DIR", str(tmp_path / "models"))
    nb = execute(
        "03_forecast", parameters={"PARAMS_FILE": str(base / "params.yaml"), "SMOKE": True}, out_dir=tmp_path
    )
    record = recorded(nb)
    assert record["sensors"] == 3 and sum(record["chosen_models"].values()) == 3
    assert 0 <= record["goals"]["selected_holdout.cov80"] <= 1
    assert record["registry"]["version"] == "1" and len(record["model_sha256"]) == 64
    assert (out(base, "forecast", "charts") / "forecasts.png").exists()

    import mlflow

    from ml import registry

    client = registry.client()
    mv = client.get_model_version("sensor-forecast", "1")
    local = mlflow.artifacts.download_artifacts("models:/sensor-forecast/1")
    model = registry.load_forecaster(local, mv.tags["model_sha256"])
    sid = model.sensor_ids[0]
    fc = model.forecast(sid, 12)
    assert len(fc) == 12 and fc[["yhat", "lo80", "hi80", "lo95", "hi95"]].notna().all().all()
    assert (
        (fc["lo95"] <= fc["lo80"]).all()
        and (fc["lo80"] <= fc["yhat"]).all()
        and (fc["hi80"] <= fc["hi95"]).all()
    )
    pyfunc = mlflow.pyfunc.load_model("models:/sensor-forecast/1")
    answer = pyfunc.predict(pd.DataFrame({"sensor_id": [sid], "horizon": [5]}))
    assert len(answer) == 5 and set(answer["sensor_id"]) == {sid}
