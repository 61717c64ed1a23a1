"""Per-sensor forecasting: candidate models, a rolling-origin backtest, selection by MASE, a loadable artifact.

Frames in, frames out; the only file I/O is `SensorForecaster.save` / `.load`. The choices, in one place:

- **Season.** Every model works on each sensor's own grid step. The seasonal period is `season` (default
  `7D`, i.e. lag 168 on hourly data): the series have a weekday/weekend pattern (CPU and request rate drop
  at weekends), so a lag-24 naive forecast predicts Monday from Sunday and Saturday from Friday (measured on
  the synthetic gold data: mean MASE 1.77 for lag 24 vs 1.11 for lag 168). The same period is the MASE
  scale's lag (Hyndman's seasonal MASE), so MASE < 1 means "beats last week's same hour in-sample".
- **Candidates** (simplest first; `MODEL_ORDER`): `seasonal_naive` (y[t+h] = y[t+h-m·k]), `ets`
  (statsmodels `ETSModel`, default additive error, damped additive trend, additive season of period m,
  heuristic initial states, smoothing parameters by maximum likelihood) and `prophet` (linear trend,
  weekly seasonality and a daily profile conditioned on weekday/weekend; MAP fit, seeded, deterministic).
  SARIMAX is not a candidate: with Fourier regressors and AR(1/2) errors it took 1-27 s per fit here and
  often failed to converge; a seasonal order of 168 is out of reach.
- **Transform.** Kinds in `log_kinds` (default: request_rate, whose daily swing and noise scale with the
  level) are modelled on log(y) and forecasts transformed back (the point forecast is then the median).
- **Intervals** are yhat ± z·sd_h (z for 80% and 95%, in model space): seasonal naive sd_h = RMSE of its
  in-sample one-season-ahead errors · sqrt(1 + (h-1)//m) (FPP3); ETS sd_h is its state-space forecast
  variance; Prophet sd is its fitted observation noise (its trend-change simulation is left out: it is
  random and negligible over a horizon of hours).
- **Missing readings and labelled anomaly windows** (`mask_anomalies`, default on) are blanked before
  fitting, so a spike is never copied into next week's naive forecast; ETS and the naive model fill the
  blanks with `fill_gaps` (seasonal profile + interpolated remainder), Prophet skips them natively.
  **Scores skip them too**: metrics are computed only at readings that are present and outside every
  labelled window (a forecaster is judged on normal behaviour; the anomaly detector on the rest).
- **Backtest.** Rolling origin, `folds` origins `step` steps apart, the last one `horizon` steps before
  the series end; each fold fits on the (at most `max_train`) steps before its origin only. The default
  step 25 spreads the origins over 14 different hours of the day without overlapping forecast windows.
- **Metrics** per fold: MAE, MAPE (%, rows with y != 0), sMAPE (%, 200·|e|/(|y|+|ŷ|)), MASE = MAE / scale
  with scale = mean |y[t] - y[t-m]| over the fold's training part (Hyndman & Koehler 2006: in-sample MAE of
  the seasonal naive one-season-ahead forecast; pairs with a blank end are skipped) and interval coverage.
- **Selection** per sensor: lowest mean MASE across backtest folds (a model failing any fold is out);
  a model within `select_tolerance` MASE of a simpler one loses to it. Never by in-sample fit. Then the
  chosen model is refitted on the full series.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from ml.features import infer_freq

MODEL_ORDER = ("seasonal_naive", "ets", "prophet")  # simplest first: ties go to the earlier one
LEVELS = (80, 95)
Z = {level: NormalDist().inv_cdf(0.5 + level / 200) for level in LEVELS}
FORECAST_COLUMNS = ["timestamp", "yhat", "lo80", "hi80", "lo95", "hi95", "model"]
INFO_COLUMNS = [
    "sensor_id",
    "kind",
    "unit",
    "model",
    "log",
    "step_seconds",
    "season",
    "train_start",
    "train_end",
    "n_train",
]
# How to run, not what was fitted: kept out of the saved artifact so its bytes do not depend on it.
_RUNTIME_KEYS = ("n_jobs",)
ARTIFACT_FORMAT = "opslab-sensor-forecast"
ARTIFACT_VERSION = 1
DEFAULT_PARAMS: dict[str, Any] = {
    "models": list(MODEL_ORDER),
    "season": "7D",
    "horizon": 24,
    "max_horizon": 168,
    "folds": 14,
    "step": 25,
    "min_train": 336,
    "max_train": 2016,
    "mask_anomalies": True,
    "log_kinds": ["request_rate"],
    "select_tolerance": 0.02,
    "n_jobs": 1,
    "seed": 0,
    "ets": {"error": "add", "trend": "add", "damped_trend": True, "seasonal": "add"},
    "prophet": {
        "conditional_daily": True,
        "daily_fourier_order": 6,
        "weekly_fourier_order": 3,
        "changepoint_prior_scale": 0.05,
        "changepoint_range": 0.8,
    },
}


# --- params -------------------------------------------------------------------------------------
def forecast_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `forecast:` params merged over DEFAULT_PARAMS and checked, so a typo fails before any fitting."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"forecast params: unknown key(s) {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    cfg = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in DEFAULT_PARAMS.items()}
    for key, value in params.items():
        if isinstance(DEFAULT_PARAMS[key], Mapping):
            sub_unknown = sorted(set(value or {}) - set(DEFAULT_PARAMS[key]))
            if sub_unknown:
                raise ValueError(f"forecast params: unknown key(s) {sub_unknown} under {key!r}")
            cfg[key] = {**cfg[key], **(value or {})}
        else:
            cfg[key] = value
    models = list(cfg["models"])
    bad = [m for m in models if m not in MODEL_ORDER]
    if bad or not models or len(set(models)) != len(models):
        raise ValueError(f"forecast params: models must be distinct names from {MODEL_ORDER}, got {models}")
    cfg["models"] = [m for m in MODEL_ORDER if m in models]
    for key, low in (("horizon", 1), ("max_horizon", 1), ("folds", 1), ("step", 1), ("min_train", 2)):
        if not _is_int(cfg[key]) or cfg[key] < low:
            raise ValueError(f"forecast params: {key} must be an integer >= {low}, got {cfg[key]!r}")
    if cfg["horizon"] > cfg["max_horizon"]:
        raise ValueError(
            f"forecast params: horizon {cfg['horizon']} exceeds max_horizon {cfg['max_horizon']}"
        )
    if cfg["max_train"] is not None and (
        not _is_int(cfg["max_train"]) or cfg["max_train"] < cfg["min_train"]
    ):
        raise ValueError(
            f"forecast params: max_train must be null or an integer >= min_train, got {cfg['max_train']!r}"
        )
    if not isinstance(cfg["select_tolerance"], int | float) or cfg["select_tolerance"] < 0:
        raise ValueError(f"forecast params: select_tolerance must be >= 0, got {cfg['select_tolerance']!r}")
    return cfg


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def season_steps(step: pd.Timedelta, season: int | str) -> int:
    """The seasonal period in grid steps: an int is steps already, a duration ('7D') is divided by the step."""
    if _is_int(season):
        m = int(season)
    else:
        ratio = pd.Timedelta(season) / step
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"season {season!r} is not a whole number of {step} steps")
        m = round(ratio)
    if m < 2:
        raise ValueError(f"season must span at least 2 steps, got {m} (season={season!r}, step={step})")
    return m


# --- series preparation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sensor:
    """One sensor on its regular grid: observed values (NaN when missing) and its anomaly-window flags."""

    sensor_id: str
    kind: str | None
    unit: str | None
    step: pd.Timedelta
    timestamps: pd.DatetimeIndex
    observed: np.ndarray
    anomaly: np.ndarray


def _split_sensors(series: pd.DataFrame) -> list[_Sensor]:
    """Per-sensor arrays from a gold `sensor_series` frame (checked: one regular grid per sensor)."""
    missing = sorted({"sensor_id", "timestamp", "value"} - set(series.columns))
    if missing:
        raise ValueError(f"series frame: missing column(s) {missing}")
    if series.empty:
        raise ValueError("series frame: no rows")
    out = []
    for sid, g in series.groupby("sensor_id", sort=True):
        g = g.sort_values("timestamp", kind="stable")
        ts = pd.DatetimeIndex(pd.to_datetime(g["timestamp"]))
        if ts.has_duplicates:
            raise ValueError(f"sensor {sid!r}: repeated timestamp(s) {list(ts[ts.duplicated()][:3])}")
        step = infer_freq(ts.to_series())
        off = ts.to_series().diff().iloc[1:] != step
        if off.any():
            raise ValueError(
                f"sensor {sid!r}: not on a regular {step} grid (first gap at {off.idxmax()}); "
                "put it on one with ml.features.sensor_grid"
            )
        value = pd.to_numeric(g["value"], errors="coerce").to_numpy(dtype=float, copy=True)
        if "is_missing" in g:
            value[g["is_missing"].fillna(False).to_numpy(dtype=bool)] = np.nan
        anomaly = (
            g["is_anomaly"].fillna(False).to_numpy(dtype=bool)
            if "is_anomaly" in g
            else np.zeros(len(g), bool)
        )
        out.append(
            _Sensor(
                sensor_id=str(sid),
                kind=_first(g, "kind"),
                unit=_first(g, "unit"),
                step=step,
                timestamps=ts,
                observed=value,
                anomaly=anomaly,
            )
        )
    return out


def _first(frame: pd.DataFrame, col: str) -> str | None:
    if col not in frame or frame[col].isna().all():
        return None
    return str(frame[col].dropna().iloc[0])


def fill_gaps(values: np.ndarray, season: int) -> np.ndarray:
    """Blanks filled with the median seasonal profile plus the linearly interpolated remainder (a new array).

    Linear interpolation alone would flatten a day-long gap; the profile keeps its daily/weekly shape.
    """
    y = np.asarray(values, dtype=float)
    if np.isfinite(y).all():
        return y.copy()
    if not np.isfinite(y).any():
        raise ValueError("cannot fill a series with no readings")
    pos = np.arange(len(y)) % season
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # positions never observed: median of nothing
        profile = pd.Series(y).groupby(pos).transform("median").to_numpy()
    profile = np.where(np.isfinite(profile), profile, 0.0)
    rest = pd.Series(y - profile).interpolate(limit_direction="both").to_numpy()
    return np.where(np.isfinite(y), y, profile + rest)


def mase_scale(values: np.ndarray, season: int) -> float:
    """Hyndman's seasonal MASE scale: mean |y[t] - y[t-m]| over the training part (NaN pairs skipped)."""
    y = np.asarray(values, dtype=float)
    if len(y) <= season:
        return math.nan
    d = np.abs(y[season:] - y[:-season])
    d = d[np.isfinite(d)]
    return float(d.mean()) if len(d) and d.mean() > 0 else math.nan


