"""Causal post-processing of a raw anomaly score into a score with the same meaning on every series.

- `anomaly_likelihood`: NAB's anomaly-likelihood idea (Ahmad et al. 2017): a short moving average of the
  raw score is compared with the trailing distribution (mean, standard deviation) of that average; the
  Gaussian tail probability `q` becomes `-log10(q) / 10` in [0, 1] (0.5 reads "a 1-in-100,000 event for
  this series"), so one threshold means the same on a quiet and on a noisy series.
- `hold_suppression`: after a score peak, lower scores for a while cannot alarm again (one alarm per
  episode, whatever threshold is chosen later).
- `range_novelty`: how far a reading lies outside the range seen so far, in units of that range.

All are causal: the output at row t uses rows <= t only. Inputs are 1-D arrays of one series in time order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import log_ndtr

LOG_FLOOR = 10.0  # decades of tail probability that map to a score of 1.0


def anomaly_likelihood(
    raw,
    *,
    average: int = 10,
    history: int = 2000,
    min_history: int = 100,
    std_floor: float = 0.01,
    skip: int = 0,
    prior: tuple[float, float] | None = None,
) -> np.ndarray:
    """Raw scores (higher = stranger) -> calibrated scores in [0, 1] (see the module doc).

    `average` rows are averaged; mean and std come from the previous `history` averages (at least
    `min_history`, else the score is 0); `std_floor` keeps a near-constant raw score from turning tiny
    wiggles into alarms. The first `skip` rows do not enter the trailing distribution (e.g. rows a model was
    fitted on, whose in-sample scores are too low). `prior` = (mean, std) of the raw score on training data,
    used while the trailing history is shorter than `min_history` (a short request to a service).
    """
    x = pd.Series(np.asarray(raw, dtype=float)).ffill().fillna(0.0)
    avg = x.rolling(average, min_periods=1).mean()
    hist = avg.copy()
    hist.iloc[:skip] = np.nan
    past = hist.shift(1).rolling(history, min_periods=2)
    mean, std, count = past.mean(), past.std(), past.count()
    short = (count < min_history).to_numpy()
    if prior is not None:
        mean, std = mean.mask(short, prior[0]), std.mask(short, prior[1])
    else:
        mean = mean.mask(short)
    std = np.maximum(std, std_floor)
    z = ((avg - mean) / std).to_numpy()
    log_q = log_ndtr(-np.nan_to_num(z, nan=-np.inf))  # log of the upper tail probability
    score = -log_q / np.log(10.0) / LOG_FLOOR
    return np.clip(np.where(np.isnan(z), 0.0, score), 0.0, 1.0)


def hold_suppression(score, hold: int) -> np.ndarray:
    """Keep a score only where it beats every score of the previous `hold` rows; others drop to 0.

    After an alarm, the following readings can alarm again only by being stranger still, so one episode
    raises one alarm at any threshold (NAB, and an operator, charge every alarm outside a window).
    """
    s = np.asarray(score, dtype=float)
    if hold <= 0 or len(s) == 0:
        return s.copy()
    prev_max = pd.Series(s).shift(1).rolling(hold, min_periods=1).max().to_numpy()
    keep = np.isnan(prev_max) | (s > prev_max)
    return np.where(keep, s, 0.0)


def range_novelty(
    values, *, warmup: int = 0, margin: float = 0.0, seen: tuple[float, float] = (np.inf, -np.inf)
) -> np.ndarray:
    """How far each reading lies outside [min, max] of all earlier readings, in units of that range.

    `seen` = (min, max) of readings before these (e.g. the training period). 0 inside the range widened
    by `margin` of its width (and during the first `warmup` rows); grows with the excess, capped at 1.
    """
    v = pd.Series(np.asarray(values, dtype=float))
    lo = np.minimum(v.shift(1).cummin().fillna(np.inf), seen[0]).replace(np.inf, np.nan)
    hi = np.maximum(v.shift(1).cummax().fillna(-np.inf), seen[1]).replace(-np.inf, np.nan)
    width = np.maximum((hi - lo).to_numpy(), 1e-9)
    excess = np.maximum(lo.to_numpy() - v.to_numpy(), v.to_numpy() - hi.to_numpy()) / width - margin
    out = np.clip(np.nan_to_num(excess, nan=0.0), 0.0, 1.0)
    out[: max(warmup, 1)] = 0.0
    return out
