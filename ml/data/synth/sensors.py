"""Synthetic sensor telemetry: seasonal readings with gaps, labelled anomaly windows and recalibrations."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.data.schemas import READING_COLUMNS, WINDOW_COLUMNS
from ml.data.synth.common import DEFAULT_START, is_int, random_stream


@dataclass(frozen=True)
class SensorKind:
    kind: str
    prefix: str
    unit: str
    floor: float
    ceiling: float


SENSOR_KINDS = (
    SensorKind("temperature", "temp", "degC", 1.0, 80.0),
    SensorKind("cpu_pct", "cpu", "pct", 0.0, 100.0),
    SensorKind("request_rate", "req", "req_per_s", 0.0, math.inf),
    SensorKind("memory_pct", "mem", "pct", 0.0, 100.0),
)
ANOMALY_KINDS = ("spike", "level_shift", "drift", "stuck", "variance_burst")
_ANOMALY_HOURS = {"level_shift": (6, 18), "drift": (18, 36), "stuck": (6, 18), "variance_burst": (6, 12)}
_WINDOW_MARGIN_HOURS = 2.0
CLEAN_FRACTION = 0.2  # the first 20% of every series carries no anomaly (training part)


def _sensor_grid(start: Any, days: float, freq: str) -> pd.DatetimeIndex:
    step = pd.Timedelta(freq)
    if step <= pd.Timedelta(0):
        raise ValueError(f"freq must be a positive duration, got {freq!r}")
    if days <= 0:
        raise ValueError(f"days must be positive, got {days!r}")
    n = int(pd.Timedelta(days=days) // step)
    if n < 48:
        raise ValueError(f"days={days} at freq={freq!r} gives {n} readings per sensor; need at least 48")
    return pd.date_range(pd.Timestamp(start), periods=n, freq=step)


def _sensor_table(n_sensors: int) -> tuple[list[str], list[SensorKind]]:
    if not is_int(n_sensors) or n_sensors < 1:
        raise ValueError(f"n_sensors must be a positive integer, got {n_sensors!r}")
    kinds = [SENSOR_KINDS[i % len(SENSOR_KINDS)] for i in range(n_sensors)]
    ids = [f"{k.prefix}-{i // len(SENSOR_KINDS) + 1:02d}" for i, k in enumerate(kinds)]
    return ids, kinds


def sensor_shifts(
    *,
    n_sensors: int = 24,
    days: float = 60,
    freq: str = "1h",
    start: Any = DEFAULT_START,
    seed: int = 0,
    missing_rate: float = 0.01,
    anomalies_per_sensor: int = 2,
    recalibration: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The persistent recalibrations (a drift, not an anomaly) that `make_sensors` applies for the same arguments."""
    ids, _ = _sensor_table(n_sensors)
    grid = _sensor_grid(start, days, freq)
    frame = pd.DataFrame(
        {
            "sensor_id": pd.Series([], dtype=object),
            "at": pd.Series([], dtype="datetime64[ns]"),
            "offset_pct": pd.Series([], dtype=float),
        }
    )
    if not recalibration:
        return frame
    unknown = set(recalibration) - {"at", "sensors", "offset_pct"}
    if unknown:
        raise ValueError(
            f"recalibration has unknown keys {sorted(unknown)}; expected at, sensors, offset_pct"
        )
    if "at" not in recalibration:
        raise ValueError("recalibration needs an 'at' timestamp")
    at = pd.Timestamp(recalibration["at"])
    if not grid[0] < at <= grid[-1]:
        raise ValueError(f"recalibration.at={at} is outside the series {grid[0]} .. {grid[-1]}")
    k = recalibration.get("sensors", 3)
    if not is_int(k) or not 1 <= k <= n_sensors:
        raise ValueError(f"recalibration.sensors must be an integer in 1..{n_sensors}, got {k!r}")
    pct = float(recalibration.get("offset_pct", 0.08))
    if not 0 < pct < 1:
        raise ValueError(f"recalibration.offset_pct must be in (0, 1), got {pct!r}")
    rng = random_stream(seed, "sensor-shifts")
    chosen = np.sort(rng.choice(n_sensors, size=int(k), replace=False))
    signs = np.where(rng.random(int(k)) < 0.5, -1.0, 1.0)
    at_on_grid = grid[grid.searchsorted(at)]
    return pd.DataFrame(
        {
            "sensor_id": pd.Series([ids[i] for i in chosen], dtype=object),
            "at": pd.Series([at_on_grid] * int(k), dtype="datetime64[ns]"),
            "offset_pct": signs * pct,
        }
    )