def resample_series(series: pd.DataFrame, freq: str = "1h") -> pd.DataFrame:
    """Sensors with a finer step averaged onto a coarser regular grid (anomaly flag = any reading flagged).

    Used to bring NAB's 5- and 30-minute files to hourly; sensors already at `freq` pass through unchanged
    in value. Buckets are left-labelled and aligned to midnight.
    """
    target = pd.Timedelta(freq)
    parts = []
    for sid, g in series.sort_values(["sensor_id", "timestamp"], kind="stable").groupby(
        "sensor_id", sort=True
    ):
        step = infer_freq(g["timestamp"])
        if step > target:
            raise ValueError(f"sensor {sid!r}: step {step} is coarser than {target}; no upsampling")
        g = g.set_index("timestamp")
        value = g["value"].astype(float)
        if "is_missing" in g:
            value = value.where(~g["is_missing"].fillna(False).astype(bool))
        mean = value.resample(target).mean()
        out = pd.DataFrame(
            {
                "sensor_id": sid,
                "kind": _first(g, "kind"),
                "unit": _first(g, "unit"),
                "timestamp": mean.index,
                "value": mean.to_numpy(),
                "is_missing": mean.isna().to_numpy(),
            }
        )
        if "is_anomaly" in g:
            flag = g["is_anomaly"].fillna(False).astype(bool).resample(target).max()
            out["is_anomaly"] = (
                flag.reindex(mean.index, fill_value=False).fillna(False).astype(bool).to_numpy()
            )
        if "anomaly_kind" in g:
            kinds = g["anomaly_kind"].resample(target).first().reindex(mean.index).astype(object)
            out["anomaly_kind"] = kinds.where(kinds.notna(), None).to_numpy()
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


