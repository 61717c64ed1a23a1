"""Small real models in a scratch MLflow registry, for the service tests and `bench_service`.

Each model is trained with the project's own ml/ code on small synthetic data and registered with
`registry.log_and_register` (no gates, so each version becomes champion and is exported), exactly like the
notebooks do with the full data. Call with MLFLOW_TRACKING_URI / MLFLOW_ARTIFACT_ROOT already pointing at
the scratch registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml import config, registry
from ml.archive import backtest as archive_backtest
from ml.archive.model import log_residuals
from ml.archive.targets import next_period_targets
from ml.data import schemas
from ml.data.gold import archive_grid, label_windows, sensor_grid
from ml.data.synth.archive import make_archive
from ml.data.synth.incidents import make_incidents
from ml.data.synth.sensors import make_sensors
from ml.features import add_group_load
from ml.incidents import clusters, similar, sla, system_team, triage, ttr
from ml.incidents.targets import time_split
from ml.monitoring import reference
from ml.sensors import anomaly, forecast

DETECTOR_TEST_PARAMS = {  # the detector's behaviour tests and the NAB runner's
    "seed": 1,
    "train_fraction": 0.5,
    "false_alarm_rate": 0.01,
    "n_estimators": 50,
    "max_samples": 128,
    "short_window": 6,
    "long_window": 24,
}


SMALL_ANOMALY_PARAMS = {  # a small forest for registry and model-card tests
    "seed": 3,
    "train_fraction": 0.5,
    "false_alarm_rate": 0.02,
    "n_estimators": 20,
    "max_samples": 64,
    "short_window": 6,
    "long_window": 24,
}


ARCHIVE_PARAMS = {"n_threads": 1, "hgb": {"max_iter": 30, "max_leaf_nodes": 7}, "seed": 3}


def small_series(seed=0, n=24 * 14) -> pd.DataFrame:
    """Two clean hourly cpu sensors as a labelled gold grid (no anomaly windows)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h")
    parts = [
        pd.DataFrame(
            {
                "sensor_id": sid,
                "kind": "cpu_pct",
                "unit": "pct",
                "timestamp": ts,
                "value": 40 + 10 * np.sin(2 * np.pi * np.arange(n) / 24) + rng.normal(0, 1, n),
            }
        )
        for sid in ("cpu-01", "cpu-02")
    ]
    return label_windows(
        sensor_grid(pd.concat(parts, ignore_index=True)),
        pd.DataFrame(columns=["sensor_id", "start", "end", "anomaly_kind"]),
    )


def sine_readings(n=72, sensors=("cpu-01", "cpu-02"), drop=(), freq="1h") -> pd.DataFrame:
    """Raw readings of daily-sine cpu sensors (one reading per `freq`), with rows `drop` removed."""
    rows = []
    for k, sid in enumerate(sensors):
        ts = pd.date_range("2024-01-01", periods=n, freq=freq)
        vals = 50 + 10 * np.sin(2 * np.pi * np.arange(n) / 24) + k
        rows.append(
            pd.DataFrame({"sensor_id": sid, "kind": "cpu_pct", "unit": "pct", "timestamp": ts, "value": vals})
        )
    df = pd.concat(rows, ignore_index=True)
    return df.drop(index=list(drop)).reset_index(drop=True)


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
FORECAST_PARAMS = {  # n_jobs 1: four small sensors fit faster in-process than in a pool of fresh workers
    "season": 24,
    "horizon": 24,
    "max_horizon": 48,
    "folds": 3,
    "step": 24,
    "min_train": 168,
    "n_jobs": 1,
}
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
    archive: pd.DataFrame | None = None  # gold-like daily archive activity (archive_grid)


def make_data(n_sensors: int = 4, days: int = 21, n_incidents: int = 2000, seed: int = 7) -> ScratchData:
    readings, windows = make_sensors(n_sensors=n_sensors, days=days, seed=seed)
    grid = label_windows(sensor_grid(readings), windows)
    incidents = add_group_load(make_incidents(n_incidents=n_incidents, seed=seed))
    archive = archive_grid(make_archive(seed=seed, n_sources=4, days=200, policy_changes=1)[0])
    return ScratchData(grid, incidents, archive)


def _reference(frame: pd.DataFrame) -> pd.DataFrame:
    """The training reference saved with a model (what /check_drift compares with), hashed with it."""
    return reference.reference_sample(frame, n=2000, seed=0)


