"""Small real models in a scratch MLflow registry, and a real `bentoml serve` process on a free loopback
port: for the service tests and `bench_service`.

Each model is trained with the project's own ml/ code on small synthetic data and registered with
`registry.log_and_register` (no gates, so each version becomes champion and is exported), exactly like the
notebooks do with the full data. Call with MLFLOW_TRACKING_URI / MLFLOW_ARTIFACT_ROOT already pointing at
the scratch registry.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


# --- a real server process ----------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], log: Path, port: int, host: str = "127.0.0.1") -> subprocess.Popen:
    """`bentoml serve service:OpsLab` from the project root in its own process group, output to `log`."""
    from ml.config import ROOT

    cmd = [sys.executable, "-m", "bentoml", "serve", "service:OpsLab", "--host", host, "--port", str(port)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_server(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGINT to the whole process group (BentoML's workers too), SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# --- small models --------------------------------------------------------------------------------------
SENSOR_PARAMS = {
    "seed": 3,
    "train_fraction": 0.5,
    "calibration_fraction": 0.3,
    "false_alarm_rate": 0.01,
    "n_estimators": 30,
    "max_samples": 128,
    "short_window": 6,
    "long_window": 24,
}
FORECAST_PARAMS = {"season": 24, "horizon": 24, "max_horizon": 48, "folds": 3, "step": 24, "min_train": 168}
INCIDENT_PARAMS = {"max_iter": 40, "seed": 3, "text_components": 5, "n_threads": 1}
# the text models, small: a few thousand features, a short k grid (a few seconds each on one core)
TEXT_PARAMS = {
    "seed": 3,
    "max_iter": 200,
    "word_max_features": 3000,
    "char_max_features": 2000,
    "n_threads": 1,
}
SIMILAR_PARAMS = {"k": 5, "word_max_features": 3000, "n_threads": 1}
CLUSTER_PARAMS = {
    "seed": 3,
    "k_grid": [8, 12],
    "n_components": 20,
    "max_features": 2000,
    "silhouette_sample": 1000,
    "n_threads": 1,
}


@dataclass
class ScratchData:
    sensors: (
        pd.DataFrame
    )  # gold-like sensor grid (sensor_id, kind, unit, timestamp, value, is_missing, is_anomaly)
    incidents: pd.DataFrame  # silver-like incidents with group_load_24h


def make_data(n_sensors: int = 4, days: int = 21, n_incidents: int = 2000, seed: int = 7) -> ScratchData:
    from ml import features
    from ml.data import synth
    from ml.incidents import features as F

    readings, windows = synth.make_sensors(n_sensors=n_sensors, days=days, seed=seed)
    grid = features.label_windows(features.sensor_grid(readings), windows)
    incidents = F.add_group_load(synth.make_incidents(n_incidents=n_incidents, seed=seed))
    return ScratchData(grid, incidents)


def _reference(frame: pd.DataFrame, where: Path) -> Path:
    """The training reference logged with a model (what /check_drift compares with)."""
    from ml import monitoring

    return monitoring.save_reference(monitoring.reference_sample(frame, n=2000, seed=0), where)


def register_sensor_anomaly(data: ScratchData, export_dir: Path, **overrides):
    from ml import registry
    from ml.sensors import anomaly

    params = {**SENSOR_PARAMS, **overrides}
    pipe = anomaly.fit_detector(data.sensors, params)
    example = data.sensors[["sensor_id", "timestamp", "value"]].head(5)
    train = data.sensors[anomaly.training_rows(data.sensors, params["train_fraction"])]
    with tempfile.TemporaryDirectory() as tmp:
        ref = _reference(train[["sensor_id", "timestamp", "value"]], Path(tmp) / "reference")
        return registry.log_and_register(
            "sensor-anomaly",
            pipe,
            params=params,
            metrics={"event_f1": 0.5},
            gates=[],
            input_example=example,
            export_dir=export_dir,
            extra_artifacts={"reference": ref},
        )


def register_sensor_forecast(data: ScratchData, export_dir: Path):
    from ml import registry
    from ml.sensors import forecast

    sensors = sorted(data.sensors["sensor_id"].unique())
    chosen = {sid: ("ets" if i % 2 else "seasonal_naive") for i, sid in enumerate(sensors)}
    fc = forecast.SensorForecaster().fit(data.sensors, FORECAST_PARAMS, selection=chosen)
    example = pd.DataFrame({"sensor_id": sensors[:1], "horizon": [24]})
    return registry.log_and_register(
        "sensor-forecast",
        fc,
        params=FORECAST_PARAMS,
        metrics={"holdout_share_mase_lt1": 1.0},
        gates=[],
        input_example=example,
        export_dir=export_dir,
        saver=registry.save_forecaster,
    )


def incident_split(data: ScratchData):
    from ml.incidents import features as F

    return F.time_split(data.incidents, test_fraction=0.2)


def register_incident_sla(data: ScratchData, export_dir: Path):
    from ml import registry
    from ml.data import schemas
    from ml.incidents import sla

    train, _ = incident_split(data)
    model = sla.fit_sla(train, INCIDENT_PARAMS)
    threshold = sla.threshold_from_training(model, train, INCIDENT_PARAMS)
    with tempfile.TemporaryDirectory() as tmp:
        ref = _reference(train[schemas.OPEN_TIME_COLUMNS], Path(tmp) / "reference")
        return registry.log_and_register(
            "incident-sla",
            model,
            params=INCIDENT_PARAMS,
            metrics={"roc_auc": 0.8, "threshold": threshold},
            gates=[],
            export_dir=export_dir,
            extra_artifacts={"reference": ref},
        )


def register_incident_ttr(data: ScratchData, export_dir: Path):
    from ml import registry
    from ml.incidents import ttr

    train, _ = incident_split(data)
    model = ttr.fit_ttr(train, INCIDENT_PARAMS)
    return registry.log_and_register(
        "incident-ttr",
        model,
        params=INCIDENT_PARAMS,
        metrics={"coverage": 0.8},
        gates=[],
        export_dir=export_dir,
    )


def _register_classifier(name: str, fit, data: ScratchData, export_dir: Path):
    """A `PrecisionTargetClassifier` fitted on the earlier 80%; its coverage per head on the rest as metrics."""
    from ml import registry

    train, test = incident_split(data)
    model = fit(train, TEXT_PARAMS)
    frame = model.predict_frame(test)
    metrics = {f"{t}_coverage": float(1 - frame[f"{t}_abstain"].mean()) for t in model.target_names_}
    return registry.log_and_register(
        name,
        model,
        params=TEXT_PARAMS,
        metrics=metrics,
        gates=[],
        input_example=test[model.input_columns()].head(3),
        export_dir=export_dir,
    )


def register_incident_triage(data: ScratchData, export_dir: Path):
    from ml.incidents import triage

    return _register_classifier("incident-triage", triage.fit_triage, data, export_dir)


def register_incident_system_team(data: ScratchData, export_dir: Path):
    from ml.incidents import system_team

    return _register_classifier("incident-system-team", system_team.fit_system_team, data, export_dir)


def register_incident_similar(data: ScratchData, export_dir: Path):
    """The index of the resolved training incidents (the test period's tickets are the queries)."""
    from ml import registry
    from ml.incidents import similar

    train, test = incident_split(data)
    index = similar.fit_similar(train, SIMILAR_PARAMS)
    metrics = similar.evaluate_similar(index, test.head(200), ("assignment_group",), k=SIMILAR_PARAMS["k"])
    return registry.log_and_register(
        "incident-similar",
        index,
        params=SIMILAR_PARAMS,
        metrics={k: float(v) for k, v in metrics.items()},
        gates=[],
        input_example=test[index.input_columns()].head(3),
        export_dir=export_dir,
    )


def register_incident_clusters(data: ScratchData, export_dir: Path):
    from ml import registry
    from ml.incidents import clusters

    train, _ = incident_split(data)
    model = clusters.fit_clusterer(train, CLUSTER_PARAMS)
    return registry.log_and_register(
        "incident-clusters",
        model,
        params=CLUSTER_PARAMS,
        metrics={"silhouette": model.silhouette_, "k": float(model.k_)},
        gates=[],
        input_example=train[model.input_columns()].head(3),
        export_dir=export_dir,
    )


def build_registry(export_dir: Path, data: ScratchData | None = None, *, anomaly_versions: int = 2) -> dict:
    """Register every served model (sensor-anomaly twice, different seeds: v1 then champion v2)."""
    data = data or make_data()
    out = {"anomaly": []}
    for i in range(anomaly_versions):
        out["anomaly"].append(register_sensor_anomaly(data, export_dir, seed=SENSOR_PARAMS["seed"] + i))
    out["forecast"] = register_sensor_forecast(data, export_dir)
    out["sla"] = register_incident_sla(data, export_dir)
    out["ttr"] = register_incident_ttr(data, export_dir)
    out["triage"] = register_incident_triage(data, export_dir)
    out["system_team"] = register_incident_system_team(data, export_dir)
    out["similar"] = register_incident_similar(data, export_dir)
    out["clusters"] = register_incident_clusters(data, export_dir)
    out["data"] = data
    return out