def _clean_signals(
    kinds: list[SensorKind], grid: pd.DatetimeIndex, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal (daily x weekly) level plus trend per sensor, and the noise sd at every step."""
    n = len(grid)
    hour = grid.hour.to_numpy() + grid.minute.to_numpy() / 60.0
    weekday = grid.dayofweek.to_numpy() < 5
    daily = ((1.0 - np.cos(2.0 * np.pi * (hour - 2.0) / 24.0)) / 2.0) ** 1.5  # low ~02:00, high ~14:00
    activity = daily * np.where(weekday, 1.0, 0.4)
    tfrac = np.linspace(0.0, 1.0, n)
    clean = np.empty((len(kinds), n))
    sd = np.empty((len(kinds), n))
    for s, k in enumerate(kinds):
        u = rng.random(4)
        if k.kind == "temperature":  # data-centre inlet, warmer under load
            clean[s] = 19.0 + 5.0 * u[0] + (1.0 + 1.5 * u[1]) * activity + (-0.5 + 1.5 * u[2]) * tfrac
            sd[s] = 0.15 + 0.15 * u[3]
        elif k.kind == "cpu_pct":
            clean[s] = 8.0 + 12.0 * u[0] + (25.0 + 20.0 * u[1]) * activity + 5.0 * u[2] * tfrac
            sd[s] = 1.5 + 1.5 * u[3]
        elif k.kind == "request_rate":  # multiplicative: quiet nights and weekends, growing traffic
            base = 40.0 * 10 ** (1.3 * u[0])
            floor = 0.15 + 0.15 * u[1]
            clean[s] = base * (floor + (1.0 - floor) * activity) * (1.0 + (0.05 + 0.15 * u[2]) * tfrac)
            sd[s] = (0.04 + 0.03 * u[3]) * clean[s]
        else:  # memory_pct: mild daily swing, slow growth
            clean[s] = 35.0 + 25.0 * u[0] + (4.0 + 6.0 * u[1]) * activity + (2.0 + 6.0 * u[2]) * tfrac
            sd[s] = 0.6 + 0.6 * u[3]
    return clean, sd


def _ar1_noise(rng: np.random.Generator, n_series: int, n: int) -> np.ndarray:
    """Unit-variance AR(1) noise per series (sensors are smooth-ish, not white)."""
    phi = 0.3 + 0.4 * rng.random(n_series)
    z = rng.standard_normal((n_series, n))
    e = np.empty_like(z)
    e[:, 0] = z[:, 0]
    c = np.sqrt(1.0 - phi**2)
    for t in range(1, n):
        e[:, t] = phi * e[:, t - 1] + c * z[:, t]
    return e


def _inject_anomalies(
    value: np.ndarray,
    clean: np.ndarray,
    sd: np.ndarray,
    noise: np.ndarray,
    kinds: list[SensorKind],
    grid: pd.DatetimeIndex,
    ids: list[str],
    per_sensor: int,
    rng: np.random.Generator,
    avoid: int | None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Apply `per_sensor` anomalies to each row of `value` in place; return their windows and a mask of them."""
    n_sensors, n = value.shape
    step_h = (grid[1] - grid[0]) / pd.Timedelta("1h")
    margin = max(1, round(_WINDOW_MARGIN_HOURS / step_h))
    lo = math.ceil(CLEAN_FRACTION * n)
    protected = np.zeros_like(value, dtype=bool)
    rows: list[tuple[str, pd.Timestamp, pd.Timestamp, str]] = []
    seg = (n - lo) / max(per_sensor, 1)
    for s in range(n_sensors if per_sensor else 0):
        order = rng.permutation(per_sensor)
        scale = max(float(clean[s].std()), float(sd[s].mean()))
        multiplicative = kinds[s].kind == "request_rate"
        for j in range(per_sensor):
            kind = ANOMALY_KINDS[(s * per_sensor + j) % len(ANOMALY_KINDS)]
            if kind == "spike":
                length = int(rng.integers(1, 4))
            else:
                lo_h, hi_h = _ANOMALY_HOURS[kind]
                length = max(2, round(rng.uniform(lo_h, hi_h) / step_h))
            seg_start, seg_end = int(lo + order[j] * seg), int(lo + (order[j] + 1) * seg)
            first, last = seg_start + margin, seg_end - margin - length
            a0 = None
            for _ in range(100):
                if last < first:
                    break
                cand = int(rng.integers(first, last + 1))
                if avoid is None or not cand - margin - 1 <= avoid <= cand + length + margin:
                    a0 = cand
                    break
            if a0 is None:
                raise ValueError(
                    f"series of {n} steps is too short for {per_sensor} anomalies per sensor "
                    f"after the clean first {CLEAN_FRACTION:.0%}"
                )
            span = slice(a0, a0 + length)
            sign = 1.0 if rng.random() < 0.7 else -1.0
            strength = rng.uniform(1.0, 1.4)
            local_sd = float(sd[s, a0])
            if kind == "spike":
                jitter = 1.0 + 0.15 * rng.standard_normal(length)
                if multiplicative:
                    factor = rng.uniform(2.5, 4.0) if sign > 0 else rng.uniform(0.03, 0.2)
                    value[s, span] *= factor * jitter if sign > 0 else factor
                else:
                    delta = max(10 * local_sd, 4 * scale) * rng.uniform(1.0, 1.5) * jitter
                    if sign < 0 and (value[s, span] - delta).min() < kinds[s].floor:
                        sign = 1.0  # a dip that would be clipped at the floor is no spike
                    value[s, span] += sign * delta
            elif kind == "level_shift":
                if multiplicative:
                    value[s, span] *= 1.0 + sign * 0.35 * strength
                else:
                    value[s, span] += sign * max(5 * local_sd, 1.0 * scale) * strength
            elif kind == "drift":
                ramp = np.linspace(1.0 / length, 1.0, length)
                if multiplicative:
                    value[s, span] *= 1.0 + sign * 0.45 * strength * ramp
                else:
                    value[s, span] += sign * max(5 * local_sd, 1.0 * scale) * strength * ramp
            elif kind == "stuck":
                value[s, span] = value[s, a0 - 1]
            else:  # variance_burst
                value[s, span] += (rng.uniform(2.5, 4.0) - 1.0) * sd[s, span] * noise[s, span]
            w0, w1 = a0 - margin, a0 + length - 1 + margin
            protected[s, w0 : w1 + 1] = True
            rows.append((ids[s], grid[w0], grid[w1], kind))
    windows = pd.DataFrame(rows, columns=WINDOW_COLUMNS)
    windows = windows.astype({"sensor_id": object, "anomaly_kind": object})
    for col in ("start", "end"):
        windows[col] = pd.to_datetime(windows[col]).astype("datetime64[ns]")
    windows = windows.sort_values(["sensor_id", "start"], kind="stable").reset_index(drop=True)
    return windows, protected


def _missing_mask(protected: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly round(rate * n) dropped steps per sensor outside anomaly windows: half as short gaps."""
    n_sensors, n = protected.shape
    drop = np.zeros_like(protected)
    target_all = round(rate * n)
    for s in range(n_sensors):
        free = ~protected[s]
        target = min(target_all, int(free.sum()))
        in_gaps = target // 2
        for _ in range(10 * n):
            have = int(drop[s].sum())
            if have >= in_gaps:
                break
            length = min(int(rng.integers(2, 9)), in_gaps - have)
            a = int(rng.integers(0, n - length + 1))
            idx = np.arange(a, a + length)
            drop[s, idx[free[idx]]] = True
        rest = target - int(drop[s].sum())
        candidates = np.flatnonzero(free & ~drop[s])
        drop[s, rng.choice(candidates, size=rest, replace=False)] = True
    return drop


def make_sensors(
    *,
    n_sensors: int = 24,
    days: float = 60,
    freq: str = "1h",
    start: Any = DEFAULT_START,
    seed: int = 0,
    missing_rate: float = 0.01,
    anomalies_per_sensor: int = 2,
    recalibration: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seasonal telemetry with gaps, labelled anomaly windows and optional recalibrations: (readings, windows)."""
    if not 0 <= missing_rate <= 0.2:
        raise ValueError(f"missing_rate must be in [0, 0.2], got {missing_rate!r}")
    if not is_int(anomalies_per_sensor) or anomalies_per_sensor < 0:
        raise ValueError(f"anomalies_per_sensor must be a non-negative integer, got {anomalies_per_sensor!r}")
    ids, kinds = _sensor_table(n_sensors)
    grid = _sensor_grid(start, days, freq)
    n = len(grid)
    shifts = sensor_shifts(
        n_sensors=n_sensors, days=days, freq=freq, start=start, seed=seed, recalibration=recalibration
    )
    rng = random_stream(seed, "sensor-values")
    clean, sd = _clean_signals(kinds, grid, rng)
    noise = _ar1_noise(rng, n_sensors, n)
    value = clean + sd * noise

    avoid = None
    position = {sid: i for i, sid in enumerate(ids)}
    for row in shifts.itertuples(index=False):
        at_idx = int(grid.searchsorted(row.at))
        value[position[row.sensor_id], at_idx:] *= 1.0 + row.offset_pct
        avoid = at_idx
    windows, protected = _inject_anomalies(
        value,
        clean,
        sd,
        noise,
        kinds,
        grid,
        ids,
        anomalies_per_sensor,
        random_stream(seed, "sensor-anomalies"),
        avoid,
    )
    floors = np.array([k.floor for k in kinds])[:, None]
    ceilings = np.array([k.ceiling for k in kinds])[:, None]
    value = np.round(np.clip(value, floors, ceilings), 3)
    keep = ~_missing_mask(protected, missing_rate, random_stream(seed, "sensor-missing"))

    readings = pd.DataFrame(
        {
            "sensor_id": np.repeat(np.array(ids, dtype=object), n),
            "kind": np.repeat(np.array([k.kind for k in kinds], dtype=object), n),
            "unit": np.repeat(np.array([k.unit for k in kinds], dtype=object), n),
            "timestamp": np.tile(grid.to_numpy(dtype="datetime64[ns]"), n_sensors),
            "value": value.ravel(),
        }
    )
    readings = readings.loc[keep.ravel(), READING_COLUMNS]
    return readings.sort_values(["sensor_id", "timestamp"], kind="stable").reset_index(drop=True), windows


def sensor_batches(
    readings: pd.DataFrame, *, every: str = "7D", resend_overlap: str = "6h"
) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """Consecutive time slices as a feed would deliver them, each re-sending the tail of the previous one."""
    step, overlap = pd.Timedelta(every), pd.Timedelta(resend_overlap)
    if step <= pd.Timedelta(0):
        raise ValueError(f"every must be a positive duration, got {every!r}")
    if not pd.Timedelta(0) <= overlap < step:
        raise ValueError(f"resend_overlap must be in [0, every), got {resend_overlap!r}")
    if readings.empty:
        return []
    ts = readings["timestamp"]
    edge = ts.min().normalize()
    end = ts.max()
    batches = []
    first = True
    while edge <= end:
        nxt = edge + step
        own = (ts >= edge) & (ts < nxt)
        if own.any():
            lower = edge if first else edge - overlap
            part = readings.loc[(ts >= lower) & (ts < nxt)]
            part = part.sort_values(["timestamp", "sensor_id"], kind="stable").reset_index(drop=True)
            batches.append((part["timestamp"].max(), part))
            first = False
        edge = nxt
    return batches
