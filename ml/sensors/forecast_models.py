"""Forecast params and the candidate models (seasonal naive, ETS, ARIMA, MSTL, Prophet) with their intervals.

Each candidate fits on one sensor's values, forecasts `horizon` steps with a standard deviation per step,
and rebuilds itself from a JSON state (no pickle). `ml.sensors.forecast` explains the choices.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from ml.config import section
from ml.sensors.forecast_base import ets_model, fill_gaps, is_int, quiet_statsmodels
from ml.sensors.forecast_stats import ArimaModel, MstlModel

MODEL_ORDER = (
    "seasonal_naive",
    "ets",
    "arima",
    "mstl",
    "prophet",
)  # simplest first: ties go to the earlier one
LEVELS = (80, 95)
Z = {level: NormalDist().inv_cdf(0.5 + level / 200) for level in LEVELS}
# What is fitted (stored in the artifact) and how to run it (kept out, so the artifact's bytes do not depend on it).
MODEL_KEYS = (
    "models",
    "season",
    "horizon",
    "max_horizon",
    "folds",
    "step",
    "min_train",
    "max_train",
    "mask_anomalies",
    "log_kinds",
    "select_tolerance",
    "seed",
    "ets",
    "arima",
    "prophet",
)
RUNTIME_KEYS = ("n_jobs",)


# --- params -------------------------------------------------------------------------------------
def forecast_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `forecast:` params (given keys over params.yaml's section), checked so a typo fails before any fitting."""
    return checked_params(section("forecast", params))


