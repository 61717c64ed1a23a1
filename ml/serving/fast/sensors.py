"""The sensor detector (`ml.sensors.anomaly`: window features -> calibrated Isolation Forest -> likelihood,
novelty rule, hold after a peak) for one request, in numpy: no pandas on the request path.

Each step mirrors the fitted Pipeline's own code (`SensorWindowFeatures._one_sensor`,
`CalibratedIsolationForest.stream_score`, `ml.sensors.likelihood`) with the fitted parameters read from the
objects; rolling windows are computed on the request's own readings, like the batch function does.
tests/unit/serving/test_fast_equality.py checks the result against `anomaly.score_readings` to 1e-9.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import log_ndtr

from ml.features import SENSOR_FEATURES
from ml.sensors import anomaly, likelihood
from ml.serving.fast.trees import PackedIsolationForest, Unsupported

HOUR = np.timedelta64(3600, "s")


@lru_cache(maxsize=256)
def _window_index(n: int, w: int) -> np.ndarray:
    """Positions of each row's trailing window in the series padded with w-1 leading slots."""
    return np.arange(n)[:, None] + np.arange(w)[None, :]


def _rolling(x: np.ndarray, w: int, min_periods: int, how: str) -> np.ndarray:
    """pandas `x.rolling(w, min_periods).<how>()` (NaN = no reading in the window).

    Two-pass mean / std per window (a constant window gives exactly 0, like pandas); the median and the
    max by sorting each window. A window longer than the series holds only the padding beyond it, so
    it is cut to the series' length.
    """
    n = len(x)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    w = min(w, n)
    win = np.concatenate([np.full(w - 1, np.nan), x])[_window_index(n, w)]
    valid = win == win  # not NaN
    count = valid.sum(axis=1)
    ok = count >= min_periods
    if not ok.all():
        if not ok.any():
            return out
        win, valid, count = win[ok], valid[ok], count[ok]
    if how in ("mean", "std"):
        mean = np.where(valid, win, 0.0).sum(axis=1) / count
        if how == "mean":
            out[ok] = mean
        else:
            dev = np.where(valid, win - mean[:, None], 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[ok] = np.sqrt((dev * dev).sum(axis=1) / (count - 1))
        return out
    fill = np.inf if how == "median" else -np.inf
    ordered = np.sort(np.where(valid, win, fill), axis=1)
    rows = np.arange(len(count))
    if how == "max":
        out[ok] = ordered[rows, -1]
    else:
        lo, hi = ordered[rows, (count - 1) // 2], ordered[rows, count // 2]
        out[ok] = np.where(count % 2 == 1, lo, (lo + hi) / 2)
    return out


def _shift(x: np.ndarray, k: int = 1) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _ffill0(x: np.ndarray) -> np.ndarray:
    """pandas `.ffill().fillna(0.0)`."""
    if not np.isnan(x).any():
        return x
    idx = np.where(np.isnan(x), 0, np.arange(len(x)))
    np.maximum.accumulate(idx, out=idx)
    out = x[idx]
    return np.where(np.isnan(out), 0.0, out)


def _calendar(ts: np.ndarray):
    """datetime64[ns] -> (hour of day incl. minutes, day of week Monday=0, season bin)."""
    days = ts.astype("datetime64[D]")
    secs = (ts - days) // np.timedelta64(1, "s")
    hour_int = secs // 3600
    minute = (secs % 3600) // 60
    dow = (days.astype(np.int64) + 3) % 7
    return hour_int + minute / 60.0, dow, (dow >= 5) * 24 + hour_int


class FastDetector:
    """A fitted `anomaly.make_detector` Pipeline, compiled for requests of raw readings."""

    def __init__(self, pipe):
        try:
            feats, det = pipe.named_steps["features"], pipe.named_steps["detector"]
        except (AttributeError, KeyError) as exc:
            raise Unsupported(f"not a features -> detector Pipeline ({exc})") from exc
        if type(feats).__name__ != "SensorWindowFeatures" or not isinstance(
            det, anomaly.CalibratedIsolationForest
        ):
            raise Unsupported(f"unknown steps {type(feats).__name__} -> {type(det).__name__}")
        if list(getattr(feats, "feature_names_out_", SENSOR_FEATURES)) != list(SENSOR_FEATURES):
            raise Unsupported("the window features are not the ones this compiler knows")
        self.forest = PackedIsolationForest(det)
        self.sensors = {
            sid: {**st, "profile": np.asarray(st["profile"], dtype=float)}
            for sid, st in feats.sensors_.items()
        }
        self.short, self.long = int(feats.short_window), int(feats.long_window)
        self.baseline, self.max_flat = int(feats.baseline_window), int(feats.max_flat_run)
        self.threshold = float(det.threshold_)
        self.medians, self.scales = det.feature_medians_, det.feature_scales_
        self.how = getattr(det, "calibration", "likelihood")
        if self.how not in ("likelihood", "ecdf", "off"):
            raise Unsupported(f"calibration {self.how!r}")
        self.det = det  # ecdf mode: its anomaly_score's constants (read, never called on the request path)
        self.history, self.std_floor = int(det.history), float(det.std_floor)
        self.prior = (getattr(det, "raw_mean_", None), getattr(det, "raw_std_", self.std_floor))
        self.margin = getattr(det, "novelty_margin", None)
        self.hold = int(getattr(det, "hold", 0) or 0)

    # -- features ------------------------------------------------------------------------------------
    def features(self, ts: np.ndarray, values: np.ndarray, st: dict) -> np.ndarray:
        """`SensorWindowFeatures._one_sensor` for one sensor's readings in time order -> (n, 11)."""
        v = _ffill0((values - st["centre"]) / st["scale"])
        hour, dow, how = _calendar(ts)
        resid = v - st["profile"][how]
        base = _rolling(_shift(resid), self.baseline, 2, "median")
        base = np.where(np.isnan(base), 0.0, base)
        past = _shift(v)
        rs = st["resid_std"]
        out = np.empty((len(v), len(SENSOR_FEATURES)))
        out[:, 0] = (resid - base) / rs
        d = v - past
        out[:, 1] = np.where(np.isnan(d), 0.0, d) / st["diff_scale"]
        for col, w in ((2, self.short), (3, self.long)):
            mean = _rolling(past, w, 2, "mean")
            std = _rolling(past, w, 2, "std")
            z = (v - mean) / np.maximum(std, 0.25 * rs)
            out[:, col] = np.where(np.isnan(z), 0.0, z)
        spread = _rolling(resid, self.short, 2, "std") / rs
        out[:, 4] = np.where(np.isnan(spread), 1.0, spread)
        same = np.zeros(len(v), dtype=bool)
        same[1:] = np.abs(np.diff(v)) < 1e-9
        run = np.zeros(len(v))
        count = 0
        for i, s in enumerate(same):  # length of the current run of repeated readings
            count = count + 1 if s else 0
            run[i] = count
        out[:, 5] = np.minimum(run, self.max_flat)
        before = _shift(base, self.long)
        before = np.where(np.isnan(before), base, before)
        out[:, 6] = (_rolling(resid, self.long, 1, "mean") - before) / rs
        out[:, 7], out[:, 8] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
        out[:, 9], out[:, 10] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
        return out

    # -- the calibrated stream score ------------------------------------------------------------------
    def _likelihood(self, raw: np.ndarray) -> np.ndarray:
        """`likelihood.anomaly_likelihood(raw, average=1, history, std_floor, prior)` (min_history 100)."""
        n = len(raw)
        prior_mean = self.prior[0] if self.prior[0] is not None else raw.mean()
        count = np.minimum(np.arange(n), self.history)
        mean = np.full(n, prior_mean)
        std = np.full(n, self.prior[1])
        long_rows = np.flatnonzero(count >= 100)
        if len(long_rows):  # the trailing distribution of earlier scores (at most `history` of them)
            for i in long_rows:
                past = raw[i - count[i] : i]
                mean[i], std[i] = past.mean(), past.std(ddof=1)
        mean[:1] = np.nan  # pandas' rolling count is NaN (not 0) on an empty window: no prior, score 0
        std = np.maximum(std, self.std_floor)
        z = (raw - mean) / std
        score = -log_ndtr(-np.nan_to_num(z, nan=-np.inf)) / np.log(10.0) / likelihood.LOG_FLOOR
        return np.clip(np.where(np.isnan(z), 0.0, score), 0.0, 1.0)

    def _novelty(self, values: np.ndarray, seen: tuple[float, float]) -> np.ndarray:
        """`likelihood.range_novelty(values, margin=..., seen=...)`."""
        prev_lo = np.minimum.accumulate(values)
        prev_hi = np.maximum.accumulate(values)
        lo = np.minimum(np.concatenate([[np.inf], prev_lo[:-1]]), seen[0])
        hi = np.maximum(np.concatenate([[-np.inf], prev_hi[:-1]]), seen[1])
        lo, hi = np.where(np.isinf(lo), np.nan, lo), np.where(np.isinf(hi), np.nan, hi)
        width = np.maximum(hi - lo, 1e-9)
        excess = np.maximum(lo - values, values - hi) / width - self.margin
        out = np.clip(np.nan_to_num(excess, nan=0.0), 0.0, 1.0)
        out[:1] = 0.0
        return out

    def _hold(self, s: np.ndarray) -> np.ndarray:
        if self.hold <= 0 or len(s) == 0:
            return s.copy()
        prev = _rolling(_shift(s), self.hold, 1, "max")
        return np.where(np.isnan(prev) | (s > prev), s, 0.0)

    def stream_score(self, X: np.ndarray, values: np.ndarray, seen) -> np.ndarray:
        if self.how == "ecdf":
            score = self.det.anomaly_score(X)
        elif self.how == "off":
            score = np.zeros(len(X))
        else:
            score = self._likelihood(-self.forest.score_samples(X))
        if self.margin is not None:
            novel = self._novelty(values, seen)
            score = np.maximum(score, np.where(novel > 0, 0.5 + 0.5 * novel, 0.0))
        return self._hold(score)

    # -- one request ----------------------------------------------------------------------------------
    def score(self, sensor_ids: list[str], ts: np.ndarray, values: np.ndarray, explain: str):
        """-> (score with NaN for missing readings, is_anomaly, top_feature per reading), request order.

        Returns None when the request needs the slow path's error (an unknown sensor, two readings of a
        sensor at one time): the slow path then answers with its own message.
        """
        n = len(sensor_ids)
        score = np.full(n, np.nan)
        feats = np.zeros((n, len(SENSOR_FEATURES)))
        groups: dict[str, list[int]] = {}
        for i, sid in enumerate(sensor_ids):
            groups.setdefault(sid, []).append(i)
        present = ~np.isnan(values)
        for sid, rows in groups.items():
            st = self.sensors.get(sid)
            if st is None:
                return None
            rows = np.asarray(rows)
            order = rows[np.argsort(ts[rows], kind="stable")]
            t = ts[order]
            if len(t) > 1 and np.any(t[1:] == t[:-1]):
                return None
            f = self.features(t, values[order], st)
            feats[order] = f
            keep = present[order]
            if keep.any():
                pos = order[keep]
                seen = (st.get("lo", np.inf), st.get("hi", -np.inf))
                score[pos] = self.stream_score(f[keep], values[pos], seen)
        flagged = np.zeros(n, dtype=bool)
        flagged[present] = score[present] > self.threshold
        which = {"flagged": flagged, "all": present, "none": np.zeros(n, dtype=bool)}[explain]
        top = [None] * n
        if which.any():
            z = np.abs(feats[which] - self.medians) / self.scales
            names = np.asarray(SENSOR_FEATURES, dtype=object)[z.argmax(axis=1)]
            for i, name in zip(np.flatnonzero(which), names, strict=True):
                top[i] = str(name)
        return score, flagged, top
