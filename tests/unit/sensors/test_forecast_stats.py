"""ARIMA (harmonics + SARIMAX errors) and MSTL: exact rebuild from JSON state, blanks, and better than
seasonal naive where the series has short memory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml.sensors import forecast_models as fm
from ml.sensors.forecast_stats import ArimaModel, MstlModel

CFG = fm.forecast_params({"season": 24, "horizon": 24})


def series(n: int = 24 * 21, seed: int = 0, phi: float = 0.85) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """A daily cycle plus AR(1) noise: the noise's memory is what seasonal naive cannot use."""
    rng = np.random.default_rng(seed)
    noise = np.zeros(n)
    for t in range(1, n):
        noise[t] = phi * noise[t - 1] + rng.standard_normal()
    t = np.arange(n)
    return 50 + 10 * np.sin(2 * np.pi * t / 24) + noise, pd.date_range("2024-01-01", periods=n, freq="1h")


@pytest.mark.parametrize("cls", [ArimaModel, MstlModel])
def test_a_model_rebuilt_from_its_json_state_forecasts_the_same(cls):
    y, times = series()
    y[100:130] = np.nan  # a blank day in training
    model = cls.fit(y[:-48], times[:-48], 24, CFG)
    state = json.loads(json.dumps(model.state()))
    again = cls.from_state(state, y[:-48])
    future = times[-24:]
    for extra in (None, y[-48:-24]):
        a, b = model.predict(24, future, extra), again.predict(24, future, extra)
        np.testing.assert_allclose(a[0], b[0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(a[1], b[1], rtol=0, atol=1e-9)
        assert np.isfinite(a[0]).all() and (a[1] > 0).all()


def mean_abs_errors(cls, make, season: int, cfg) -> tuple[float, float]:
    """Mean absolute 24-step error of `cls` and of seasonal naive over four seeds."""
    errors = {"model": [], "naive": []}
    for seed in range(4):
        y, times = make(seed)
        train, test = y[:-24], y[-24:]
        yhat, _ = cls.fit(train, times[:-24], season, cfg).predict(24, times[-24:], None)
        naive, _ = fm.SeasonalNaiveModel.fit(train, times[:-24], season, cfg).predict(24, times[-24:], None)
        errors["model"].append(np.abs(yhat - test).mean())
        errors["naive"].append(np.abs(naive - test).mean())
    return np.mean(errors["model"]), np.mean(errors["naive"])


def test_arima_uses_the_short_memory_seasonal_naive_cannot():
    model, naive = mean_abs_errors(ArimaModel, lambda seed: series(seed=seed), 24, CFG)
    assert model < 0.9 * naive


def test_mstl_keeps_a_daily_and_a_weekly_shape_without_copying_last_weeks_noise():
    def weekly(seed):
        rng = np.random.default_rng(seed)
        t = np.arange(24 * 7 * 10)
        y = (
            50
            + 8 * np.sin(2 * np.pi * t / 24)
            + 5 * np.sin(2 * np.pi * t / 168)
            + 2 * rng.standard_normal(len(t))
        )
        return y, pd.date_range("2024-01-01", periods=len(t), freq="1h")

    model, naive = mean_abs_errors(MstlModel, weekly, 168, fm.forecast_params({"season": 168, "horizon": 24}))
    assert model < 0.8 * naive  # ten weeks: each weekly position averaged over ten cycles


def test_arima_chooses_its_order_by_aic_from_the_configured_list():
    y, times = series()
    model = ArimaModel.fit(
        y, times, 24, fm.forecast_params({"arima": {**CFG["arima"], "orders": [[0, 0, 0], [1, 0, 0]]}})
    )
    assert model.state()["order"] == [1, 0, 0]  # AR(1) noise: white noise loses on AIC
    assert model.state()["periods"] == [24.0]  # the day; the 24-step season is the same cycle


def test_too_short_a_training_is_refused_by_name():
    y, times = series(n=30)
    with pytest.raises(ValueError, match="arima needs"):
        ArimaModel.fit(y, times, 24, CFG)
    with pytest.raises(ValueError, match="mstl needs"):
        MstlModel.fit(y, times, 24, CFG)
