"""The sensor detector (`ml.sensors.anomaly`: window features -> calibrated Isolation Forest -> likelihood,
novelty rule, hold after a peak) for one request, in numpy: no pandas on the request path.

Each step mirrors the fitted Pipeline's own code (`SensorWindowFeatures._one_sensor`,
`CalibratedIsolationForest.stream_score`, `ml.sensors.likelihood`) with the fitted parameters read from the
objects; rolling windows are computed on the request's own readings, like the batch function does.
tests/unit/serving/test_fast_equality.py checks the result against `anomaly.score_readings` to 1e-9.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.special import log_ndtr

from ml.features import SENSOR_FEATURES
from ml.sensors import anomaly, likelihood
from ml.serving.fast.trees import PackedIsolationForest, Unsupported

HOUR = np.timedelta64(3600, "s")


@lru_cache(maxsize=32)  # bounded: 1,000 readings x a 168 window is 1.3 MB
def _window_index(n: int, w: int) -> np.ndarray:
    """Positions of each row's trailing window in the series padded with w-1 leading slots."""
    return np.arange(n)[:, None] + np.arange(w)[None, :]


@lru_cache(maxsize=32)
def _inside(n: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Which slots of each row's trailing window lie inside the series (n, w), and how many per row
    (shared: read-only)."""
    inside = _window_index(n, w) >= w - 1
    count = inside.sum(axis=1)
    inside.flags.writeable = count.flags.writeable = False
    return inside, count


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    """Trailing windows of each series of `x` (..., n) -> (..., n, w); slots before the start hold 0."""
    pad = np.zeros((*x.shape[:-1], w - 1))
    return np.concatenate([pad, x], axis=-1)[..., _window_index(x.shape[-1], w)]


def _mean_std(win: np.ndarray, k: int):
    """Rolling mean and sample std over the last k slots of `_windows` of series without NaN: the same
    sums as `_rolling` (the slots before the start count 0), for every series at once -> mean, std, count."""
    n, w = win.shape[-2:]
    inside, count = _inside(n, k)
    win = np.ascontiguousarray(win[..., w - k :])  # contiguous rows: numpy sums them as `_rolling` does
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = win.sum(axis=-1) / count
        dev = (win - mean[..., None]) * inside
        std = np.sqrt((dev * dev).sum(axis=-1) / (count - 1))
    return mean, std, count


def _median(win: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling median over the last k slots of `_windows` of one series without NaN -> median, count."""
    n, w = win.shape
    inside, count = _inside(n, k)
    ordered = np.sort(np.where(inside, win[:, w - k :], np.inf), axis=1)
    rows = np.arange(n)
    lo, hi = ordered[rows, (count - 1) // 2], ordered[rows, count // 2]
    return np.where(count % 2 == 1, lo, (lo + hi) / 2), count


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


DAY_NS, SECOND_NS = 86_400 * 10**9, 10**9


def _calendar(ts: np.ndarray):
    """datetime64[ns] -> (hour of day incl. minutes, day of week Monday=0, season bin), in integer ns."""
    ns = ts.view(np.int64)
    days = ns // DAY_NS  # floor, like astype("datetime64[D]")
    secs = (ns - days * DAY_NS) // SECOND_NS
    hour_int = secs // 3600
    minute = (secs % 3600) // 60
    dow = (days + 3) % 7  # 1970-01-01 was a Thursday
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
        self.names = np.asarray(SENSOR_FEATURES, dtype=object)

    # -- features ------------------------------------------------------------------------------------
    def features(self, ts: np.ndarray, values: np.ndarray, st: dict) -> np.ndarray:
        """`SensorWindowFeatures._one_sensor` for one sensor's readings in time order -> (n, 11).

        The reading v is forward-filled, so v and its residual hold no NaN and every window's count is
        known: a window over `past` (v shifted by one) is v's window one row earlier. The trailing windows of
        v and the residual are built once and every rolling statistic is read from them.
        """
        n = len(values)
        v = _ffill0((values - st["centre"]) / st["scale"])
        hour, dow, how = _calendar(ts)
        resid = v - st["profile"][how]
        rs = st["resid_std"]
        win = _windows(np.stack([v, resid]), min(max(self.short, self.long, self.baseline), n))
        # the recent normal: median residual of the `baseline` readings before this one (at least 2), else 0
        med, count = _median(win[1], min(self.baseline, n))
        base = np.zeros(n)
        base[1:] = np.where(count[:-1] >= 2, med[:-1], 0.0)
        out = np.empty((n, len(SENSOR_FEATURES)))
        out[:, 0] = (resid - base) / rs
        out[0, 1] = 0.0
        out[1:, 1] = np.diff(v) / st["diff_scale"]
        short, long_ = _mean_std(win, min(self.short, n)), _mean_std(win, min(self.long, n))
        floor = 0.25 * rs  # a near-constant past window must not blow z up to infinity
        for col, (mean, std, count) in ((2, short), (3, long_)):  # z of v against the window before it
            out[0, col] = 0.0
            z = (v[1:] - mean[0, :-1]) / np.maximum(std[0, :-1], floor)
            out[1:, col] = np.where(count[:-1] >= 2, z, 0.0)
        out[:, 4] = np.where(short[2] >= 2, short[1][1] / rs, 1.0)
        same = np.zeros(n, dtype=bool)
        same[1:] = np.abs(np.diff(v)) < 1e-9
        pos = np.arange(n)
        run = pos - np.maximum.accumulate(np.where(same, 0, pos))  # readings since the last change
        out[:, 5] = np.minimum(run, self.max_flat)
        # drift: the last long window's mean residual against the baseline before that window began
        before = base.copy()
        if self.long < n:
            before[self.long :] = base[: n - self.long]
        out[:, 6] = (long_[0][1] - before) / rs
        out[:, 7], out[:, 8] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
        out[:, 9], out[:, 10] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
        return out

    # -- the calibrated stream score ------------------------------------------------------------------
    def _likelihood(self, raw: np.ndarray) -> np.ndarray:
        """`likelihood.anomaly_likelihood(raw, average=1, history, std_floor, prior)` (min_history 100)."""
        n = len(raw)
        prior_mean = self.prior[0] if self.prior[0] is not None else raw.mean()
        if n <= 100:  # no reading has the 100 earlier scores of a trailing distribution: the prior's
            z = (raw - prior_mean) / np.maximum(self.prior[1], self.std_floor)
        else:  # the trailing distribution of earlier scores (at most `history` of them)
            count = np.minimum(np.arange(n), self.history)
            mean, std = np.full(n, prior_mean), np.full(n, self.prior[1])
            for i in np.flatnonzero(count >= 100):
                past = raw[i - count[i] : i]
                mean[i], std[i] = past.mean(), past.std(ddof=1)
            z = (raw - mean) / np.maximum(std, self.std_floor)
        z[:1] = np.nan  # pandas' rolling count is NaN (not 0) on an empty window: no prior, score 0
        missing = np.isnan(z)
        score = -log_ndtr(-np.where(missing, -np.inf, z)) / np.log(10.0) / likelihood.LOG_FLOOR
        return np.minimum(np.maximum(np.where(missing, 0.0, score), 0.0), 1.0)

    def _novelty(self, values: np.ndarray, seen: tuple[float, float]) -> np.ndarray:
        """`likelihood.range_novelty(values, margin=..., seen=...)`."""
        prev_lo = np.minimum.accumulate(values)
        prev_hi = np.maximum.accumulate(values)
        lo = np.minimum(np.concatenate([[np.inf], prev_lo[:-1]]), seen[0])
        hi = np.maximum(np.concatenate([[-np.inf], prev_hi[:-1]]), seen[1])
        if not (math.isfinite(seen[0]) and math.isfinite(seen[1])):  # nothing seen before: no range yet
            lo, hi = np.where(np.isinf(lo), np.nan, lo), np.where(np.isinf(hi), np.nan, hi)
        width = np.maximum(hi - lo, 1e-9)
        excess = np.maximum(lo - values, values - hi) / width - self.margin
        out = np.minimum(np.maximum(np.where(np.isnan(excess), 0.0, excess), 0.0), 1.0)
        out[:1] = 0.0
        return out

    def _hold(self, s: np.ndarray) -> np.ndarray:
        if self.hold <= 0 or len(s) == 0:
            return s.copy()
        if self.hold >= len(s) - 1:  # every window reaches the first reading: the running max
            prev = np.empty(len(s))
            prev[0] = np.nan
            prev[1:] = np.maximum.accumulate(s[:-1])
        else:
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

    def _scored(self, feats: np.ndarray, values: np.ndarray, present: np.ndarray, st: dict) -> np.ndarray:
        """The stream score of one sensor's readings in time order; NaN for the missing ones."""
        seen = (st.get("lo", np.inf), st.get("hi", -np.inf))
        if present.all():
            return self.stream_score(feats, values, seen)
        score = np.full(len(values), np.nan)
        if present.any():
            score[present] = self.stream_score(feats[present], values[present], seen)
        return score

    # -- one request ----------------------------------------------------------------------------------
    def score(self, sensor_ids: list[str], ts: np.ndarray, values: np.ndarray, explain: str):
        """-> (score with NaN for missing readings, is_anomaly, top_feature per reading), request order.

        Returns None when the request needs the slow path's error (an unknown sensor, two readings of a
        sensor at one time): the slow path then answers with its own message. A finite but extreme reading
        (say 1e300) overflows the window sums to inf; the trees still route it (scored 1, anomalous), so
        the overflow is expected there and not warned about once per request.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            return self._score(sensor_ids, ts, values, explain)

    def _score(self, sensor_ids: list[str], ts: np.ndarray, values: np.ndarray, explain: str):
        n = len(sensor_ids)
        present = ~np.isnan(values)
        if n and sensor_ids.count(sensor_ids[0]) == n and (n == 1 or bool((ts[1:] > ts[:-1]).all())):
            # the common request: one sensor's readings in time order (no duplicate), no reordering
            st = self.sensors.get(sensor_ids[0])
            if st is None:
                return None
            feats = self.features(ts, values, st)
            score = self._scored(feats, values, present, st)
        else:
            feats, score = np.zeros((n, len(SENSOR_FEATURES))), np.full(n, np.nan)
            groups: dict[str, list[int]] = {}
            for i, sid in enumerate(sensor_ids):
                groups.setdefault(sid, []).append(i)
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
                score[order] = self._scored(f, values[order], present[order], st)
        flagged = np.greater(score, self.threshold, where=present, out=np.zeros(n, dtype=bool))
        which = {"flagged": flagged, "all": present, "none": None}[explain]
        top: list = [None] * n
        if which is not None and which.any():
            every = bool(which.all())
            z = np.abs((feats if every else feats[which]) - self.medians) / self.scales
            names = self.names[z.argmax(axis=1)].tolist()
            if every:
                top = names
            else:
                for i, name in zip(np.flatnonzero(which).tolist(), names, strict=True):
                    top[i] = name
        return score, flagged, top