def register_sensor_anomaly(data: ScratchData, export_dir: Path, **overrides):
    params = {**SENSOR_PARAMS, **overrides}
    pipe = anomaly.fit_detector(data.sensors, params)
    example = data.sensors[["sensor_id", "timestamp", "value"]].head(5)
    train = data.sensors[anomaly.training_rows(data.sensors, params["train_fraction"])]
    return registry.log_and_register(
        "sensor-anomaly",
        pipe,
        params=params,
        metrics={"event_f1": 0.5},
        gates=[],
        input_example=example,
        export_dir=export_dir,
        reference=_reference(train[["sensor_id", "timestamp", "value"]]),
    )


def register_sensor_forecast(data: ScratchData, export_dir: Path):
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
    return time_split(data.incidents, test_fraction=0.2)


def register_incident_sla(data: ScratchData, export_dir: Path):
    train, test = incident_split(data)
    model = sla.fit_sla(train, INCIDENT_PARAMS)
    threshold = sla.threshold_from_training(model, train, INCIDENT_PARAMS)
    measured = sla.evaluate_sla(model, test)  # on the later 20%, like the real stage
    return registry.log_and_register(
        "incident-sla",
        model,
        params=INCIDENT_PARAMS,
        metrics={"roc_auc": measured["roc_auc"], "brier": measured["brier"], "threshold": threshold},
        gates=[],
        export_dir=export_dir,
        reference=_reference(train[schemas.OPEN_TIME_COLUMNS]),
    )


def register_incident_ttr(data: ScratchData, export_dir: Path):
    train, test = incident_split(data)
    model = ttr.fit_ttr(train, INCIDENT_PARAMS)
    measured = ttr.evaluate_ttr(model, test)  # on the later 20%, like the real stage
    return registry.log_and_register(
        "incident-ttr",
        model,
        params=INCIDENT_PARAMS,
        metrics={"coverage": measured["coverage"], "median_ae_p50_hours": measured["median_ae_p50_hours"]},
        gates=[],
        export_dir=export_dir,
    )


def _register_classifier(name: str, fit, data: ScratchData, export_dir: Path):
    """A `PrecisionTargetClassifier` fitted on the earlier 80%; its coverage per head on the rest as metrics."""

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
    return _register_classifier("incident-triage", triage.fit_triage, data, export_dir)


def register_incident_system_team(data: ScratchData, export_dir: Path):
    return _register_classifier("incident-system-team", system_team.fit_system_team, data, export_dir)


def register_incident_similar(data: ScratchData, export_dir: Path):
    """The index of the resolved training incidents (the test period's tickets are the queries)."""

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


def register_archive_forecast(data: ScratchData, export_dir: Path):
    """A small archive forecaster (few trees) with intervals from its in-sample log residuals."""
    cfg = {
        **ARCHIVE_PARAMS,
        **{k: v for k, v in config.section("archive").items() if k not in ARCHIVE_PARAMS},
    }
    targets = next_period_targets(data.archive, cfg["horizons"])
    model = archive_backtest.forecaster(cfg, "hgb").fit(data.archive, targets)
    pred = model.predict(data.archive)
    model.set_intervals(
        {o: log_residuals(targets[o], pred[o])[targets[o].notna().to_numpy()] for o in model.outputs()}
    )
    return registry.log_and_register(
        "archive-forecast",
        model,
        params={"archive": {k: cfg[k] for k in ARCHIVE_PARAMS}},
        metrics={"n_train_rows": float(model.n_train_rows_)},
        gates=[],
        input_example=data.archive.drop(columns="is_filled").head(3),
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
    if data.archive is not None:
        out["archive"] = register_archive_forecast(data, export_dir)
    out["data"] = data
    return out


# the DVC stage -> the scratch registrar of the model it trains (the loop test's retrain command)
STAGE_REGISTRARS = {
    "anomaly": register_sensor_anomaly,
    "forecast": register_sensor_forecast,
    "sla": register_incident_sla,
    "ttr": register_incident_ttr,
    "triage": register_incident_triage,
    "system_team": register_incident_system_team,
    "clustering": register_incident_clusters,
    "archive": register_archive_forecast,
}


def main(argv: list[str] | None = None) -> int:
    """`python -m ml.testing.models --export-dir DIR [--seed N] STAGE ...`: register a new version of each
    stage's model in the registry of MLFLOW_TRACKING_URI, trained on scratch data of that seed: a stand-in
    for `dvc repro STAGE` where a test runs the retrain job (`operations.retrain.command`)."""
    import argparse  # only the command line needs it

    ap = argparse.ArgumentParser(prog="python -m ml.testing.models", description=main.__doc__.split("\n")[0])
    ap.add_argument("stages", nargs="+", choices=sorted(STAGE_REGISTRARS))
    ap.add_argument("--export-dir", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    data = make_data(seed=args.seed)
    for stage in args.stages:
        reg = STAGE_REGISTRARS[stage](data, args.export_dir)
        print(f"{stage}: {reg.name} v{reg.version} ({'champion' if reg.promoted else 'not promoted'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
