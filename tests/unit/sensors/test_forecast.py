"""The forecaster artifact: forecasts on the grid with nested intervals, history without refit, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import config
from ml.sensors import backtest, forecast_models
from ml.sensors import forecast as fc

# Small, fast settings: daily season (24 h) so three weeks of hourly data is plenty; one process.
FAST = {"season": 24, "horizon": 24, "max_horizon": 48, "folds": 3, "step": 24, "min_train": 168, "n_jobs": 1}
BANDS = ["lo95", "lo80", "yhat", "hi80", "hi95"]


def check_forecast(frame: pd.DataFrame, start: pd.Timestamp, horizon: int, step: str = "1h") -> None:
    assert list(frame.columns) == fc.FORECAST_COLUMNS
    assert len(frame) == horizon
    expected = pd.date_range(start + pd.Timedelta(step), periods=horizon, freq=step)
    assert (pd.DatetimeIndex(frame["timestamp"]) == expected).all()
    assert not frame[BANDS].isna().any().any()
    for lower, upper in zip(BANDS, BANDS[1:], strict=False):
        assert (frame[lower] <= frame[upper]).all(), (lower, upper)


@pytest.fixture(scope="module")
def three_models(hourly) -> tuple[pd.DataFrame, fc.SensorForecaster]:
    """One sensor per candidate (selection fixed), one of them log-transformed (request rate)."""
    series = pd.concat(
        [
            hourly("cpu-01"),
            hourly("mem-01", trend=0.02, kind="memory_pct", seed=1),
            hourly("req-01", kind="request_rate", level=80, seed=2),
        ],
        ignore_index=True,
    )
    chosen = {"cpu-01": "seasonal_naive", "mem-01": "ets", "req-01": "prophet"}
    return series, fc.SensorForecaster().fit(series, FAST, selection=chosen)


# --- forecasts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sensor_id", ["cpu-01", "mem-01", "req-01"])
def test_forecast_continues_the_grid_with_nested_intervals(three_models, sensor_id):
    series, model = three_models
    out = model.forecast(sensor_id, 24)
    check_forecast(out, series["timestamp"].max(), 24)
    assert set(out["model"]) == {model.info().set_index("sensor_id").loc[sensor_id, "model"]}


def test_info_records_training_end_step_and_transform(three_models):
    series, model = three_models
    info = model.info().set_index("sensor_id")
    assert (pd.to_datetime(info["train_end"]) == series["timestamp"].max()).all()
    assert (info["step_seconds"] == 3600).all() and (info["season"] == 24).all()
    assert info["log"].to_dict() == {"cpu-01": False, "mem-01": False, "req-01": True}


def test_unknown_sensor_and_bad_horizon_are_named(three_models):
    _, model = three_models
    with pytest.raises(KeyError, match="nope-01"):
        model.forecast("nope-01", 24)
    for bad in (0, 49, 2.5, True, "24"):
        with pytest.raises(ValueError, match=r"horizon must be an integer in 1\.\.48"):
            model.forecast("cpu-01", bad)


def test_history_moves_the_forecast_without_refitting(three_models, monkeypatch):
    series, model = three_models
    end = series["timestamp"].max()
    ts = pd.date_range(end + pd.Timedelta("1h"), periods=30, freq="1h")
    history = pd.DataFrame({"timestamp": ts, "value": 80 + 10 * np.sin(2 * np.pi * np.arange(1, 31) / 24)})

    def no_refit(*args, **kwargs):
        raise AssertionError("forecast must not refit")

    for cls in (forecast_models.SeasonalNaiveModel, forecast_models.EtsModel, forecast_models.ProphetModel):
        monkeypatch.setattr(cls, "fit", no_refit)
    for sid in ("cpu-01", "mem-01"):
        before, after = model.forecast(sid, 24), model.forecast(sid, 24, history=history)
        check_forecast(after, ts[-1], 24)
        assert after["yhat"].mean() > before["yhat"].mean() + 15  # the level moved up by ~30
    naive = model.forecast("cpu-01", 24, history=history)  # seasonal naive: the latest day of history
    np.testing.assert_allclose(naive["yhat"], history["value"].iloc[-24:].to_numpy())
    check_forecast(model.forecast("req-01", 24, history=history), ts[-1], 24)  # Prophet: times move only
    stale = history.assign(timestamp=history["timestamp"] - pd.Timedelta("30h"))  # all at/before train end
    pd.testing.assert_frame_equal(model.forecast("mem-01", 24, history=stale), model.forecast("mem-01", 24))


def test_history_off_grid_or_of_another_sensor_is_refused(three_models):
    series, model = three_models
    end = series["timestamp"].max()
    with pytest.raises(ValueError, match="mem-01.*not on its"):
        model.forecast(
            "mem-01", 24, history=pd.DataFrame({"timestamp": [end + pd.Timedelta("90min")], "value": [1.0]})
        )
    other = pd.DataFrame({"sensor_id": ["cpu-01"], "timestamp": [end + pd.Timedelta("1h")], "value": [1.0]})
    with pytest.raises(ValueError, match="cpu-01"):
        model.forecast("mem-01", 24, history=other)


def test_save_load_round_trip_gives_identical_forecasts_without_pickle(three_models, tmp_path):
    series, model = three_models
    model.save(tmp_path / "fc")
    files = sorted(p.name for p in (tmp_path / "fc").iterdir())
    assert files == ["manifest.json", "models.json", "series.parquet"]
    loaded = fc.SensorForecaster.load(tmp_path / "fc")
    end = series["timestamp"].max()
    history = pd.DataFrame(
        {
            "timestamp": pd.date_range(end + pd.Timedelta("1h"), periods=5, freq="1h"),
            "value": [51, 55, np.nan, 60, 58.0],
        }
    )
    for sid in model.sensor_ids:
        pd.testing.assert_frame_equal(loaded.forecast(sid, 48), model.forecast(sid, 48), check_exact=True)
        pd.testing.assert_frame_equal(
            loaded.forecast(sid, 24, history=history),
            model.forecast(sid, 24, history=history),
            check_exact=True,
        )
    pd.testing.assert_frame_equal(loaded.info(), model.info())


def test_the_artifact_stores_the_model_params_only_and_loads_without_params_yaml(
    three_models, tmp_path, monkeypatch
):
    _, model = three_models
    model.save(tmp_path / "fc")
    manifest = json.loads((tmp_path / "fc" / "manifest.json").read_text())
    assert manifest["format"] == fc.ARTIFACT_FORMAT and manifest["version"] == fc.ARTIFACT_VERSION
    assert sorted(manifest["params"]) == sorted(forecast_models.MODEL_KEYS)  # no n_jobs, gates or paths

    def no_params_yaml(*args, **kwargs):
        raise AssertionError("loading must not read params.yaml")

    monkeypatch.setattr(config, "section", no_params_yaml)
    monkeypatch.setattr(forecast_models, "section", no_params_yaml)
    loaded = fc.SensorForecaster.load(tmp_path / "fc")
    assert loaded.params == manifest["params"]
    loaded.save(tmp_path / "again")
    for name in ("manifest.json", "models.json"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "fc" / name).read_bytes()


# --- selection by backtest ---------------------------------------------------------------------
def test_fit_selects_by_backtest_and_tables_agree(hourly):
    series = pd.concat(
        [hourly("mem-01", trend=0.05, noise=0.2), hourly("cpu-01", noise=1.0, seed=5)], ignore_index=True
    )
    params = {**FAST, "models": ["seasonal_naive", "ets"]}
    model = fc.SensorForecaster().fit(series, params)
    table = backtest.backtest_table(model.backtest_)
    best = table.loc[table.groupby("sensor_id")["mase"].idxmin()].set_index("sensor_id")["model"]
    chosen = model.info().set_index("sensor_id")["model"]
    assert chosen["mem-01"] == "ets" == best["mem-01"]
    assert set(table.columns) >= {
        "sensor_id",
        "kind",
        "model",
        "chosen_model",
        "mae",
        "mape",
        "smape",
        "mase",
        "cov80",
        "cov95",
    }
    assert (
        table.loc[table["is_chosen"], "model"].to_numpy()
        == chosen.loc[table.loc[table["is_chosen"], "sensor_id"]].to_numpy()
    ).all()
    overall = backtest.overall_table(model.backtest_).set_index("model")
    assert {"seasonal_naive", "ets", "selected", "selected_holdout"} <= set(overall.index)
    assert overall.loc["ets", "mase_mean"] < overall.loc["seasonal_naive", "mase_mean"]
    goals = backtest.goal_metrics(model.backtest_)
    assert 0 <= goals["selected.cov80"] <= 1 and "selected_holdout.share_mase_lt1" in goals


# --- real data ---------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_nab_slice_backtests_and_forecasts(shared_data: Path):
    from ml.data.gold import label_windows, sensor_grid
    from ml.data.sources import load_nab_dir

    readings, windows = load_nab_dir(shared_data / "nab_sample")
    sid = "realKnownCause/machine_temperature_system_failure"  # 5-minute readings
    readings = readings[readings["sensor_id"] == sid]
    readings = readings[readings["timestamp"] < readings["timestamp"].min() + pd.Timedelta(days=24)]
    series = backtest.resample_series(label_windows(sensor_grid(readings), windows), "1h")
    params = {**FAST, "season": "1D", "models": ["seasonal_naive", "ets"]}
    model = fc.SensorForecaster().fit(series, params)
    assert model.backtest_.scores["error"].isna().all()
    out = model.forecast(sid, 24)
    check_forecast(out, series["timestamp"].max(), 24)
    assert out["yhat"].between(0, 200).all()  # degrees Fahrenheit of an industrial machine
