"""Small real models in a scratch MLflow registry: for the service tests and `bench_service --scratch`.

Each model is trained with the project's own ml/ code on small synthetic data and registered with
`registry.log_and_register` (no gates, so each version becomes champion and is exported), exactly like the
notebooks do with the full data. Call with MLFLOW_TRACKING_URI / MLFLOW_ARTIFACT_ROOT already pointing at
the scratch registry.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

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


@dataclass
class ScratchData:
    sensors: (
        pd.DataFrame
    )  # gold-like sensor grid (sensor_id, kind, unit, timestamp, value, is_missing, is_anomaly)
    incidents: pd.DataFrame  # silver-like incidents with group_load_24h


def make_data(n_sensors: int = 4, days: int = 21, n_incidents: int = 2000, seed: int = 7) -> ScratchData:
    from ml import features, synth
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
    from ml import anomaly, registry

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
    from ml import forecast, registry

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
    from ml import registry, schemas
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


def build_registry(export_dir: Path, data: ScratchData | None = None, *, anomaly_versions: int = 2) -> dict:
    """Register every served model (sensor-anomaly twice, different seeds: v1 then champion v2)."""
    data = data or make_data()
    out = {"anomaly": []}
    for i in range(anomaly_versions):
        out["anomaly"].append(register_sensor_anomaly(data, export_dir, seed=SENSOR_PARAMS["seed"] + i))
    out["forecast"] = register_sensor_forecast(data, export_dir)
    out["sla"] = register_incident_sla(data, export_dir)
    out["ttr"] = register_incident_ttr(data, export_dir)
    out["data"] = data
    return out