def checked_params(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of complete forecast params with the models in MODEL_ORDER; a missing key or a bad value fails."""
    cfg = dict(cfg)
    missing = sorted(set(MODEL_KEYS) - set(cfg))
    if missing:
        raise ValueError(f"forecast params: missing key(s) {missing}")
    models = list(cfg["models"])
    bad = [m for m in models if m not in MODEL_ORDER]
    if bad or not models or len(set(models)) != len(models):
        raise ValueError(f"forecast params: models must be distinct names from {MODEL_ORDER}, got {models}")
    cfg["models"] = [m for m in MODEL_ORDER if m in models]
    for key, low in (("horizon", 1), ("max_horizon", 1), ("folds", 1), ("step", 1), ("min_train", 2)):
        if not is_int(cfg[key]) or cfg[key] < low:
            raise ValueError(f"forecast params: {key} must be an integer >= {low}, got {cfg[key]!r}")
    if cfg["horizon"] > cfg["max_horizon"]:
        raise ValueError(
            f"forecast params: horizon {cfg['horizon']} exceeds max_horizon {cfg['max_horizon']}"
        )
    if cfg["max_train"] is not None and (not is_int(cfg["max_train"]) or cfg["max_train"] < cfg["min_train"]):
        raise ValueError(
            f"forecast params: max_train must be null or an integer >= min_train, got {cfg['max_train']!r}"
        )
    if not isinstance(cfg["select_tolerance"], int | float) or cfg["select_tolerance"] < 0:
        raise ValueError(f"forecast params: select_tolerance must be >= 0, got {cfg['select_tolerance']!r}")
    return cfg


# --- candidate models ---------------------------------------------------------------------------
class SeasonalNaiveModel:
    """Seasonal naive: each step repeats the reading one season earlier; sd from its in-sample errors."""

    name = "seasonal_naive"

    def __init__(self, values: np.ndarray, season: int, sigma: float) -> None:
        self.values, self.season, self.sigma = values, season, sigma  # values: training readings, NaN = blank
        self.filled = fill_gaps(values, season)

    @classmethod
    def fit(
        cls, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping
    ) -> SeasonalNaiveModel:
        if len(values) < season:
            raise ValueError(f"seasonal naive needs at least one season ({season} steps), got {len(values)}")
        d = values[season:] - values[:-season]
        d = d[np.isfinite(d)]
        sigma = float(np.sqrt(np.mean(d**2))) if len(d) else math.nan
        return cls(np.asarray(values, dtype=float), season, sigma)

    def predict(
        self, horizon: int, times: pd.DatetimeIndex, extra: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        y = self.filled if extra is None else fill_gaps(np.concatenate([self.filled, extra]), self.season)
        last = y[-self.season :]
        h = np.arange(horizon)
        yhat = last[h % self.season]
        sd = self.sigma * np.sqrt(1 + h // self.season)
        return yhat, sd

    def state(self) -> dict[str, Any]:
        return {"season": self.season, "sigma": self.sigma}

    @classmethod
    def from_state(cls, state: Mapping, values: np.ndarray) -> SeasonalNaiveModel:
        return cls(values, int(state["season"]), float(state["sigma"]))


class EtsModel:
    """statsmodels ETS with heuristic initial states; rebuilt from (params, initial states, values) exactly.

    Blanks are filled before smoothing; the forecast variance is rescaled to the residuals at real readings,
    since filled points fit "perfectly" and would otherwise shrink the intervals.
    """

    name = "ets"

    def __init__(
        self, values: np.ndarray, season: int, config: Mapping, params: Mapping, init: Mapping, seed: int
    ) -> None:
        self.values, self.season, self.seed = values, season, seed  # values: training readings, NaN = blank
        self.config, self.params, self.init = dict(config), dict(params), dict(init)
        self.filled = fill_gaps(values, season)
        self._results = self._smooth(self.filled)

    def _smooth(self, values: np.ndarray) -> Any:
        init = {"initialization_method": "known", "initial_level": self.init["level"]}
        if self.config.get("trend"):
            init["initial_trend"] = self.init["trend"]
        if self.config.get("seasonal"):
            init["initial_seasonal"] = np.asarray(self.init["seasonal"], dtype=float)
        model = ets_model(values, self.season, self.config, **init)
        with quiet_statsmodels():
            return model.smooth(np.array([self.params[k] for k in model.param_names], dtype=float))

    @classmethod
    def fit(cls, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping) -> EtsModel:
        filled = fill_gaps(values, season)
        config = dict(cfg["ets"])
        if "mul" in (config.get("error"), config.get("seasonal"), config.get("trend")) and filled.min() <= 0:
            raise ValueError("multiplicative ETS needs strictly positive readings")
        model = ets_model(filled, season, config, initialization_method="heuristic")
        with quiet_statsmodels():
            res = model.fit(disp=False)
        params = dict(zip(model.param_names, (float(p) for p in res.params), strict=True))
        init = {
            "level": float(res.initial_level),
            "trend": float(res.initial_trend) if config.get("trend") else None,
            "seasonal": [float(s) for s in np.ravel(res.initial_seasonal)]
            if config.get("seasonal")
            else None,
        }
        return cls(np.asarray(values, dtype=float), season, config, params, init, int(cfg["seed"]))

    def predict(
        self, horizon: int, times: pd.DatetimeIndex, extra: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if extra is None or len(extra) == 0:
            res, real = self._results, np.isfinite(self.values)
        else:
            res = self._smooth(fill_gaps(np.concatenate([self.filled, extra]), self.season))
            real = np.isfinite(np.concatenate([self.values, extra]))
        n = len(real)
        with quiet_statsmodels():
            pred = res.get_prediction(start=n, end=n + horizon - 1, rng=np.random.default_rng(self.seed))
        yhat = np.asarray(pred.predicted_mean, dtype=float)
        var = np.maximum(np.asarray(pred.forecast_variance, dtype=float), 0.0)
        resid2 = np.asarray(res.resid, dtype=float) ** 2
        if real.any() and resid2.mean() > 0:
            var = var * resid2[real].mean() / resid2.mean()
        return yhat, np.sqrt(var)

    def state(self) -> dict[str, Any]:
        return {
            "season": self.season,
            "config": self.config,
            "params": self.params,
            "init": self.init,
            "seed": self.seed,
        }

    @classmethod
    def from_state(cls, state: Mapping, values: np.ndarray) -> EtsModel:
        return cls(
            values, int(state["season"]), state["config"], state["params"], state["init"], int(state["seed"])
        )


class ProphetModel:
    """Prophet (MAP fit) with weekly seasonality and a daily profile per weekday/weekend; a function of time."""

    name = "prophet"

    def __init__(self, model: Any, conditional_daily: bool) -> None:
        self.model, self.conditional_daily = model, conditional_daily
        self.sigma = float(np.ravel(model.params["sigma_obs"])[0] * model.y_scale)

    @staticmethod
    def _frame(times: pd.DatetimeIndex, conditional: bool) -> pd.DataFrame:
        df = pd.DataFrame({"ds": times})
        if conditional:
            df["weekend"] = df["ds"].dt.dayofweek >= 5
            df["weekday"] = ~df["weekend"]
        return df

    @classmethod
    def fit(cls, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping) -> ProphetModel:
        pc = cfg["prophet"]
        with _quiet_prophet():
            # imported here: Prophet takes seconds to import and only its fits need it
            from prophet import Prophet

            cond = bool(pc["conditional_daily"])
            model = Prophet(
                growth="linear",
                yearly_seasonality=False,
                weekly_seasonality=int(pc["weekly_fourier_order"]),
                daily_seasonality=False if cond else int(pc["daily_fourier_order"]),
                changepoint_prior_scale=float(pc["changepoint_prior_scale"]),
                changepoint_range=float(pc["changepoint_range"]),
                uncertainty_samples=0,
            )
            if cond:
                for name in ("weekday", "weekend"):
                    model.add_seasonality(
                        f"daily_{name}", 1, int(pc["daily_fourier_order"]), condition_name=name
                    )
            df = cls._frame(timestamps, cond)
            df["y"] = values  # NaN rows (missing, masked anomalies) are skipped by Prophet itself
            model.fit(df, seed=int(cfg["seed"]))
        return cls(model, cond)

    def predict(
        self, horizon: int, times: pd.DatetimeIndex, extra: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        with _quiet_prophet():
            yhat = self.model.predict(self._frame(times, self.conditional_daily))["yhat"].to_numpy(
                dtype=float
            )
        return yhat, np.full(horizon, self.sigma)

    def state(self) -> dict[str, Any]:
        from prophet.serialize import model_to_json  # here: a slow import, only Prophet models need it

        return {"conditional_daily": self.conditional_daily, "model_json": model_to_json(self.model)}

    @classmethod
    def from_state(cls, state: Mapping, values: np.ndarray | None) -> ProphetModel:
        with _quiet_prophet():
            from prophet.serialize import model_from_json  # here: a slow import, only Prophet models need it

            model = model_from_json(state["model_json"])
        return cls(model, bool(state["conditional_daily"]))


_MODELS = {cls.name: cls for cls in (SeasonalNaiveModel, EtsModel, ArimaModel, MstlModel, ProphetModel)}


class FittedModel:
    """A fitted candidate and its value transform (log for multiplicative kinds); forecasts in data units."""

    def __init__(self, name: str, model: Any, log: bool) -> None:
        self.name, self.model, self.log = name, model, log

    @classmethod
    def fit(
        cls, name: str, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping, log: bool
    ) -> FittedModel:
        if log:
            values = _to_log(values, "training")
        return cls(name, _MODELS[name].fit(values, timestamps, season, cfg), log)

    def predict(
        self, horizon: int, times: pd.DatetimeIndex, extra: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        if extra is not None and self.log:
            extra = _to_log(extra, "history")
        bands = _intervals(*self.model.predict(horizon, times, extra))
        return {k: np.exp(v) for k, v in bands.items()} if self.log else bands

    @property
    def values(self) -> np.ndarray | None:
        """The (filled, transformed) training values the model state is rebuilt from; None for Prophet."""
        return getattr(self.model, "values", None)

    def state(self) -> dict[str, Any]:
        return {"model": self.name, "log": self.log, **self.model.state()}

    @classmethod
    def from_state(cls, state: Mapping, values: np.ndarray | None) -> FittedModel:
        name = state["model"]
        if name not in _MODELS:
            raise ValueError(f"saved model {name!r} is not one of {list(MODEL_ORDER)}")
        return cls(name, _MODELS[name].from_state(state, values), bool(state["log"]))


def _to_log(values: np.ndarray, what: str) -> np.ndarray:
    """Natural log of readings that must be positive (multiplicative kinds such as request rates)."""
    v = np.asarray(values, dtype=float)
    if (v[np.isfinite(v)] <= 0).any():
        raise ValueError(f"log transform needs positive {what} readings (kind listed in log_kinds)")
    return np.log(v)


@contextlib.contextmanager
def _quiet_prophet() -> Iterator[None]:
    """Silence Prophet's and cmdstanpy's INFO chatter for the duration, restoring the levels after."""
    loggers = [logging.getLogger(n) for n in ("prophet", "cmdstanpy", "prophet.plot")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _intervals(yhat: np.ndarray, sd: np.ndarray) -> dict[str, np.ndarray]:
    """80% and 95% normal prediction intervals around yhat (nested by construction)."""
    out = {"yhat": yhat}
    for level in LEVELS:
        out[f"lo{level}"] = yhat - Z[level] * sd
        out[f"hi{level}"] = yhat + Z[level] * sd
    return out
