"""Two statistical candidates for the forecast race: ARIMA errors around a harmonic regression, and MSTL.

- `ArimaModel`: the daily and seasonal (weekly) shapes as Fourier terms of the timestamp, fitted by least
  squares, then a statsmodels SARIMAX on what is left, its (p, d, q) order chosen by AIC from a short list
  (`forecast.arima.orders`). A seasonal SARIMA with a 168-step season is far too slow to fit on hourly
  data; harmonics carry the seasons instead (regression with ARIMA errors, fitted in two steps).
  Blanks stay blank: the state-space filter skips missing observations.
- `MstlModel`: statsmodels' MSTL splits the series into a daily and a seasonal component and the rest; the
  components repeat their last cycle, the rest is forecast by damped-trend ETS.

Both rebuild exactly from a JSON state and the training values (no pickle), like the other candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ml.sensors.forecast_base import ets_model, fill_gaps, quiet_statsmodels

DAY = 86_400.0  # seconds


def _periods(step_s: float, season: int, n: int) -> list[float]:
    """The cycles (in steps) to model: a day and the configured season, each only when it spans at least two
    steps and the training holds two of them; duplicates once."""
    out: list[float] = []
    for period in (DAY / step_s, float(season)):
        if 2 <= period <= n / 2 and all(abs(period - p) > 1e-9 for p in out):
            out.append(period)
    return out


def _seconds(times: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(times).asi8, dtype=float) / 1e9


def _design(seconds: np.ndarray, step_s: float, periods: list[float], harmonics: list[int]) -> np.ndarray:
    """An intercept and sin/cos pairs of each period's harmonics, as functions of the absolute time."""
    cols = [np.ones(len(seconds))]
    for period, k_max in zip(periods, harmonics, strict=True):
        phase = 2 * np.pi * np.mod(seconds, period * step_s) / (period * step_s)
        for k in range(1, k_max + 1):
            cols += [np.sin(k * phase), np.cos(k * phase)]
    return np.column_stack(cols)


def _sarimax(resid: np.ndarray, order: tuple[int, int, int]) -> Any:
    # imported here: statsmodels takes seconds to import and only these fits and loads need it
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    return SARIMAX(resid, order=order, trend="n")


