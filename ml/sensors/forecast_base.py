"""What the forecast candidates share: integer checks, the season in steps, gap filling, statsmodels' ETS
and a quiet context for statsmodels' warnings."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd


def is_int(value: Any) -> bool:
    """An integer that is not a bool (numpy integers too)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def season_steps(step: pd.Timedelta, season: int | str) -> int:
    """The seasonal period in grid steps: an int is steps already, a duration ('7D') is divided by the step."""
    if is_int(season):
        m = int(season)
    else:
        ratio = pd.Timedelta(season) / step
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"season {season!r} is not a whole number of {step} steps")
        m = round(ratio)
    if m < 2:
        raise ValueError(f"season must span at least 2 steps, got {m} (season={season!r}, step={step})")
    return m


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


def ets_model(values: np.ndarray, season: int, config: Mapping, **init: Any) -> Any:
    """An unfitted statsmodels ETSModel of the configured form on `values`."""
    # imported here: statsmodels takes seconds to import and only ETS fits and loads need it
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


@contextlib.contextmanager
def quiet_statsmodels() -> Iterator[None]:
    """Hide statsmodels' convergence/value warnings (the fit is judged by the backtest, not by warnings)."""
    # imported here: statsmodels takes seconds to import and only ETS fits and loads need it
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, ValueWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ValueWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
