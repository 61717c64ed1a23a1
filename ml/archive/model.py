"""The archive forecaster: daily records -> GB archived and GB saved over the next week and month, with intervals.

One sklearn estimator maps raw daily records to every output, so training, batch scoring and the service share
it (and `ml.features.ArchiveFeatures` inside it). Every model starts from the seasonal naive forecast (the
sum over the last period of the same length) and learns a correction in log space,
`log1p(y) - log1p(naive)`, so one model serves sources whose volumes differ by orders of magnitude:

- `seasonal_naive`: no correction (the baseline);
- `linear`: one ridge regression per output on the standardised features (the per-target linear baseline);
- `hgb`: one histogram gradient-boosting regressor per output (sklearn's `MultiOutputRegressor`).

Intervals are conformal: the `(1 - coverage) / 2` and `(1 + coverage) / 2` quantiles of out-of-sample log
residuals (`set_intervals`, from a backtest: never residuals of the rows being scored) added to the log forecast.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml.archive.targets import TARGETS, check_horizons, history_days, output_names, target_name
from ml.features import ArchiveFeatures, archive_sum_name, limit_threads

REGRESSORS = ("seasonal_naive", "linear", "hgb")
DEFAULT_HORIZONS = {"week": 7, "month": 30}


def log_residuals(actual, predicted) -> np.ndarray:
    """log1p(actual) - log1p(predicted): the error the intervals are built on (scale-free across sources)."""
    return np.log1p(np.maximum(np.asarray(actual, float), 0)) - np.log1p(
        np.maximum(np.asarray(predicted, float), 0)
    )


class ArchiveForecaster(RegressorMixin, BaseEstimator):
    """Daily archive records -> per row (its day as the origin): every output's forecast, and `<output>_lo` /
    `<output>_hi` once `set_intervals` was given out-of-sample residuals. See the module docstring."""

    def __init__(
        self,
        horizons: Mapping[str, int] | None = None,
        windows=(7, 30, 91),
        lags=(0, 1, 7),
        regressor: str = "hgb",
        hgb: Mapping | None = None,
        linear: Mapping | None = None,
        coverage: float = 0.8,
        n_threads: int | None = None,
        random_state: int = 0,
    ):
        self.horizons = horizons
        self.windows = windows
        self.lags = lags
        self.regressor = regressor
        self.hgb = hgb
        self.linear = linear
        self.coverage = coverage
        self.n_threads = n_threads
        self.random_state = random_state

    # -- what it predicts --------------------------------------------------------------------------
    def horizon_days(self) -> dict[str, int]:
        return check_horizons(self.horizons or DEFAULT_HORIZONS, self.windows)

    def outputs(self) -> list[str]:
        return output_names(self.horizon_days())

    def min_history_days(self) -> int:
        """Days of a source's records a forecast needs (its longest window and lag, and the origin day)."""
        return ArchiveFeatures(tuple(self.windows), tuple(self.lags)).min_history_days()

    # -- fit / predict -----------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: pd.DataFrame):
        """Fit on daily records and their next-period targets (`ml.archive.targets.next_period_targets`,
        aligned with X). Rows with a missing target or less than `min_history_days()` of history are skipped."""
        if self.regressor not in REGRESSORS:
            raise ValueError(f"regressor must be one of {REGRESSORS}, got {self.regressor!r}")
        if not 0 < float(self.coverage) < 1:
            raise ValueError(f"coverage must be in (0, 1), got {self.coverage!r}")
        outputs = self.outputs()
        missing = [c for c in outputs if c not in y.columns]
        if missing:
            raise ValueError(f"targets lack column(s) {missing}")
        self.features_ = ArchiveFeatures(tuple(self.windows), tuple(self.lags)).fit(X)
        feats = self.features_.transform(X)
        target = y.loc[X.index, outputs].to_numpy(dtype=float)
        keep = np.isfinite(target).all(axis=1) & (history_days(X) >= self.min_history_days())
        if not keep.any():
            raise ValueError(
                f"no row has every target and {self.min_history_days()} days of history to fit on"
            )
        correction = log_residuals(target[keep], self._naive(feats[keep]))
        self.model_ = self._regressor()
        if self.model_ is not None:
            with limit_threads(self.n_threads):
                self.model_.fit(feats[keep], correction)
        self.n_train_rows_ = int(keep.sum())
        self.interval_ = None
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Forecasts for every row of X (its day as the origin), GB, never negative; X's index is kept."""
        feats = self.features_.transform(X)
        log_point = np.log1p(self._naive(feats))
        if self.model_ is not None:
            with limit_threads(self.n_threads):
                log_point = log_point + self.model_.predict(feats).reshape(len(feats), -1)
        outputs = self.outputs()
        out = pd.DataFrame(np.maximum(np.expm1(log_point), 0.0), index=X.index, columns=outputs)
        if self.interval_ is not None:
            for j, name in enumerate(outputs):
                lo, hi = self.interval_[name]
                out[f"{name}_lo"] = np.maximum(np.expm1(log_point[:, j] + lo), 0.0)
                out[f"{name}_hi"] = np.maximum(np.expm1(log_point[:, j] + hi), 0.0)
        return out

    def set_intervals(self, residuals: Mapping[str, np.ndarray] | pd.DataFrame) -> ArchiveForecaster:
        """Interval offsets per output from out-of-sample log residuals (`log_residuals`); returns self."""
        self.interval_ = interval_offsets(residuals, self.outputs(), self.coverage)
        return self

    # -- pieces --------------------------------------------------------------------------------------
    def _naive(self, feats: np.ndarray) -> np.ndarray:
        """The seasonal naive forecast of every output: the flow's sum over the last H days."""
        names = list(self.features_.feature_names_out_)
        cols = [
            names.index(archive_sum_name(flow, days))
            for flow in TARGETS.values()
            for days in self.horizon_days().values()
        ]
        return np.maximum(np.expm1(feats[:, cols]), 0.0)

    def _regressor(self):
        if self.regressor == "seasonal_naive":
            return None
        if self.regressor == "linear":
            return MultiOutputRegressor(make_pipeline(StandardScaler(), Ridge(**dict(self.linear or {}))))
        params = {"random_state": self.random_state, **dict(self.hgb or {})}
        return MultiOutputRegressor(HistGradientBoostingRegressor(**params))


def interval_offsets(residuals, outputs: list[str], coverage: float) -> dict[str, tuple[float, float]]:
    """{output: (low, high)} quantiles of each output's log residuals for a central `coverage` interval."""
    q = ((1 - coverage) / 2, (1 + coverage) / 2)
    out = {}
    for name in outputs:
        r = np.asarray(residuals[name], dtype=float)
        r = r[np.isfinite(r)]
        if not len(r):
            raise ValueError(f"no finite residuals of {name!r} to set its interval from")
        lo, hi = np.quantile(r, q)
        out[name] = (float(min(lo, 0.0)), float(max(hi, 0.0)))
    return out


def targets_of(outputs: list[str]) -> dict[str, list[str]]:
    """{target: its outputs}, e.g. {"archived_gb": ["archived_gb_next_week", ...]} (for tables and charts)."""
    return {t: [o for o in outputs if o.startswith(f"{t}_next_")] for t in TARGETS}


__all__ = ["ArchiveForecaster", "interval_offsets", "log_residuals", "target_name", "targets_of"]