class ArimaModel:
    """Harmonic regression on time plus SARIMAX(p, d, q) errors, the order chosen by AIC."""

    name = "arima"

    def __init__(self, values: np.ndarray, state: Mapping[str, Any]) -> None:
        self.values, self.cfg = np.asarray(values, dtype=float), dict(state)  # values: training readings
        self.order = tuple(int(v) for v in state["order"])
        self.beta = np.asarray(state["beta"], dtype=float)
        self._results = self._smooth(self.values)

    def _times(self, n: int) -> np.ndarray:
        return self.cfg["t0"] + self.cfg["step_s"] * np.arange(n)

    def _x(self, seconds: np.ndarray) -> np.ndarray:
        return _design(seconds, self.cfg["step_s"], self.cfg["periods"], self.cfg["harmonics"])

    def _smooth(self, values: np.ndarray) -> Any:
        resid = values - self._x(self._times(len(values))) @ self.beta
        with quiet_statsmodels():
            return _sarimax(resid, self.order).smooth(np.asarray(self.cfg["params"], dtype=float))

    @classmethod
    def fit(cls, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping) -> ArimaModel:
        y = np.asarray(values, dtype=float)
        ok = np.isfinite(y)
        if ok.sum() < 3 * season // 2:
            raise ValueError(f"arima needs at least {3 * season // 2} readings, got {int(ok.sum())}")
        ac = cfg["arima"]
        seconds = _seconds(timestamps)
        step_s = float(np.median(np.diff(seconds)))
        periods = _periods(step_s, season, len(y))
        daily = [abs(p - DAY / step_s) < 1e-9 for p in periods]
        wanted = [int(ac["daily_harmonics"] if d else ac["season_harmonics"]) for d in daily]
        harmonics = [max(1, min(k, int(p // 2))) for k, p in zip(wanted, periods, strict=True)]
        x = _design(seconds, step_s, periods, harmonics)
        beta, *_ = np.linalg.lstsq(x[ok], y[ok], rcond=None)
        resid = y - x @ beta
        recent = resid[-int(ac["fit_window"]) :]  # the errors' dynamics from recent steps: fits cost O(n)
        best = None
        with quiet_statsmodels():
            for order in ac["orders"]:
                res = _sarimax(recent, tuple(order)).fit(disp=False, maxiter=int(ac["maxiter"]))
                if np.isfinite(res.aic) and (best is None or res.aic < best[0]):
                    best = (float(res.aic), tuple(int(v) for v in order), [float(v) for v in res.params])
        if best is None:
            raise ValueError("arima: no order in forecast.arima.orders gave a finite AIC")
        state = {
            "t0": float(seconds[0]),
            "step_s": step_s,
            "periods": periods,
            "harmonics": harmonics,
            "beta": [float(b) for b in beta],
            "order": list(best[1]),
            "params": best[2],
            "aic": best[0],
        }
        return cls(y, state)

    def predict(
        self, horizon: int, times: pd.DatetimeIndex, extra: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        values = self.values if extra is None or len(extra) == 0 else np.concatenate([self.values, extra])
        res = self._results if values is self.values else self._smooth(values)
        n = len(values)
        with quiet_statsmodels():
            pred = res.get_prediction(start=n, end=n + horizon - 1)
        future = self._x(self._times(n + horizon)[n:])
        yhat = np.asarray(pred.predicted_mean, dtype=float) + future @ self.beta
        sd = np.sqrt(np.maximum(np.asarray(pred.var_pred_mean, dtype=float), 0.0))
        return yhat, sd

    def state(self) -> dict[str, Any]:
        return dict(self.cfg)

    @classmethod
    def from_state(cls, state: Mapping, values: np.ndarray) -> ArimaModel:
        return cls(values, state)


class MstlModel:
    """MSTL seasonal components (each repeats its last cycle) plus damped-trend ETS on the rest."""

    name = "mstl"
    ETS = {"error": "add", "trend": "add", "damped_trend": True, "seasonal": None}
    WINDOW = 101  # seasonal smoother length in cycles (odd): near-periodic components, noise left in the rest

    def __init__(self, values: np.ndarray, state: Mapping[str, Any]) -> None:
        self.values, self.cfg = np.asarray(values, dtype=float), dict(state)
        self.periods = [int(p) for p in state["periods"]]
        self.seasonal, rest = self._split(fill_gaps(self.values, int(state["season"])))
        self._results = self._smooth(rest)

    def _split(self, filled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # imported here: statsmodels takes seconds to import and only MSTL fits and loads need it
        from statsmodels.tsa.seasonal import MSTL

        with quiet_statsmodels():
            mstl = MSTL(filled, periods=self.periods, windows=[self.WINDOW] * len(self.periods))
            seasonal = np.asarray(mstl.fit().seasonal, dtype=float)
        seasonal = seasonal.reshape(len(filled), -1)
        return seasonal, filled - seasonal.sum(axis=1)

    def _smooth(self, rest: np.ndarray) -> Any:
        init = self.cfg["init"]
        model = ets_model(rest, 1, self.ETS, initialization_method="known", initial_level=init["level"],
                          initial_trend=init["trend"])  # fmt: skip
        with quiet_statsmodels():
            return model.smooth(np.array([self.cfg["params"][k] for k in model.param_names], dtype=float))

    @classmethod
    def fit(cls, values: np.ndarray, timestamps: pd.DatetimeIndex, season: int, cfg: Mapping) -> MstlModel:
        y = np.asarray(values, dtype=float)
        step_s = float(np.median(np.diff(_seconds(timestamps))))
        periods = sorted({round(p) for p in _periods(step_s, season, len(y))})
        if not periods:
            raise ValueError(
                f"mstl needs two cycles of a day or of the season in training, got {len(y)} steps"
            )
        probe = cls.__new__(cls)
        probe.periods = periods
        _, rest = probe._split(fill_gaps(y, season))
        model = ets_model(rest, 1, cls.ETS, initialization_method="heuristic")
        with quiet_statsmodels():
            res = model.fit(disp=False)
        state = {
            "season": int(season),
            "periods": periods,
            "params": dict(zip(model.param_names, (float(p) for p in res.params), strict=True)),
            "init": {"level": float(res.initial_level), "trend": float(res.initial_trend)},
        }
        fitted = cls(y, state)
        fitted.cfg["var_scale"] = fitted._calibrate(int(cfg["horizon"]))
        return fitted

    def predict(
        self, horizon: int, times: pd.DatetimeIndex, extra: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if extra is None or len(extra) == 0:
            seasonal, res, real = self.seasonal, self._results, np.isfinite(self.values)
        else:
            values = np.concatenate([self.values, extra])
            seasonal, rest = self._split(fill_gaps(values, int(self.cfg["season"])))
            res, real = self._smooth(rest), np.isfinite(values)
        n = len(real)
        with quiet_statsmodels():
            pred = res.get_prediction(start=n, end=n + horizon - 1)
        h = np.arange(horizon)
        cycles = sum(seasonal[n - p + (h % p), i] for i, p in enumerate(self.periods))
        yhat = np.asarray(pred.predicted_mean, dtype=float) + cycles
        var = np.maximum(np.asarray(pred.forecast_variance, dtype=float), 0.0)
        return yhat, np.sqrt(var * float(self.cfg.get("var_scale", 1.0)))

    def _calibrate(self, horizon: int) -> float:
        """How much larger the squared errors of a forecast from `horizon` steps before the training end are
        than its predicted variance (at least 1). MSTL smooths its components with the whole training,
        so in-sample residuals understate forecast errors (without this, 80% intervals covered ~60%)."""
        cut = len(self.values) - horizon
        if cut < 2 * max(self.periods) or not np.isfinite(self.values[cut:]).any():
            return 1.0
        early = MstlModel(self.values[:cut], {**self.cfg, "var_scale": 1.0})
        yhat, sd = early.predict(horizon, pd.DatetimeIndex([]), None)
        actual = self.values[cut:]
        ok = np.isfinite(actual) & (sd > 0)
        return max(1.0, float(np.mean((actual[ok] - yhat[ok]) ** 2 / sd[ok] ** 2))) if ok.any() else 1.0

    def state(self) -> dict[str, Any]:
        return dict(self.cfg)

    @classmethod
    def from_state(cls, state: Mapping, values: np.ndarray) -> MstlModel:
        return cls(values, state)