# --- candidate models ------------------------------------------------------------------------------
class _SeasonalNaive:
    """Seasonal naive: each step repeats the reading one season earlier; sd from its in-sample errors."""

    name = "seasonal_naive"

    def __init__(self, values: np.ndarray, season: int, sigma: float) -> None:
        self.values, self.season, self.sigma = values, season, sigma  # values: training readings, NaN = blank
        self.filled = fill_gaps(values, season)

    @classmethod
    def fit(
        cls, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping
    ) -> _SeasonalNaive:
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
    def from_state(cls, state: Mapping, values: np.ndarray) -> _SeasonalNaive:
        return cls(values, int(state["season"]), float(state["sigma"]))


class _Ets:
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
        model = _ets_model(values, self.season, self.config, **init)
        with _quiet_statsmodels():
            return model.smooth(np.array([self.params[k] for k in model.param_names], dtype=float))

    @classmethod
    def fit(cls, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping) -> _Ets:
        filled = fill_gaps(values, season)
        config = dict(cfg["ets"])
        if "mul" in (config.get("error"), config.get("seasonal"), config.get("trend")) and filled.min() <= 0:
            raise ValueError("multiplicative ETS needs strictly positive readings")
        model = _ets_model(filled, season, config, initialization_method="heuristic")
        with _quiet_statsmodels():
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
        with _quiet_statsmodels():
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
    def from_state(cls, state: Mapping, values: np.ndarray) -> _Ets:
        return cls(
            values, int(state["season"]), state["config"], state["params"], state["init"], int(state["seed"])
        )


def _ets_model(values: np.ndarray, season: int, config: Mapping, **init: Any) -> Any:
    """An unfitted statsmodels ETSModel of the configured form on `values`."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    return ETSModel(
        pd.Series(values),
        error=config.get("error", "add"),
        trend=config.get("trend"),
        damped_trend=bool(config.get("damped_trend")) and config.get("trend") is not None,
        seasonal=config.get("seasonal"),
        seasonal_periods=season if config.get("seasonal") else None,
        **init,
    )


class _Prophet:
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
    def fit(cls, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping) -> _Prophet:
        pc = cfg["prophet"]
        with _quiet_prophet():
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
        from prophet.serialize import model_to_json

        return {"conditional_daily": self.conditional_daily, "model_json": model_to_json(self.model)}

    @classmethod
    def from_state(cls, state: Mapping, values: np.ndarray | None) -> _Prophet:
        with _quiet_prophet():
            from prophet.serialize import model_from_json

            model = model_from_json(state["model_json"])
        return cls(model, bool(state["conditional_daily"]))


_MODELS = {cls.name: cls for cls in (_SeasonalNaive, _Ets, _Prophet)}


class _Fitted:
    """A fitted candidate and its value transform (log for multiplicative kinds); forecasts in data units."""

    def __init__(self, name: str, model: Any, log: bool) -> None:
        self.name, self.model, self.log = name, model, log

    @classmethod
    def fit(
        cls, name: str, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping, log: bool
    ) -> _Fitted:
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
    def from_state(cls, state: Mapping, values: np.ndarray | None) -> _Fitted:
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


@contextlib.contextmanager
def _quiet_statsmodels() -> Iterator[None]:
    """Hide statsmodels' convergence/value warnings (the fit is judged by the backtest, not by warnings)."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, ValueWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ValueWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _intervals(yhat: np.ndarray, sd: np.ndarray) -> dict[str, np.ndarray]:
    """80% and 95% normal prediction intervals around yhat (nested by construction)."""
    out = {"yhat": yhat}
    for level in LEVELS:
        out[f"lo{level}"] = yhat - Z[level] * sd
        out[f"hi{level}"] = yhat + Z[level] * sd
    return out


def _fit_values(sensor: _Sensor, cfg: Mapping) -> np.ndarray:
    """Values a model may learn from: observed readings, blanked inside labelled windows when masking."""
    return (
        np.where(sensor.anomaly, np.nan, sensor.observed) if cfg["mask_anomalies"] else sensor.observed.copy()
    )


def _scored(sensor: _Sensor) -> np.ndarray:
    """Rows that count in the scores: a reading is present and outside every labelled anomaly window."""
    return np.isfinite(sensor.observed) & ~sensor.anomaly


