"""Two causal baselines every anomaly detector must beat: a rolling z-score and a seasonal residual.

A score is NaN where a baseline cannot score (missing reading, warm-up); `ml.sensors.evaluation` thresholds
and judges it like any detector.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

MAD_TO_SIGMA = 1.4826  # MAD * this estimates the standard deviation of normal data
MEAN_AD_TO_SIGMA = 1.2533  # mean absolute deviation * this estimates it (fallback when MAD is 0)
SCALE_FLOOR = 1e-9  # relative floor of a baseline's scale, so a flat series scores 0, not 0/0


def rolling_zscore_scores(
    series: pd.Series | pd.DataFrame, window: int = 24, min_periods: int | None = None
) -> pd.Series:
    """Causal z-score: |x_t - mean| / std of the previous `window` readings (x_{t-window} .. x_{t-1}).

    Input: a value Series of one sensor in time order, or a frame with sensor_id, timestamp, value on a
    regular grid (scored per sensor). NaN readings are skipped in the statistics; the score is NaN where
    x_t is NaN or fewer than `min_periods` (default max(2, window // 2)) previous readings exist. std is
    the sample std (ddof=1); a window whose readings are all equal has mean = that value and std = 0; the
    std is floored at SCALE_FLOOR * max(1, |mean|), so a flat series scores 0 and a spike on it a large
    finite number.
    """
    if window < 2:
        raise ValueError(f"window must be >= 2 readings, got {window}")
    mp = max(2, window // 2) if min_periods is None else int(min_periods)
    if not 2 <= mp <= window:
        raise ValueError(f"min_periods must be in [2, window={window}], got {mp}")
    return _per_sensor(series, lambda x: _rolling_zscore(x, window, mp), "rolling_zscore")


def seasonal_residual_scores(
    series: pd.Series | pd.DataFrame,
    period: int = 24,
    n_periods: int = 7,
    *,
    min_seasons: int = 1,
    scale_window: int | None = None,
    min_scale_periods: int | None = None,
) -> pd.Series:
    """Causal seasonal score: |x_t - seasonal expectation| / robust scale of past residuals.

    All lengths are in steps (rows of the regular grid), so any sampling interval works.
    - expectation e_t = median of the non-NaN readings among x_{t-period}, x_{t-2 period}, ...,
      x_{t-n_periods period}; NaN when fewer than `min_seasons` of them exist.
    - residual r_t = x_t - e_t.
    - scale s_t = MAD_TO_SIGMA * median(|r_u - median(r_u)|) over the non-NaN residuals r_u of the previous
      `scale_window` steps (u = t-scale_window .. t-1; default period * n_periods), i.e. the rolling MAD of
      past residuals; when that MAD is 0, MEAN_AD_TO_SIGMA * mean(|r_u - median(r_u)|) instead; then
      floored at SCALE_FLOOR * max(1, |e_t|). NaN when fewer than `min_scale_periods` (default `period`)
      past residuals exist.
    - score_t = |r_t| / s_t; NaN where x_t, e_t or s_t is NaN.
    Input: as `rolling_zscore_scores`.
    """
    if period < 1 or n_periods < 1:
        raise ValueError(f"period and n_periods must be >= 1, got {period}, {n_periods}")
    if not 1 <= min_seasons <= n_periods:
        raise ValueError(f"min_seasons must be in [1, n_periods={n_periods}], got {min_seasons}")
    sw = period * n_periods if scale_window is None else int(scale_window)
    msp = period if min_scale_periods is None else int(min_scale_periods)
    if sw < 2 or not 2 <= msp <= sw:
        raise ValueError(
            f"need scale_window >= 2 and 2 <= min_scale_periods <= scale_window, got {sw}, {msp}"
        )
    return _per_sensor(
        series, lambda x: _seasonal_residual(x, period, n_periods, min_seasons, sw, msp), "seasonal_residual"
    )


def _per_sensor(series: pd.Series | pd.DataFrame, score: Callable[[np.ndarray], np.ndarray], name: str):
    """Apply a causal 1-D scorer to one sensor's values, or to each sensor of a regular-grid frame."""
    if isinstance(series, pd.Series):
        return pd.Series(score(series.to_numpy(dtype=float, na_value=np.nan)), index=series.index, name=name)
    frame = series
    missing = [c for c in ("sensor_id", "timestamp", "value") if c not in frame.columns]
    if missing:
        raise ValueError(f"series frame: missing column(s) {missing}; it has {list(frame.columns)}")
    values = frame["value"].to_numpy(dtype=float, na_value=np.nan)
    ts = frame["timestamp"].to_numpy("datetime64[ns]")
    out = np.full(len(frame), np.nan)
    for sid, idx in frame.groupby("sensor_id", sort=True).indices.items():
        idx = idx[np.argsort(ts[idx], kind="stable")]
        steps = np.unique(np.diff(ts[idx]))
        if len(steps) > 1 or (len(steps) == 1 and steps[0] <= np.timedelta64(0)):
            raise ValueError(
                f"sensor {sid!r}: rows are not a regular time grid (steps {[str(s) for s in steps[:4]]}); "
                "put it on one with ml.data.gold.sensor_grid first"
            )
        out[idx] = score(values[idx])
    return pd.Series(out, index=frame.index, name=name)


def _past(x: np.ndarray, width: int) -> np.ndarray:
    """Row t holds x[t-width .. t-1] (NaN before the series starts): a read-only strided view."""
    padded = np.concatenate([np.full(width, np.nan), x])
    return sliding_window_view(padded, width)[: len(x)]


def _row_nanmedian(block: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (NaN for an all-NaN row); fast path for rows without NaN."""
    out = np.full(len(block), np.nan)
    valid = ~np.isnan(block)
    count = valid.sum(axis=1)
    full = count == block.shape[1]
    if full.any():
        out[full] = np.median(block[full], axis=1)
    partial = ~full & (count > 0)
    if partial.any():
        s = np.sort(block[partial], axis=1)  # NaN sort last
        c = count[partial]
        rows = np.arange(len(s))
        out[partial] = 0.5 * (s[rows, (c - 1) // 2] + s[rows, c // 2])
    return out


def _rolling_zscore(x: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    past = _past(x, window)
    valid = ~np.isnan(past)
    count = valid.sum(axis=1)
    filled = np.where(valid, past, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=1) / count
        sq = np.where(valid, (past - mean[:, None]) ** 2, 0.0).sum(axis=1)
        std = np.sqrt(sq / (count - 1))
        hi = np.where(valid, past, -np.inf).max(axis=1)
        lo = np.where(valid, past, np.inf).min(axis=1)
        flat = (count > 0) & (hi == lo)
        mean = np.where(flat, hi, mean)
        std = np.where(flat, 0.0, std)
        scale = np.maximum(std, SCALE_FLOOR * np.maximum(1.0, np.abs(mean)))
        z = np.abs(x - mean) / scale
    z[(count < min_periods) | np.isnan(x)] = np.nan
    return z


def _seasonal_residual(
    x: np.ndarray, period: int, n_periods: int, min_seasons: int, scale_window: int, min_scale: int
) -> np.ndarray:
    n = len(x)
    seasons = np.full((n, n_periods), np.nan)
    for k in range(1, n_periods + 1):
        if k * period < n:
            seasons[k * period :, k - 1] = x[: n - k * period]
    expect = _row_nanmedian(seasons)
    expect[(~np.isnan(seasons)).sum(axis=1) < min_seasons] = np.nan
    resid = x - expect
    scale = np.full(n, np.nan)
    chunk = max(1, 4_000_000 // scale_window)  # bound the memory of one block of windows
    for lo in range(0, n, chunk):
        block = _past(resid, scale_window)[lo : lo + chunk]
        count = (~np.isnan(block)).sum(axis=1)
        dev = np.abs(block - _row_nanmedian(block)[:, None])
        mad = MAD_TO_SIGMA * _row_nanmedian(dev)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_ad = MEAN_AD_TO_SIGMA * np.where(np.isnan(dev), 0.0, dev).sum(axis=1) / count
        s = np.where(mad > 0, mad, mean_ad)
        s[count < min_scale] = np.nan
        scale[lo : lo + chunk] = s
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(scale, SCALE_FLOOR * np.maximum(1.0, np.abs(expect)))
        return np.abs(resid) / scale
