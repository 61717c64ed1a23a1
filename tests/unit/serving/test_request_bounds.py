"""Requests whose cost grows with the time they span, not their size: /forecast history far after the
training end and /check_drift sensor batches spread over years (issue 16, items 1 and 2)."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ml.monitoring import drift
from ml.sensors import forecast as fc
from ml.serving import predict, schemas, settings
from ml.testing.models import sine_readings

FAST = {"season": 24, "horizon": 24, "max_horizon": 48, "folds": 3, "step": 24, "min_train": 168, "n_jobs": 1}


def _series(sensor_id: str, days: int = 14, seed: int = 0) -> pd.DataFrame:
    n, rng = 24 * days, np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sensor_id": sensor_id,
            "kind": "cpu_pct",
            "unit": "pct",
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="1h"),
            "value": 50 + 10 * np.sin(2 * np.pi * np.arange(n) / 24) + rng.normal(0, 0.3, n),
            "is_missing": False,
            "is_anomaly": False,
            "anomaly_kind": None,
        }
    )


@pytest.fixture(scope="module")
def forecaster() -> fc.SensorForecaster:
    series = pd.concat([_series("ets-01"), _series("naive-01", seed=1)], ignore_index=True)
    return fc.SensorForecaster().fit(series, FAST, selection={"ets-01": "ets", "naive-01": "seasonal_naive"})


def _request(sensor_id: str, timestamps: list[str]) -> schemas.ForecastRequest:
    history = [{"timestamp": t, "value": 1.0} for t in timestamps]
    return schemas.ForecastRequest.model_validate(
        {"items": [{"sensor_id": sensor_id, "horizon": 2, "history": history}]}, strict=False
    )


# --- item 1 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sensor_id", ["ets-01", "naive-01"])
def test_forecast_history_far_after_the_training_end_is_a_422_naming_the_field(forecaster, sensor_id):
    cap = settings.get().max_history_steps
    t0 = time.perf_counter()
    with pytest.raises(predict.ClientError) as err:
        predict.forecast(forecaster, _request(sensor_id, ["2099-12-31T23:00:00"]), cap)
    assert time.perf_counter() - t0 < 1.0
    assert err.value.status == 422 and err.value.loc == ["items", 0, "history"]
    assert "after the training end" in err.value.message and str(cap) in err.value.message


def test_forecast_history_within_the_bound_still_answers(forecaster):
    end = pd.Timestamp(forecaster.info().set_index("sensor_id").loc["ets-01", "train_end"])
    cap = settings.get().max_history_steps
    last = (end + pd.Timedelta(hours=cap)).isoformat()
    out = predict.forecast(
        forecaster, _request("ets-01", [(end + pd.Timedelta(hours=1)).isoformat(), last]), cap
    )
    assert len(out["results"][0]["forecast"]) == 2
    with pytest.raises(predict.ClientError):
        over = (end + pd.Timedelta(hours=cap + 1)).isoformat()
        predict.forecast(forecaster, _request("ets-01", [over]), cap)


# --- item 2 ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded_reference():
    ref = sine_readings(n=24 * 14)[["sensor_id", "timestamp", "value"]]
    return SimpleNamespace(
        name="sensor-anomaly",
        source=SimpleNamespace(version="1"),
        extras={"reference": ref, "reference_note": "test"},
    )


def _drift(readings: list[tuple[str, str]]) -> schemas.DriftRequest:
    body = {
        "domain": "sensors",
        "readings": [{"sensor_id": s, "timestamp": t, "value": 1.0} for s, t in readings],
    }
    return schemas.DriftRequest.model_validate(body, strict=False)


SPREAD = ["2024-01-01T00:00:00", "2024-01-01T00:00:01", "2024-01-01T00:00:02", "2034-01-01T00:00:00"]


def test_check_drift_over_decades_is_a_422_before_any_grid_is_built(loaded_reference):
    cfg = settings.get()
    t0 = time.perf_counter()
    with pytest.raises(predict.ClientError) as err:  # 75 years of the reference's 1 h step: over the cap
        predict.check_drift(
            _drift([("cpu-01", t) for t in [*SPREAD, "2099-01-01T00:00:00"]]), loaded_reference, cfg
        )
    assert time.perf_counter() - t0 < 1.0
    assert err.value.status == 422 and err.value.loc == ["readings"] and "grid cells" in err.value.message
    small = dataclasses.replace(cfg, max_drift_grid=1000)  # the batch: 10 years, 87k hourly cells
    with pytest.raises(predict.ClientError, match="grid cells"):
        predict.check_drift(_drift([("cpu-01", t) for t in SPREAD]), loaded_reference, small)
    t0 = time.perf_counter()  # under the default cap it answers, on the reference's step (not 1 s)
    out = predict.check_drift(_drift([("cpu-01", t) for t in SPREAD]), loaded_reference, cfg)
    assert out["rows"] == 4 and time.perf_counter() - t0 < 1.0


def test_check_drift_takes_the_step_from_the_reference(loaded_reference):
    ref = loaded_reference.extras["reference"]
    # readings one second apart would make a 1 s grid of the batch's own mode; the reference's is 1 h
    t = [f"2024-02-01T00:00:0{i}" for i in range(3)] + ["2024-02-03T00:00:00"]
    table = drift.check_drift("sensors", ref, _frame([("cpu-01", x) for x in t]), max_cells=1000)
    assert list(table["feature"]) == ["cpu-01"]
    levels = drift.SensorLevels().fit(ref)
    assert levels.step_ == pd.Timedelta("1h")
    assert len(levels.transform(_frame([("cpu-01", x) for x in t]), levels.step_)) == 49


def test_check_drift_names_an_unknown_sensor_first(loaded_reference):
    cfg = settings.get()
    with pytest.raises(predict.ClientError) as err:
        predict.check_drift(_drift([("nope-9", t) for t in SPREAD]), loaded_reference, cfg)
    assert "'nope-9' is not in the reference" in err.value.message


def _frame(readings: list[tuple[str, str]]) -> pd.DataFrame:
    return predict.readings_frame(_drift(readings).readings)