# --- backtest -------------------------------------------------------------------------------------
def fold_origins(
    n: int, *, horizon: int, folds: int, step: int, min_train: int, sensor_id: str = "?"
) -> list[int]:
    """Chronological positions of the fold origins: the last fold ends at the series end, `step` apart."""
    h = horizon
    origins = [n - h - k * step for k in range(folds - 1, -1, -1)]
    if origins[0] < min_train:
        need = min_train + h + (folds - 1) * step
        raise ValueError(
            f"sensor {sensor_id!r}: {n} steps are too few for {folds} folds of horizon {h} every {step} "
            f"steps after min_train {min_train} (need {need})"
        )
    return origins


def point_metrics(
    y: np.ndarray, yhat: np.ndarray, bands: Mapping[str, np.ndarray], scale: float
) -> dict[str, float]:
    """MAE, MAPE %, sMAPE %, MASE and 80/95% coverage over the given (already scored-only) points."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    n = len(y)
    if n == 0:
        return {
            "n_scored": 0,
            "mae": math.nan,
            "mape": math.nan,
            "smape": math.nan,
            "mase": math.nan,
            "cov80": math.nan,
            "cov95": math.nan,
        }
    err = np.abs(y - yhat)
    nz = y != 0
    denom = np.abs(y) + np.abs(yhat)
    mae = float(err.mean())
    out = {
        "n_scored": n,
        "mae": mae,
        "mape": float(100 * np.mean(err[nz] / np.abs(y[nz]))) if nz.any() else math.nan,
        "smape": float(100 * np.mean(np.where(denom > 0, 2 * err / np.where(denom > 0, denom, 1), 0.0))),
        "mase": mae / scale if scale and np.isfinite(scale) else math.nan,
    }
    for level in LEVELS:
        inside = (y >= bands[f"lo{level}"]) & (y <= bands[f"hi{level}"])
        out[f"cov{level}"] = float(inside.mean())
    return out


def _backtest_sensor(sensor: _Sensor, cfg: Mapping) -> tuple[list[dict], list[dict], list[dict]]:
    """Every fold x model of one sensor: forecast rows, score rows, timing rows."""
    n, h = len(sensor.observed), cfg["horizon"]
    m = season_steps(sensor.step, cfg["season"])
    fit_values, scored = _fit_values(sensor, cfg), _scored(sensor)
    log = sensor.kind in cfg["log_kinds"]
    fc_rows: list[dict] = []
    score_rows: list[dict] = []
    time_rows: list[dict] = []
    keys = ("horizon", "folds", "step", "min_train")
    origins = fold_origins(n, **{k: cfg[k] for k in keys}, sensor_id=sensor.sensor_id)
    for fold, origin in enumerate(origins):
        lo = 0 if cfg["max_train"] is None else max(0, origin - cfg["max_train"])
        train_vals, train_times = fit_values[lo:origin], sensor.timestamps[lo:origin]
        scale = mase_scale(np.where(scored[lo:origin], sensor.observed[lo:origin], np.nan), m)
        times = sensor.timestamps[origin : origin + h]
        y, ok = sensor.observed[origin : origin + h], scored[origin : origin + h]
        base = {
            "sensor_id": sensor.sensor_id,
            "kind": sensor.kind,
            "fold": fold,
            "origin": sensor.timestamps[origin],
        }
        for name in cfg["models"]:
            t0 = time.perf_counter()
            try:
                model = _Fitted.fit(name, train_vals, train_times, m, cfg, log)
                bands = model.predict(h, times, None)
                error = None
            except Exception as exc:  # a failing candidate is recorded and left out of selection
                bands = {k: np.full(h, np.nan) for k in ("yhat", "lo80", "hi80", "lo95", "hi95")}
                error = f"{type(exc).__name__}: {exc}"
            time_rows.append({**base, "model": name, "seconds": time.perf_counter() - t0})
            fc_rows.append(
                {
                    **base,
                    "model": name,
                    "h": np.arange(1, h + 1),
                    "timestamp": times,
                    "y": y,
                    "scored": ok,
                    "scale": np.full(h, scale),
                    **bands,
                }
            )
            metrics = point_metrics(y[ok], bands["yhat"][ok], {k: v[ok] for k, v in bands.items()}, scale)
            if error is not None:
                metrics = {**metrics, **{k: math.nan for k in metrics if k != "n_scored"}}
            score_rows.append({**base, "model": name, "scale": scale, **metrics, "error": error})
    return fc_rows, score_rows, time_rows


@dataclass(frozen=True)
class Backtest:
    """A rolling-origin backtest: forecasts (sensor x model x fold x step), fold scores, fit timings."""

    forecasts: pd.DataFrame
    scores: pd.DataFrame
    timings: pd.DataFrame  # wall-clock seconds per fit+forecast; varies run to run, so kept apart
    params: dict


def backtest(series: pd.DataFrame, params: Mapping[str, Any] | None = None) -> Backtest:
    """Rolling-origin backtest of every candidate on every sensor; each fold trains only before its origin."""
    cfg = forecast_params(params)
    sensors = _split_sensors(series)
    results = _map_sensors(_backtest_sensor, sensors, cfg)
    fc_parts = [pd.DataFrame(r) for res in results for r in res[0]]
    forecasts = pd.concat(fc_parts, ignore_index=True)
    forecasts = forecasts.astype({c: float for c in ("y", "yhat", "lo80", "hi80", "lo95", "hi95", "scale")})
    forecasts["h"] = forecasts["h"].astype(int)
    forecasts["scored"] = forecasts["scored"].astype(bool)
    scores = pd.DataFrame([row for res in results for row in res[1]])
    timings = pd.DataFrame([row for res in results for row in res[2]])
    cols = [
        "sensor_id",
        "kind",
        "model",
        "fold",
        "origin",
        "h",
        "timestamp",
        "y",
        "yhat",
        "lo80",
        "hi80",
        "lo95",
        "hi95",
        "scored",
        "scale",
    ]
    return Backtest(forecasts[cols], scores, timings, cfg)


def _map_sensors(func: Any, sensors: Sequence[_Sensor], cfg: Mapping) -> list[Any]:
    """func(sensor, cfg) for every sensor, in sensor order; across `n_jobs` processes when > 1."""
    n_jobs = int(cfg.get("n_jobs") or 1)
    if n_jobs == 1 or len(sensors) < 2:
        return [func(s, cfg) for s in sensors]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(func)(s, cfg) for s in sensors)


# --- selection and tables -------------------------------------------------------------------------
def select_models(scores: pd.DataFrame, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per sensor, the model with the lowest mean backtest MASE; within `select_tolerance`, the simpler one."""
    cfg = forecast_params(params)
    tol = float(cfg["select_tolerance"])
    rows = []
    for sid, g in scores.groupby("sensor_id", sort=True):
        failed = g.groupby("model")["error"].agg(lambda s: s.notna().any())
        per_model = g.groupby("model")["mase"].mean().where(~failed)  # folds with nothing scored: skipped
        per_model = per_model.reindex([m for m in MODEL_ORDER if m in per_model.index])
        kind = g["kind"].iloc[0]
        finite = per_model.dropna()
        if finite.empty:  # no MASE anywhere (e.g. a constant training part): the simplest model that ran
            ran = [m for m in per_model.index if not failed[m]]
            if not ran:
                raise ValueError(f"sensor {sid!r}: every candidate failed in the backtest")
            rows.append({"sensor_id": sid, "kind": kind, "model": ran[0], "mase": math.nan})
            continue
        best = finite.min()
        chosen = next(m for m in finite.index if finite[m] <= best + tol)
        rows.append({"sensor_id": sid, "kind": kind, "model": chosen, "mase": float(finite[chosen])})
    return pd.DataFrame(rows, columns=["sensor_id", "kind", "model", "mase"])


def _as_selection(selection: pd.DataFrame | Mapping[str, str]) -> dict[str, str]:
    if isinstance(selection, pd.DataFrame):
        return dict(zip(selection["sensor_id"], selection["model"], strict=True))
    return dict(selection)


def _sensor_model_metrics(forecasts: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per sensor x model: MAE/MAPE/sMAPE/coverage pooled over scored points, MASE = mean over folds."""
    rows = []
    failed = scores.groupby(["sensor_id", "model"])["error"].agg(lambda s: int(s.notna().sum()))
    fold_mase = scores.groupby(["sensor_id", "model"])["mase"].mean().where(failed == 0)
    for (sid, model), g in forecasts[forecasts["scored"]].groupby(["sensor_id", "model"], sort=True):
        bands = {c: g[c].to_numpy() for c in ("lo80", "hi80", "lo95", "hi95")}
        m = point_metrics(g["y"].to_numpy(), g["yhat"].to_numpy(), bands, math.nan)
        m["mase"] = float(fold_mase.get((sid, model), math.nan))
        if failed.get((sid, model), 0):
            m = {**m, **{k: math.nan for k in ("mae", "mape", "smape", "cov80", "cov95")}}
        rows.append(
            {
                "sensor_id": sid,
                "kind": g["kind"].iloc[0],
                "model": model,
                "n_folds": int(g["fold"].nunique()),
                "failed_folds": int(failed.get((sid, model), 0)),
                **m,
            }
        )
    cols = [
        "sensor_id",
        "kind",
        "model",
        "n_folds",
        "failed_folds",
        "n_scored",
        "mae",
        "mape",
        "smape",
        "mase",
        "cov80",
        "cov95",
    ]
    return pd.DataFrame(rows, columns=cols)


def backtest_table(bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per sensor x candidate: pooled MAE/MAPE/sMAPE/coverage, mean fold MASE, and which model was chosen."""
    chosen = _as_selection(select_models(bt.scores, bt.params) if selection is None else selection)
    table = _sensor_model_metrics(bt.forecasts, bt.scores)
    table.insert(2, "chosen_model", table["sensor_id"].map(chosen))
    table.insert(4, "is_chosen", table["model"] == table["chosen_model"])
    return table.reset_index(drop=True)


def _overall_rows(table: pd.DataFrame, label: str, forecasts: pd.DataFrame) -> dict[str, Any]:
    """One overall row: MASE mean/median/share < 1, MAPE (all, temperature), pooled interval coverage."""
    temp = table[table["kind"] == "temperature"]
    pts = forecasts[forecasts["scored"]]
    return {
        "model": label,
        "n_sensors": len(table),
        "mase_mean": table["mase"].mean(),
        "mase_median": table["mase"].median(),
        "share_mase_lt1": float((table["mase"] < 1).mean()) if len(table) else math.nan,
        "mape_mean": table["mape"].mean(),
        "smape_mean": table["smape"].mean(),
        "mape_temperature": temp["mape"].mean() if len(temp) else math.nan,
        "cov80": float(((pts["y"] >= pts["lo80"]) & (pts["y"] <= pts["hi80"])).mean())
        if len(pts)
        else math.nan,
        "cov95": float(((pts["y"] >= pts["lo95"]) & (pts["y"] <= pts["hi95"])).mean())
        if len(pts)
        else math.nan,
    }


def _chosen_points(forecasts: pd.DataFrame, chosen: Mapping[str, str]) -> pd.DataFrame:
    return forecasts[forecasts["model"] == forecasts["sensor_id"].map(chosen)]


def overall_table(bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per candidate, for the per-sensor choice, and for a holdout check of that choice: the goal numbers.

    `selected` scores each sensor's chosen model on the same folds it was chosen on (optimistic);
    `selected_holdout` chooses on the first half of the folds and scores on the second half (honest).
    """
    chosen = _as_selection(select_models(bt.scores, bt.params) if selection is None else selection)
    per = _sensor_model_metrics(bt.forecasts, bt.scores)
    rows = [
        _overall_rows(per[per["model"] == m], m, bt.forecasts[bt.forecasts["model"] == m])
        for m in bt.params["models"]
    ]
    picked = per[per["model"] == per["sensor_id"].map(chosen)]
    rows.append(_overall_rows(picked, "selected", _chosen_points(bt.forecasts, chosen)))
    folds = int(bt.scores["fold"].max()) + 1
    if folds >= 2 and len(bt.params["models"]) > 1:
        half = folds // 2
        early = select_models(bt.scores[bt.scores["fold"] < half], bt.params)
        late_fc, late_sc = bt.forecasts[bt.forecasts["fold"] >= half], bt.scores[bt.scores["fold"] >= half]
        late = _sensor_model_metrics(late_fc, late_sc)
        pick = _as_selection(early)
        rows.append(
            _overall_rows(
                late[late["model"] == late["sensor_id"].map(pick)],
                "selected_holdout",
                _chosen_points(late_fc, pick),
            )
        )
    return pd.DataFrame(rows)


def goal_metrics(
    bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None
) -> dict[str, float | None]:
    """The forecast goals as flat numbers for metrics JSON (selected model per sensor, and holdout check)."""
    overall = overall_table(bt, selection).set_index("model")
    out: dict[str, float | None] = {}
    for label in overall.index:
        row = overall.loc[label]
        for key in ("share_mase_lt1", "mase_median", "mape_temperature", "cov80", "cov95"):
            value = float(row[key])
            out[f"{label}.{key}"] = round(value, 6) if np.isfinite(value) else None
    return out


# --- the artifact ---------------------------------------------------------------------------------
class SensorForecaster:
    """Chosen model per sensor, refitted on the full series; forecasts without refitting; saved without pickle."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = forecast_params(None)
        self.backtest_: Backtest | None = None
        self.selection_: pd.DataFrame | None = None
        self._info: dict[str, dict[str, Any]] = {}
        self._models: dict[str, Any] = {}

    # fitting ---------------------------------------------------------------------------------------
    def fit(
        self,
        series: pd.DataFrame,
        params: Mapping[str, Any] | None = None,
        selection: pd.DataFrame | Mapping[str, str] | None = None,
    ) -> SensorForecaster:
        """Choose a model per sensor (by backtest unless `selection` is given) and refit it on the full series."""
        cfg = forecast_params(params)
        sensors = _split_sensors(series)
        if selection is None:
            if len(cfg["models"]) == 1:
                selection = {s.sensor_id: cfg["models"][0] for s in sensors}
            else:
                self.backtest_ = backtest(series, cfg)
                selection = select_models(self.backtest_.scores, cfg)
        chosen = _as_selection(selection)
        unknown = sorted({s.sensor_id for s in sensors} - set(chosen))
        if unknown:
            raise KeyError(f"selection has no model for sensor(s) {unknown}")
        bad = sorted({m for m in chosen.values() if m not in _MODELS})
        if bad:
            raise ValueError(f"selection names unknown model(s) {bad}; known: {list(MODEL_ORDER)}")
        fitted = _map_sensors(_fit_final, [s for s in sensors], {**cfg, "_chosen": chosen})
        self.params = cfg
        self.selection_ = (
            selection
            if isinstance(selection, pd.DataFrame)
            else pd.DataFrame({"sensor_id": list(chosen), "model": list(chosen.values())})
        )
        self._info = {info["sensor_id"]: info for info, _ in fitted}
        self._models = {info["sensor_id"]: model for info, model in fitted}
        return self

    @property
    def sensor_ids(self) -> list[str]:
        """Sensors this forecaster can answer for."""
        return sorted(self._info)

    def info(self) -> pd.DataFrame:
        """One row per sensor: kind, unit, chosen model, grid step, season, training start/end and length."""
        return pd.DataFrame([self._info[s] for s in self.sensor_ids], columns=INFO_COLUMNS)

    # forecasting -----------------------------------------------------------------------------------
    def forecast(
        self, sensor_id: str, horizon: int | None = None, history: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Point forecast and 80/95% intervals for steps 1..horizon after the training end (or after `history`).

        `history` (columns timestamp, value; optional sensor_id, is_missing, is_anomaly) holds readings after
        the training end; rows at or before it are ignored. ETS and seasonal naive update their state with it
        using the fitted parameters (no refit); Prophet forecasts are a function of time, so only the
        forecast timestamps move.
        """
        if sensor_id not in self._info:
            known = ", ".join(self.sensor_ids[:5]) + (", ..." if len(self._info) > 5 else "")
            raise KeyError(
                f"unknown sensor_id {sensor_id!r}; this forecaster knows {len(self._info)} sensor(s): {known}"
            )
        horizon = self.params["horizon"] if horizon is None else horizon
        max_h = self.params["max_horizon"]
        if not _is_int(horizon) or not 1 <= horizon <= max_h:
            raise ValueError(
                f"horizon must be an integer in 1..{max_h} (steps), got {horizon!r} for sensor {sensor_id!r}"
            )
        info = self._info[sensor_id]
        step = pd.Timedelta(seconds=info["step_seconds"])
        extra = None if history is None else self._history_values(sensor_id, history)
        end = pd.Timestamp(info["train_end"]) + step * (0 if extra is None else len(extra))
        times = pd.date_range(end + step, periods=int(horizon), freq=step)
        model = self._models[sensor_id]
        bands = model.predict(int(horizon), times, extra)
        out = pd.DataFrame({"timestamp": times, **{k: np.asarray(v, dtype=float) for k, v in bands.items()}})
        out["model"] = info["model"]
        return out[FORECAST_COLUMNS]

    def _history_values(self, sensor_id: str, history: pd.DataFrame) -> np.ndarray:
        """Readings after the training end on the sensor's grid (NaN for gaps, masked anomalies)."""
        missing = sorted({"timestamp", "value"} - set(history.columns))
        if missing:
            raise ValueError(f"history for sensor {sensor_id!r}: missing column(s) {missing}")
        if "sensor_id" in history:
            other = sorted(set(history["sensor_id"].astype(str)) - {sensor_id})
            if other:
                raise ValueError(f"history for sensor {sensor_id!r} has rows of other sensor(s) {other[:5]}")
        info = self._info[sensor_id]
        step = pd.Timedelta(seconds=info["step_seconds"])
        train_end = pd.Timestamp(info["train_end"])
        ts = pd.to_datetime(history["timestamp"])
        keep = (ts > train_end).to_numpy()
        if not keep.any():
            return np.empty(0)
        h = history.loc[keep]
        ts = ts[keep]
        offsets = (ts - train_end) / step
        off_grid = (offsets != np.round(offsets)).to_numpy()
        if off_grid.any():
            raise ValueError(
                f"history for sensor {sensor_id!r}: timestamp {ts[off_grid].iloc[0]} is not on its {step} grid "
                f"from {train_end}"
            )
        values = pd.to_numeric(h["value"], errors="coerce").to_numpy(dtype=float, copy=True)
        if "is_missing" in h:
            values[h["is_missing"].fillna(False).to_numpy(dtype=bool)] = np.nan
        if self.params["mask_anomalies"] and "is_anomaly" in h:
            values[h["is_anomaly"].fillna(False).to_numpy(dtype=bool)] = np.nan
        out = np.full(int(offsets.max()), np.nan)
        idx = offsets.to_numpy(dtype=float).astype(int) - 1
        order = np.argsort(ts.to_numpy(), kind="stable")  # a repeated timestamp: the later row stands
        out[idx[order]] = values[order]
        return out

    # persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write manifest.json (params, per-sensor info), models.json (model states) and series.parquet."""
        if not self._models:
            raise ValueError("nothing to save: fit the forecaster first")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": ARTIFACT_FORMAT,
            "version": ARTIFACT_VERSION,
            "params": {k: v for k, v in self.params.items() if k not in _RUNTIME_KEYS},
            "sensors": [self._info[s] for s in self.sensor_ids],
        }
        states = {sid: self._models[sid].state() for sid in self.sensor_ids}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (out / "models.json").write_text(json.dumps(states, indent=1, sort_keys=True) + "\n")
        parts = []
        for sid in self.sensor_ids:  # readings ETS / seasonal naive rebuild their state from (model space)
            values, info = self._models[sid].values, self._info[sid]
            if values is not None:
                step = pd.Timedelta(seconds=info["step_seconds"])
                times = pd.date_range(info["train_start"], periods=len(values), freq=step)
                parts.append(pd.DataFrame({"sensor_id": sid, "timestamp": times, "value": values}))
        empty = {"sensor_id": pd.Series(dtype=object), "timestamp": pd.Series(dtype="datetime64[ns]")}
        series = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({**empty, "value": []})
        series.to_parquet(out / "series.parquet", index=False)
        return out

    @classmethod
    def load(cls, path: str | Path) -> SensorForecaster:
        """Rebuild a saved forecaster from its JSON and parquet files (no refit, no pickle)."""
        src = Path(path)
        manifest_path = src / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{src}: no manifest.json (not a saved SensorForecaster)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != ARTIFACT_FORMAT or manifest.get("version") != ARTIFACT_VERSION:
            raise ValueError(
                f"{src}: format {manifest.get('format')!r} v{manifest.get('version')}, expected {ARTIFACT_FORMAT!r} v{ARTIFACT_VERSION}"
            )
        states = json.loads((src / "models.json").read_text())
        series = pd.read_parquet(src / "series.parquet")
        values = {
            sid: g.sort_values("timestamp")["value"].to_numpy(dtype=float)
            for sid, g in series.groupby("sensor_id")
        }
        self = cls()
        self.params = forecast_params(manifest["params"])
        self._info = {info["sensor_id"]: info for info in manifest["sensors"]}
        for sid, state in states.items():
            self._models[sid] = _Fitted.from_state(state, values.get(sid))
        return self


def _fit_final(sensor: _Sensor, cfg: Mapping) -> tuple[dict[str, Any], Any]:
    """Refit one sensor's chosen model on its full series (or the last `max_train` steps)."""
    name = cfg["_chosen"][sensor.sensor_id]
    m = season_steps(sensor.step, cfg["season"])
    values = _fit_values(sensor, cfg)
    lo = 0 if cfg["max_train"] is None else max(0, len(values) - cfg["max_train"])
    log = sensor.kind in cfg["log_kinds"]
    model = _Fitted.fit(name, values[lo:], sensor.timestamps[lo:], m, cfg, log)
    info = {
        "sensor_id": sensor.sensor_id,
        "kind": sensor.kind,
        "unit": sensor.unit,
        "model": name,
        "log": log,
        "step_seconds": sensor.step.total_seconds(),
        "season": m,
        "train_start": sensor.timestamps[lo].isoformat(),
        "train_end": sensor.timestamps[-1].isoformat(),
        "n_train": len(values) - lo,
    }
    return info, model


# --- charts ---------------------------------------------------------------------------------------
def plot_forecasts(
    series: pd.DataFrame,
    forecaster: SensorForecaster,
    sensor_ids: Sequence[str],
    *,
    days: float = 7,
    horizon: int | None = None,
    data_name: str = "synthetic",
) -> Any:
    """Last `days` of readings and the forecast with 80/95% bands, one panel per sensor."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sensor_ids), 1, figsize=(10, 2.6 * len(sensor_ids) + 0.6), squeeze=False)
    info = forecaster.info().set_index("sensor_id")
    for ax, sid in zip(axes[:, 0], sensor_ids, strict=True):
        fc = forecaster.forecast(sid, horizon)
        g = series[series["sensor_id"] == sid].sort_values("timestamp")
        g = g[g["timestamp"] > g["timestamp"].max() - pd.Timedelta(days=days)]
        ax.plot(g["timestamp"], g["value"], color="0.25", lw=1, label="readings")
        if "is_anomaly" in g:
            a = g[g["is_anomaly"].fillna(False).astype(bool)]
            ax.scatter(a["timestamp"], a["value"], s=8, color="C3", label="labelled anomaly window", zorder=3)
        ax.fill_between(fc["timestamp"], fc["lo95"], fc["hi95"], color="C0", alpha=0.18, label="95% interval")
        ax.fill_between(fc["timestamp"], fc["lo80"], fc["hi80"], color="C0", alpha=0.35, label="80% interval")
        ax.plot(fc["timestamp"], fc["yhat"], color="C0", lw=1.5, label="forecast")
        kind, unit = info.loc[sid, "kind"], info.loc[sid, "unit"]
        ax.set_ylabel(f"{kind or 'value'} ({unit or 'units'})")
        ax.set_title(f"{sid} - {info.loc[sid, 'model']}", loc="left", fontsize=10)
    axes[-1, 0].set_xlabel("time")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(labels), fontsize=8, frameon=False)
    fig.suptitle(
        f"Forecast with 80/95% intervals after the last {days:g} days of readings ({data_name} sensors)"
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _with_selected(bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None) -> pd.DataFrame:
    """Scored backtest points of every candidate plus the per-sensor choice as model `selected`."""
    chosen = _as_selection(select_models(bt.scores, bt.params) if selection is None else selection)
    pts = bt.forecasts[bt.forecasts["scored"]]
    picked = _chosen_points(pts, chosen).assign(model="selected")
    return pd.concat([pts, picked], ignore_index=True)


def plot_error_by_horizon(
    bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None, *, data_name: str = "synthetic"
) -> Any:
    """Backtest scaled absolute error (|e| / MASE scale, averaged over points) by steps ahead, per model."""
    import matplotlib.pyplot as plt

    pts = _with_selected(bt, selection)
    pts = pts.assign(ase=(pts["y"] - pts["yhat"]).abs() / pts["scale"])
    by_h = pts.groupby(["model", "h"])["ase"].mean().reset_index()
    fig, ax = plt.subplots()
    for i, model in enumerate([*bt.params["models"], "selected"]):
        d = by_h[by_h["model"] == model]
        style = {"color": "0.1", "lw": 2.2} if model == "selected" else {"color": f"C{i}", "lw": 1.2}
        ax.plot(d["h"], d["ase"], marker="o", ms=3, label=model, **style)
    ax.axhline(1.0, color="0.4", ls="--", lw=1, label="in-sample seasonal naive error (MASE = 1)")
    ax.set_xlabel(f"horizon (steps ahead; {_step_label(bt)})")
    ax.set_ylabel("mean absolute scaled error (MASE units)")
    folds = bt.forecasts["fold"].nunique()
    ax.set_title(f"Backtest error by horizon per model ({data_name} sensors, {folds} rolling origins)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def plot_coverage(
    bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None, *, data_name: str = "synthetic"
) -> Any:
    """Empirical coverage of the 80% and 95% intervals per model (and per-sensor choice) against nominal."""
    import matplotlib.pyplot as plt

    pts = _with_selected(bt, selection)
    models = [*bt.params["models"], "selected"]
    fig, ax = plt.subplots()
    width = 0.8 / len(LEVELS)
    for j, level in enumerate(LEVELS):
        inside = (pts["y"] >= pts[f"lo{level}"]) & (pts["y"] <= pts[f"hi{level}"])
        cov = inside.groupby(pts["model"]).mean().reindex(models) * 100
        x = np.arange(len(models)) + (j - (len(LEVELS) - 1) / 2) * width
        bars = ax.bar(x, cov.to_numpy(), width=width, color=f"C{j}", label=f"{level}% interval")
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.axhline(level, color=f"C{j}", ls="--", lw=1)
        ax.axhspan(level - 5, level + 5, color=f"C{j}", alpha=0.08)
    ax.set_xticks(np.arange(len(models)), models)
    ax.set_ylim(0, 105)
    ax.set_ylabel("actuals inside the interval (%)")
    ax.set_xlabel("model (dashed: nominal level, band: +/- 5 points)")
    ax.set_title(f"Prediction interval coverage vs nominal, backtest ({data_name} sensors)")
    ax.legend(loc="lower right")
    return fig


def _step_label(bt: Backtest) -> str:
    """'1 step = 1 h' when every sensor shares a step, else a note that steps differ."""
    steps = bt.forecasts.groupby("sensor_id")["timestamp"].apply(
        lambda t: pd.Series(t.unique()).sort_values().diff().min()
    )
    uniq = steps.dropna().unique()
    if len(uniq) != 1:
        return "each sensor's own step"
    minutes = pd.Timedelta(uniq[0]) / pd.Timedelta("1min")
    return f"1 step = {minutes / 60:g} h" if minutes % 60 == 0 else f"1 step = {minutes:g} min"
