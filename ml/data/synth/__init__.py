"""Synthetic operations data: sensor telemetry with labelled anomalies and a ServiceNow-like incident history.

Everything here is a pure function of its arguments and a seed (frames in, frames out), except
`write_landing`, the one place that writes files, and the CLI: `python -m ml.data.synth --params params.yaml`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.data.schemas import INCIDENT_COLUMNS, READING_COLUMNS, WINDOW_COLUMNS

SOURCE = "synthetic"
TS_FORMAT = "%Y-%m-%dT%H:%M:%S"
FILE_TS_FORMAT = "%Y%m%dT%H%M"
DEFAULT_START = "2024-01-01"
DEFAULT_MONTHS = 12
_HOUR_NS = 3_600 * 10**9
_SEC_NS = 10**9

# --- ITIL priority and SLA ---------------------------------------------------------------------
_PRIORITY_MATRIX = np.array([[1, 2, 3], [2, 3, 4], [3, 4, 5]])  # rows impact 1..3, columns urgency 1..3
DEFAULT_SLA_HOURS: dict[int, float] = {1: 4.0, 2: 8.0, 3: 24.0, 4: 72.0, 5: 120.0}


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_level(name: str, value: Any) -> int:
    if not _is_int(value) or not 1 <= int(value) <= 3:
        raise ValueError(f"{name} must be an integer 1, 2 or 3, got {value!r}")
    return int(value)


def itil_priority(impact: int, urgency: int) -> int:
    """ServiceNow's default ITIL priority (1 critical .. 5 planning) from impact and urgency (1 high .. 3 low)."""
    return int(_PRIORITY_MATRIX[_check_level("impact", impact) - 1, _check_level("urgency", urgency) - 1])


def itil_priorities(impact: Sequence[int] | np.ndarray, urgency: Sequence[int] | np.ndarray) -> np.ndarray:
    """Vectorised `itil_priority` over equal-length arrays of impact and urgency."""
    arrays = {}
    for name, values in (("impact", impact), ("urgency", urgency)):
        arr = np.asarray(values, dtype=object)
        bad = [v for v in arr.ravel().tolist() if not _is_int(v) or not 1 <= v <= 3]
        if bad:
            raise ValueError(f"{name} must be 1, 2 or 3; got {bad[:5]}")
        arrays[name] = arr.astype(np.int64)
    if arrays["impact"].shape != arrays["urgency"].shape:
        raise ValueError("impact and urgency must have the same shape")
    return _PRIORITY_MATRIX[arrays["impact"] - 1, arrays["urgency"] - 1]


def sla_target_hours(priority: int, targets: Mapping[int, float] | None = None) -> float:
    """Resolution SLA target in hours for a priority (default P1 4h, P2 8h, P3 24h, P4 72h, P5 120h)."""
    table = DEFAULT_SLA_HOURS if targets is None else targets
    if not _is_int(priority) or int(priority) not in table:
        raise ValueError(f"priority must be one of {sorted(table)}, got {priority!r}")
    return float(table[int(priority)])


def _rng(seed: int, *tags: str) -> np.random.Generator:
    """An independent random stream per (seed, purpose), so a change in one draw never shifts another."""
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), *(zlib.crc32(t.encode()) for t in tags)])


def _choice_by_uniform(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inverse-CDF categorical draws: row-wise if `p` is 2-D, so each item's pick depends only on its own u."""
    cdf = np.cumsum(p, axis=-1)
    cdf = cdf / cdf[..., -1:]
    if cdf.ndim == 1:
        return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
    return np.minimum((cdf < u[:, None]).sum(axis=1), cdf.shape[1] - 1)


# --- Sensors -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _SensorKind:
    kind: str
    prefix: str
    unit: str
    floor: float
    ceiling: float


SENSOR_KINDS = (
    _SensorKind("temperature", "temp", "degC", 1.0, 80.0),
    _SensorKind("cpu_pct", "cpu", "pct", 0.0, 100.0),
    _SensorKind("request_rate", "req", "req_per_s", 0.0, math.inf),
    _SensorKind("memory_pct", "mem", "pct", 0.0, 100.0),
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


def _sensor_table(n_sensors: int) -> tuple[list[str], list[_SensorKind]]:
    if not _is_int(n_sensors) or n_sensors < 1:
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
    if not _is_int(k) or not 1 <= k <= n_sensors:
        raise ValueError(f"recalibration.sensors must be an integer in 1..{n_sensors}, got {k!r}")
    pct = float(recalibration.get("offset_pct", 0.08))
    if not 0 < pct < 1:
        raise ValueError(f"recalibration.offset_pct must be in (0, 1), got {pct!r}")
    rng = _rng(seed, "sensor-shifts")
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
    kinds: list[_SensorKind], grid: pd.DatetimeIndex, rng: np.random.Generator
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
    kinds: list[_SensorKind],
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
    if not _is_int(anomalies_per_sensor) or anomalies_per_sensor < 0:
        raise ValueError(f"anomalies_per_sensor must be a non-negative integer, got {anomalies_per_sensor!r}")
    ids, kinds = _sensor_table(n_sensors)
    grid = _sensor_grid(start, days, freq)
    n = len(grid)
    shifts = sensor_shifts(
        n_sensors=n_sensors, days=days, freq=freq, start=start, seed=seed, recalibration=recalibration
    )
    rng = _rng(seed, "sensor-values")
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
        value, clean, sd, noise, kinds, grid, ids, anomalies_per_sensor, _rng(seed, "sensor-anomalies"), avoid
    )
    floors = np.array([k.floor for k in kinds])[:, None]
    ceilings = np.array([k.ceiling for k in kinds])[:, None]
    value = np.round(np.clip(value, floors, ceilings), 3)
    keep = ~_missing_mask(protected, missing_rate, _rng(seed, "sensor-missing"))

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


# --- Incidents: catalogue ----------------------------------------------------------------------
@dataclass(frozen=True)
class _System:
    name: str
    team: str
    weight: float
    critical: bool
    contact: str  # contact-type profile
    pairs: tuple[tuple[str, str, str, float], ...]  # (category, subcategory, assignment group, weight)
    aliases: tuple[str, ...]
    objects: tuple[str, ...]
    codes: tuple[str, ...]
    hosts: tuple[str, ...]


_SYSTEMS = (
    _System(
        "SAP ERP", "ERP Applications", 0.11, True, "office",
        (("Software", "Application error", "SAP Support", 0.35), ("Software", "Batch job failure", "SAP Support", 0.2),
         ("Software", "Performance", "SAP Support", 0.15), ("Access", "Authorization", "Identity & Access", 0.15),
         ("Software", "Functional question", "Service Desk", 0.15)),
        ("SAP", "SAP ERP", "S/4HANA", "SAP GUI", "ERP"),
        ("purchase order", "invoice posting", "transaction ME21N", "FB60", "goods receipt", "cost center report",
         "vendor master"),
        ("DBIF_RSQL_SQL_ERROR", "TSV_TNEW_PAGE_ALLOC_FAILED", "MESSAGE_TYPE_X", "error M7 021"),
        ("sapprd-app01", "sapprd-app02", "sapprd-db01"),
    ),
    _System(
        "Exchange Online", "Collaboration Services", 0.10, True, "infra",
        (("Email", "Mail delivery", "Messaging", 0.35), ("Email", "Mailbox", "Messaging", 0.3),
         ("Email", "Calendar", "Messaging", 0.2), ("Access", "Password reset", "Service Desk", 0.15)),
        ("Outlook", "email", "Exchange", "mailbox", "O365 mail"),
        ("shared mailbox", "calendar invite", "distribution list", "attachment", "out of office reply",
         "meeting room"),
        ("550 5.1.1", "0x800CCC0E", "421 4.4.2"),
        ("outlook.office365.com", "mailrelay01"),
    ),
    _System(
        "VPN Gateway", "Network Engineering", 0.08, True, "infra",
        (("Network", "VPN", "Network Ops", 0.6), ("Network", "Connectivity", "Network Ops", 0.25),
         ("Access", "Account locked", "Identity & Access", 0.15)),
        ("VPN", "GlobalProtect", "remote access", "VPN client"),
        ("VPN tunnel", "home office connection", "VPN profile", "remote desktop"),
        ("error 809", "error 720", "gateway timeout"),
        ("vpn-gw01", "vpn-gw02", "vpn.corp.example.com"),
    ),
    _System(
        "Jira", "Developer Tools", 0.06, False, "office",
        (("Software", "Application error", "Application Support", 0.4), ("Software", "Performance", "Application Support", 0.25),
         ("Access", "Authorization", "Identity & Access", 0.2), ("Software", "Functional question", "Service Desk", 0.15)),
        ("Jira", "JIRA", "Jira Software"),
        ("board", "sprint", "ticket workflow", "dashboard", "project PAY"),
        ("HTTP 500", "XSRF check failed", "HTTP 504"),
        ("jira.corp.example.com",),
    ),
    _System(
        "Salesforce CRM", "CRM Team", 0.07, False, "office",
        (("Software", "Application error", "Application Support", 0.35), ("Software", "Functional question", "Service Desk", 0.2),
         ("Access", "Authorization", "Identity & Access", 0.2), ("Software", "Performance", "Application Support", 0.25)),
        ("Salesforce", "SFDC", "CRM"),
        ("opportunity", "lead import", "account page", "quote", "pipeline report"),
        ("INVALID_SESSION_ID", "UNABLE_TO_LOCK_ROW", "Apex CPU time limit exceeded"),
        ("corp.my.salesforce.com",),
    ),
    _System(
        "Oracle DB cluster", "Data Platform", 0.06, True, "infra",
        (("Database", "Performance", "DBA", 0.4), ("Database", "Storage", "DBA", 0.3),
         ("Database", "Connectivity", "DBA", 0.3)),
        ("Oracle", "database", "DB", "Oracle RAC"),
        ("query", "listener", "schema FIN", "nightly ETL", "reporting view"),
        ("ORA-12541", "ORA-00060", "ORA-01555", "ORA-12170"),
        ("oradb-prd01", "oradb-prd02", "oradb-rpt01"),
    ),
    _System(
        "Kubernetes prod", "Platform Engineering", 0.07, True, "infra",
        (("Infrastructure", "Capacity", "Cloud Platform", 0.3), ("Infrastructure", "Server", "Cloud Platform", 0.35),
         ("Software", "Application error", "Cloud Platform", 0.2), ("Network", "DNS", "Network Ops", 0.15)),
        ("Kubernetes", "k8s", "AKS prod", "prod cluster"),
        ("pod", "deployment", "ingress", "namespace payments", "helm release"),
        ("CrashLoopBackOff", "ImagePullBackOff", "OOMKilled", "502 Bad Gateway"),
        ("aks-prod-np1-07", "aks-prod-np1-12", "k8s-prd-node03"),
    ),
    _System(
        "Service Desk portal", "IT Service Management", 0.06, False, "desk",
        (("Software", "Functional question", "Service Desk", 0.4), ("Software", "Application error", "Application Support", 0.35),
         ("Access", "Authorization", "Identity & Access", 0.25)),
        ("self-service portal", "service portal", "ITSM portal", "portal"),
        ("request form", "catalog item", "ticket status", "knowledge article", "approval"),
        ("HTTP 403", "page not found", "HTTP 500"),
        ("servicedesk.corp.example.com",),
    ),
    _System(
        "Payroll", "HR Systems", 0.04, False, "office",
        (("Software", "Batch job failure", "SAP Support", 0.3), ("Software", "Application error", "SAP Support", 0.3),
         ("Software", "Functional question", "Service Desk", 0.25), ("Access", "Authorization", "Identity & Access", 0.15)),
        ("Payroll", "payroll system", "SAP HCM", "payslip portal"),
        ("payslip", "overtime entry", "salary run", "tax form", "expense claim"),
        ("PY-0042", "posting run cancelled", "RPCALC error"),
        ("hcm-prd01",),
    ),
    _System(
        "Wi-Fi campus", "Network Engineering", 0.07, False, "office",
        (("Network", "Wi-Fi", "Network Ops", 0.75), ("Network", "Connectivity", "Network Ops", 0.25)),
        ("Wi-Fi", "WiFi", "wireless", "WLAN", "CorpWLAN"),
        ("meeting room", "floor 3", "canteen", "guest wifi", "building B"),
        ("authentication failed", "no IP address", "limited connectivity"),
        ("ap-b2-314", "wlc01", "ap-a1-107"),
    ),
    _System(
        "Workplace devices", "Workplace Services", 0.16, False, "walkin",
        (("Hardware", "Laptop", "End User Computing", 0.4), ("Hardware", "Printer", "End User Computing", 0.2),
         ("Hardware", "Peripheral", "End User Computing", 0.15), ("Software", "Installation", "End User Computing", 0.25)),
        ("laptop", "notebook", "PC", "docking station", "printer"),
        ("screen", "keyboard", "battery", "docking station", "printer on floor 2", "headset", "Teams", "Visio"),
        ("BSOD 0x0000007E", "error 0x80070005", "toner low"),
        ("LT-4821", "LT-1307", "PRN-F2-01", "LT-7730"),
    ),
    _System(
        "Active Directory / SSO", "Identity Services", 0.12, True, "desk",
        (("Access", "Password reset", "Service Desk", 0.4), ("Access", "Account locked", "Identity & Access", 0.35),
         ("Access", "Authorization", "Identity & Access", 0.25)),
        ("account", "login", "password", "SSO", "MFA"),
        ("password", "MFA token", "user account", "single sign-on", "access group"),
        ("AADSTS50076", "0xC000006A", "account locked"),
        ("adfs01", "dc02", "login.microsoftonline.com"),
    ),
)  # fmt: skip

ASSIGNMENT_GROUPS = (
    "Service Desk", "Network Ops", "DBA", "SAP Support", "Cloud Platform", "Identity & Access",
    "End User Computing", "Messaging", "Application Support",
)  # fmt: skip
# Plausible wrong groups for a misrouted ticket (label noise).
_ALTERNATE_GROUPS = {
    "Service Desk": ("End User Computing", "Identity & Access", "Application Support"),
    "Network Ops": ("Cloud Platform", "End User Computing", "Service Desk"),
    "DBA": ("Application Support", "Cloud Platform", "SAP Support"),
    "SAP Support": ("Application Support", "DBA", "Service Desk"),
    "Cloud Platform": ("Network Ops", "DBA", "Application Support"),
    "Identity & Access": ("Service Desk", "Messaging", "Network Ops"),
    "End User Computing": ("Service Desk", "Network Ops", "Messaging"),
    "Messaging": ("Service Desk", "Identity & Access", "End User Computing"),
    "Application Support": ("SAP Support", "Service Desk", "Cloud Platform"),
}
# Median-hours multipliers: some groups and categories are slower than others.
_GROUP_SPEED = {
    "Service Desk": 0.6, "Network Ops": 1.0, "DBA": 1.25, "SAP Support": 1.5, "Cloud Platform": 0.9,
    "Identity & Access": 0.7, "End User Computing": 1.35, "Messaging": 1.0, "Application Support": 1.3,
}  # fmt: skip
_ROLLOUT_GROUP_SPEED = 1.7  # a new team on a new system is slow
_CATEGORY_SPEED = {
    "Software": 1.0, "Network": 0.9, "Hardware": 1.4, "Database": 1.1, "Access": 0.6, "Email": 0.9,
    "Infrastructure": 0.9,
}  # fmt: skip
_PRIORITY_MEDIAN_HOURS = np.array([np.nan, 1.6, 3.5, 9.0, 27.0, 48.0])  # index = priority
_MAX_WORK_HOURS = 120 * 24.0  # the longest tickets approach ~4 months

CONTACT_TYPES = ("phone", "email", "self-service", "monitoring", "walk-in")
_CONTACT_PROFILES = {
    "office": (0.28, 0.24, 0.38, 0.03, 0.07),
    "infra": (0.2, 0.17, 0.2, 0.38, 0.05),
    "desk": (0.35, 0.15, 0.4, 0.02, 0.08),
    "walkin": (0.3, 0.15, 0.3, 0.0, 0.25),
}
LOCATIONS = ("Amsterdam HQ", "Berlin", "London", "Madrid", "Milan", "New York", "Paris", "Singapore",
             "Warsaw", "Zurich")  # fmt: skip
_LOCATION_WEIGHTS = np.array([0.25, 0.1, 0.14, 0.06, 0.05, 0.12, 0.09, 0.06, 0.08, 0.05])
_N_CALLERS = 400

# Arrivals: relative rate per hour of day and per day of week (Mon..Sun).
_HOUR_WEIGHT = np.array([0.06, 0.05, 0.04, 0.04, 0.05, 0.08, 0.2, 0.5, 0.9, 1.0, 1.0, 0.95,
                         0.8, 0.95, 1.0, 0.95, 0.85, 0.6, 0.35, 0.25, 0.18, 0.14, 0.1, 0.08])  # fmt: skip
_DOW_WEIGHT = np.array([1.1, 1.0, 1.0, 1.0, 0.85, 0.22, 0.18])
_GROWTH = 0.3  # ticket volume grows 30% over the period


@dataclass(frozen=True)
class _RootCause:
    name: str
    systems: tuple[str, ...]
    category: str
    subcategory: str
    group: str
    weight: float
    short: tuple[str, ...]
    detail: tuple[str, ...]


_ROOT_CAUSES = (
    _RootCause(
        "expired certificate on VPN gateway", ("VPN Gateway",), "Network", "VPN", "Network Ops", 0.18,
        ("VPN: certificate error when connecting", "{alias} says server certificate expired",
         "cannot connect to VPN - certificate not valid", "VPN handshake failed (certificate)",
         "certificate warning on {alias}"),
        ("The client shows 'The server certificate has expired'.",
         "SSL handshake failed, certificate expired on {host}.",
         "Error: untrusted certificate chain when connecting."),
    ),
    _RootCause(
        "SAP batch job lock", ("SAP ERP",), "Software", "Batch job failure", "SAP Support", 0.16,
        ("SAP batch job {job} cancelled - lock entry", "{job} stuck on enqueue lock", "SM37 shows {job} cancelled",
         "posting run blocked by lock on {table}"),
        ("Job {job} ended with 'lock entry could not be set'.", "SM12 shows old lock entries from user BATCH.",
         "Enqueue lock on table {table} held for hours."),
    ),
    _RootCause(
        "DB tablespace full", ("Oracle DB cluster",), "Database", "Storage", "DBA", 0.14,
        ("ORA-01653 unable to extend table", "tablespace {ts} full", "inserts failing - tablespace full on {host}",
         "ORA-01654 unable to extend index in {ts}"),
        ("ORA-01653: unable to extend table FIN.GL_LINES by 8192 in tablespace {ts}.",
         "Tablespace {ts} is at 100%.", "Nightly load aborted: unable to extend tablespace."),
    ),
    _RootCause(
        "SSO token misconfiguration", ("Active Directory / SSO", "Jira", "Salesforce CRM", "Service Desk portal"),
        "Access", "Authorization", "Identity & Access", 0.16,
        ("login loop on {app}", "{app} SSO redirect loop", "AADSTS50011 when logging into {app}",
         "SAML token error on {app}", "single sign-on fails for {app}"),
        ("After login it keeps redirecting back to the sign-in page.",
         "Error AADSTS50011: the reply URL does not match.", "SAML assertion invalid, token expires immediately."),
    ),
    _RootCause(
        "disk full on k8s nodes", ("Kubernetes prod",), "Infrastructure", "Capacity", "Cloud Platform", 0.12,
        ("pods evicted on {node} - DiskPressure", "node {node} disk full", "DiskPressure on k8s nodes",
         "ephemeral storage exceeded, pods evicted"),
        ("kubelet reports DiskPressure on {node}.", "Pods evicted: the node was low on resource ephemeral-storage.",
         "/var/lib/containerd at 98% on {node}."),
    ),
    _RootCause(
        "mail relay throttling", ("Exchange Online",), "Email", "Mail delivery", "Messaging", 0.14,
        ("emails delayed - 451 4.7.500", "outgoing mail queued, relay throttling", "mails to customers delayed by hours",
         "bulk mail rejected: throttled by relay"),
        ("NDR says 451 4.7.500 server busy, please try again later.",
         "Messages sit in the queue of the mail relay for hours.", "Relay {host} is throttling our sender address."),
    ),
    _RootCause(
        "Wi-Fi controller firmware bug", ("Wi-Fi campus",), "Network", "Wi-Fi", "Network Ops", 0.10,
        ("wifi keeps disconnecting in building {bld}", "wireless drops every few minutes ({bld})",
         "access points rebooting in building {bld}", "CorpWLAN unstable after AP firmware update"),
        ("Access point {ap} reboots every 20 minutes.", "Controller log shows AP firmware crash.",
         "The whole floor loses wifi several times per hour."),
    ),
)  # fmt: skip
ROOT_CAUSE_SHARE = 0.12  # share of incidents that belong to a recurring root cause
ONE_OFF = "one-off"

_SYMPTOMS = {
    ("Software", "Application error"): ("error when opening {obj}", "{code} when saving {obj}",
                                        "crashes when I open {obj}", "shows an error on {obj}", "cannot save {obj}",
                                        "error message on {obj}"),
    ("Software", "Performance"): ("very slow", "{obj} takes minutes to load", "slow response on {obj}",
                                  "timeouts on {obj}", "performance degraded since this morning"),
    ("Software", "Batch job failure"): ("batch job failed", "nightly job for {obj} did not run",
                                        "scheduled job cancelled", "job stuck: {obj}"),
    ("Software", "Installation"): ("please install {obj}", "installation of {obj} fails", "software update failed",
                                   "need admin rights to install {obj}"),
    ("Software", "Functional question"): ("how do I change {obj}", "question about {obj}",
                                          "where can I find {obj}", "need help with {obj}"),
    ("Network", "VPN"): ("cannot connect to VPN", "VPN disconnects every few minutes", "VPN {code}",
                         "VPN very slow from home"),
    ("Network", "Connectivity"): ("no network connection", "cannot reach {host}", "connection drops",
                                  "network unreachable in {obj}"),
    ("Network", "Wi-Fi"): ("no wifi in {obj}", "wifi keeps dropping", "cannot connect to wireless",
                           "weak signal in {obj}"),
    ("Network", "DNS"): ("DNS resolution fails for {host}", "name not resolved", "cannot resolve {host}"),
    ("Hardware", "Laptop"): ("laptop does not start", "{code} blue screen", "battery not charging",
                             "screen flickering", "laptop very slow"),
    ("Hardware", "Printer"): ("printer not printing", "paper jam on {obj}", "cannot add printer",
                              "print jobs stuck in queue"),
    ("Hardware", "Peripheral"): ("headset not recognized", "docking station not working",
                                 "second monitor stays black", "keyboard broken"),
    ("Database", "Performance"): ("slow queries on {host}", "query on {obj} runs for hours", "database very slow",
                                  "lock waits on {obj}"),
    ("Database", "Storage"): ("disk space alert on {host}", "archive log area almost full",
                              "storage growth on {obj}"),
    ("Database", "Connectivity"): ("cannot connect to database", "{code} from {host}", "connection pool exhausted",
                                   "DB connection refused"),
    ("Access", "Password reset"): ("password reset", "forgot my password", "password expired",
                                   "need a new password"),
    ("Access", "Account locked"): ("account locked", "locked out after password change", "user blocked",
                                   "cannot log in, account locked"),
    ("Access", "Authorization"): ("no access to {obj}", "need access rights for {obj}", "permission denied on {obj}",
                                  "missing role for {obj}"),
    ("Email", "Mail delivery"): ("emails not delivered", "mail stuck in outbox", "bounce {code}",
                                 "not receiving external emails"),
    ("Email", "Mailbox"): ("mailbox full", "cannot open {obj}", "emails disappeared", "mailbox quota exceeded"),
    ("Email", "Calendar"): ("meeting invites not showing", "calendar not syncing", "cannot book {obj}",
                            "delegate cannot see calendar"),
    ("Infrastructure", "Capacity"): ("{obj} out of memory", "cluster at capacity", "autoscaling not working",
                                     "CPU throttling on {obj}"),
    ("Infrastructure", "Server"): ("service down", "{code} on {obj}", "pods restarting", "deployment of {obj} failed"),
}  # fmt: skip
_DETAILS = (
    "Error message: {code}.", "Affects about {users} users at {location}.", "Host: {host}.",
    "I already restarted, no change.", "Colleagues have the same problem.", "This is blocking my work.",
    "It started {when}.", "Please call me back on my mobile.", "Screenshot attached.", "Tried again, still not working.",
)  # fmt: skip
_OTHER_SYSTEM = ("{other} works fine though.", "Might be related to the {other} change yesterday.",
                 "I also cannot open {other}.")  # fmt: skip
# Said at open time when the fix will depend on someone else (a vendor, a part, the user): most pending
# tickets carry one, a few others do too, so the hint is informative but not a label.
_WAIT_HINTS = ("A replacement part has to be ordered.", "Vendor case needs to be opened with the supplier.",
               "User is travelling, available again next week.", "Waiting for the vendor to confirm a fix.",
               "Needs a new device from procurement.", "Third-party support contract has to be involved.")  # fmt: skip
_VAGUE_SHORT = ("it doesn't work, please help", "not working", "urgent issue", "problem with my computer",
                "error message", "cannot work", "system not working", "help needed")  # fmt: skip
_VAGUE_DESC = ("It doesn't work, please help.", "Not working since this morning.", "Please call me back.",
               "Same issue as last week.", "Nothing works, urgent!", "I get an error.")  # fmt: skip
_PREFIXES = ("URGENT: ", "Urgent - ", "RE: ", "FW: ")
_SUFFIXES = (" - not working", " - please help", " ASAP", " again", " (urgent)", " - error")
_GLOBAL_FILL = {
    "job": ("ZFI_POST_DAILY", "ZMM_MRP_RUN", "ZSD_BILLING"),
    "table": ("BKPF", "EKKO", "VBAK"),
    "ts": ("FIN_DATA", "USERS", "ETL_STAGE"),
    "app": ("Jira", "Salesforce", "the service portal", "Confluence"),
    "node": ("aks-prod-np1-07", "aks-prod-np1-12", "k8s-prd-node03"),
    "bld": ("A", "B", "C"),
    "ap": ("ap-b2-314", "ap-a1-107", "ap-c3-221"),
    "when": ("this morning", "yesterday", "after the last update", "on Monday", "about an hour ago",
             "over the weekend"),
}  # fmt: skip
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_ROLLOUT_OBJECTS = ("onboarding form", "HR case", "approval workflow", "document upload", "employee profile",
                    "leave request")  # fmt: skip


def incident_export_time(start: Any = DEFAULT_START, months: int = DEFAULT_MONTHS) -> pd.Timestamp:
    """The moment the final incident export is taken: start + months."""
    return pd.Timestamp(start) + pd.DateOffset(months=int(months))


def _rollout_system(rollout: Mapping[str, Any]) -> tuple[pd.Timestamp, float, _System]:
    """The new system a rollout introduces, with its own team, group and vocabulary."""
    unknown = set(rollout) - {"at", "system", "share", "owning_team", "assignment_group"}
    if unknown:
        raise ValueError(f"rollout has unknown keys {sorted(unknown)}")
    for key in ("at", "system"):
        if key not in rollout:
            raise ValueError(f"rollout needs '{key}'")
    name = str(rollout["system"])
    if name in {s.name for s in _SYSTEMS}:
        raise ValueError(f"rollout.system {name!r} already exists; a rollout introduces a new system")
    share = float(rollout.get("share", 0.15))
    if not 0 < share < 1:
        raise ValueError(f"rollout.share must be in (0, 1), got {share!r}")
    group = str(rollout.get("assignment_group", f"{name} support"))
    words = name.split()
    short = " ".join(words[-2:])
    system = _System(
        name, str(rollout.get("owning_team", f"{name} team")), 0.0, False, "desk",
        (("Software", "Application error", group, 0.35), ("Software", "Functional question", group, 0.35),
         ("Software", "Performance", group, 0.15), ("Access", "Authorization", "Identity & Access", 0.15)),
        (name, short, f"new {short}", f"{short} (new)"),
        _ROLLOUT_OBJECTS,
        ("HTTP 500", "workflow error WF-2031", "submission failed"),
        ("hrportal.corp.example.com",),
    )  # fmt: skip
    return pd.Timestamp(rollout["at"]), share, system


def _arrivals(rng: np.random.Generator, start: pd.Timestamp, export: pd.Timestamp, n: int) -> np.ndarray:
    """Opening times (int ns): business hours and weekdays busier, slight growth over time."""
    hours = pd.date_range(start, export, freq="h", inclusive="left")
    w = (
        _HOUR_WEIGHT[hours.hour]
        * _DOW_WEIGHT[hours.dayofweek]
        * (1.0 + _GROWTH * np.linspace(0, 1, len(hours)))
    )
    idx = _choice_by_uniform(rng.random(n), w)
    return hours.asi8[idx] + rng.integers(0, 3600, n) * _SEC_NS


def _root_cause_arrivals(
    rng: np.random.Generator, start: pd.Timestamp, export: pd.Timestamp, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(root-cause index, opening time) for tickets that come in bursts of episodes, most early in each."""
    counts = rng.multinomial(
        n, [rc.weight for rc in _ROOT_CAUSES] / np.sum([rc.weight for rc in _ROOT_CAUSES])
    )
    span = export.value - start.value
    hour_p = _HOUR_WEIGHT / _HOUR_WEIGHT.sum()
    causes, times = [], []
    for r, count in enumerate(counts):
        n_episodes = int(rng.integers(2, 5))
        ep_start = start.value + (0.05 + 0.85 * rng.random(n_episodes)) * span
        ep_days = rng.uniform(3.0, 14.0, n_episodes)
        which = rng.integers(0, n_episodes, count)
        offset_days = np.floor(np.minimum(rng.exponential(ep_days[which] / 3.0), ep_days[which] - 1e-9))
        day0 = (ep_start[which] // (24 * _HOUR_NS)) * (24 * _HOUR_NS)
        t = day0 + offset_days * 24 * _HOUR_NS + _choice_by_uniform(rng.random(count), hour_p) * _HOUR_NS
        t = t + rng.integers(0, 3600, count) * _SEC_NS
        t = np.where(t < ep_start[which], t + 24 * _HOUR_NS, t)  # before the episode began: next day
        causes.append(np.full(count, r))
        times.append(np.minimum(t, export.value - _SEC_NS).astype(np.int64))
    return np.concatenate(causes).astype(np.int64), np.concatenate(times)


def _business_wait_hours(opened_ns: np.ndarray) -> np.ndarray:
    """Hours from opening until the next business hour (Mon-Fri 08:00-18:00); 0 inside business hours."""
    ts = pd.DatetimeIndex(opened_ns)
    hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60 + ts.second.to_numpy() / 3600
    dow = ts.dayofweek.to_numpy()
    weekday = dow < 5
    inside = weekday & (hour >= 8) & (hour < 18)
    before = weekday & (hour < 8)
    days_ahead = np.select([before, dow == 4, dow == 5], [0, 3, 2], default=1)
    nxt = ts.normalize().asi8 + days_ahead * 24 * _HOUR_NS + 8 * _HOUR_NS
    return np.where(inside, 0.0, (nxt - opened_ns) / _HOUR_NS)


def _group_load(groups: np.ndarray, opened_ns: np.ndarray) -> np.ndarray:
    """Tickets opened in the same group during the previous 24 h, relative to that group's average."""
    ratio = np.ones(len(groups))
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        t = opened_ns[idx]
        count = np.arange(len(idx)) - np.searchsorted(t, t - 24 * _HOUR_NS, side="left")
        ratio[idx] = count / max(count.mean(), 1.0)
    return ratio


def _typos(rnd: random.Random, text: str, rate: float = 0.07) -> str:
    """Swap or drop a character in some longer words, as hurried users do."""
    words = text.split(" ")
    for i, word in enumerate(words):
        w = word.rstrip(".,:;!?)'")  # keep trailing punctuation intact
        if len(w) > 3 and rnd.random() < rate:
            j = rnd.randrange(len(w) - 1)
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rnd.random() < 0.5 else w[:j] + w[j + 1 :]
            words[i] = w + word[len(word.rstrip(".,:;!?)'")) :]
    return " ".join(words)


def _fill(rnd: random.Random, template: str, system: _System, location: str) -> str:
    def pick(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == "alias":
            return rnd.choice(system.aliases)
        if key == "obj":
            return rnd.choice(system.objects)
        if key == "code":
            return rnd.choice(system.codes)
        if key == "host":
            return rnd.choice(system.hosts)
        if key == "users":
            return str(int(math.exp(rnd.uniform(0, math.log(300)))))
        if key == "location":
            return location
        return rnd.choice(_GLOBAL_FILL[key])

    return _PLACEHOLDER.sub(pick, template)


def _ticket_text(
    rnd: random.Random,
    system: _System,
    category: str,
    subcategory: str,
    cause: _RootCause | None,
    vague: bool,
    location: str,
    other_aliases: Sequence[str],
    wait_hint: bool = False,
) -> tuple[str, str]:
    """Short description and 1-4 sentence description (plus the wait hint if asked) for one ticket, noisy on purpose."""
    symptom = _fill(rnd, rnd.choice(_SYMPTOMS[(category, subcategory)]), system, location)
    use_cause = cause is not None and rnd.random() < 0.9
    if vague:
        short = rnd.choice(_VAGUE_SHORT)
        if rnd.random() < 0.3:
            short = f"{rnd.choice(system.aliases)} {short}"
    elif use_cause:
        short = _fill(rnd, rnd.choice(cause.short), system, location)
    else:
        alias = rnd.choice(system.aliases)
        r = rnd.random()
        if r < 0.35:
            short = f"{alias}: {symptom}"
        elif r < 0.6:
            short = f"{symptom} in {alias}"
        elif r < 0.8:
            short = f"{alias} - {symptom}"
        elif r < 0.9:
            short = symptom
        else:
            short = f"{symptom} ({alias})"
    r = rnd.random()
    if r < 0.08:
        short = rnd.choice(_PREFIXES) + short
    elif r < 0.18:
        short = short + rnd.choice(_SUFFIXES)

    if vague:
        sentences = [rnd.choice(_VAGUE_DESC)]
    elif use_cause:
        sentences = [_fill(rnd, rnd.choice(cause.detail), system, location)]
    else:
        sentences = [f"{symptom[0].upper()}{symptom[1:]}."]
    mentions_other = rnd.random() < 0.1
    used: set[str] = set()
    for _ in range(rnd.choice((0, 1, 1, 2, 2, 3)) - mentions_other):  # 1-4 sentences in all
        template = rnd.choice(cause.detail if use_cause and rnd.random() < 0.5 else _DETAILS)
        if template not in used:
            used.add(template)
            sentences.append(_fill(rnd, template, system, location))
    if mentions_other:
        other = _OTHER_SYSTEM[rnd.randrange(len(_OTHER_SYSTEM))].format(other=rnd.choice(other_aliases))
        sentences.insert(rnd.randrange(len(sentences) + 1), other)
    if wait_hint:
        sentences.append(rnd.choice(_WAIT_HINTS))
    description = " ".join(dict.fromkeys(sentences))  # no repeated sentence
    return _typos(rnd, short), _typos(rnd, description)


# --- Incidents: generator ----------------------------------------------------------------------
def make_incidents(
    *,
    n_incidents: int = 20_000,
    start: Any = DEFAULT_START,
    months: int = DEFAULT_MONTHS,
    seed: int = 0,
    rollout: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """A ServiceNow-like incident history, final state as exported at start + months (INCIDENT_COLUMNS)."""
    if not _is_int(n_incidents) or n_incidents < 1:
        raise ValueError(f"n_incidents must be a positive integer, got {n_incidents!r}")
    if not _is_int(months) or months < 1:
        raise ValueError(f"months must be a positive integer, got {months!r}")
    start = pd.Timestamp(start)
    export = incident_export_time(start, months)
    systems = list(_SYSTEMS)
    roll_at, roll_share = None, 0.0
    if rollout:
        roll_at, roll_share, roll_system = _rollout_system(rollout)
        if not start < roll_at < export:
            raise ValueError(f"rollout.at={roll_at} must fall inside {start} .. {export}")
        systems.append(roll_system)
    sys_index = {s.name: i for i, s in enumerate(systems)}
    rng = _rng(seed, "incidents")

    # Who, what and when: recurring root causes come in bursts, the rest follows the weekly rhythm.
    n_rc = round(ROOT_CAUSE_SHARE * n_incidents)
    n_base = n_incidents - n_rc
    base_opened = _arrivals(rng, start, export, n_base)
    base_sys = _choice_by_uniform(rng.random(n_base), np.array([s.weight for s in _SYSTEMS]))
    to_new = rng.random(n_base) < roll_share
    if roll_at is not None:
        base_sys = np.where(to_new & (base_opened >= roll_at.value), len(_SYSTEMS), base_sys)
    rc_cause, rc_opened = _root_cause_arrivals(rng, start, export, n_rc)
    rc_u = rng.random(n_rc)
    rc_sys = np.empty(n_rc, dtype=np.int64)
    for r, cause in enumerate(_ROOT_CAUSES):
        mask = rc_cause == r
        cand = [sys_index[name] for name in cause.systems]
        p = np.array([0.5] + [0.5 / (len(cand) - 1)] * (len(cand) - 1)) if len(cand) > 1 else np.ones(1)
        rc_sys[mask] = np.array(cand)[_choice_by_uniform(rc_u[mask], p)]

    opened = np.concatenate([base_opened, rc_opened])
    sys_i = np.concatenate([base_sys, rc_sys])
    cause_i = np.concatenate([np.full(n_base, -1), rc_cause])
    order = np.argsort(opened, kind="stable")
    opened, sys_i, cause_i = opened[order], sys_i[order], cause_i[order]
    n = n_incidents
    is_rc = cause_i >= 0

    # Category, subcategory and the group that should own it.
    u_pair = rng.random(n)
    category = np.empty(n, dtype=object)
    subcategory = np.empty(n, dtype=object)
    true_group = np.empty(n, dtype=object)
    for k, system in enumerate(systems):
        mask = sys_i == k
        if not mask.any():
            continue
        pick = _choice_by_uniform(u_pair[mask], np.array([p[3] for p in system.pairs]))
        pairs = np.array([p[:3] for p in system.pairs], dtype=object)[pick]
        category[mask], subcategory[mask], true_group[mask] = pairs[:, 0], pairs[:, 1], pairs[:, 2]
    for r, cause in enumerate(_ROOT_CAUSES):
        mask = cause_i == r
        category[mask], subcategory[mask], true_group[mask] = cause.category, cause.subcategory, cause.group

    # Caller, channel, site.
    caller_w = 1.0 / np.arange(1, _N_CALLERS + 1) ** 0.9
    caller_perm = rng.permutation(_N_CALLERS)
    caller = caller_perm[_choice_by_uniform(rng.random(n), caller_w)]
    home = _choice_by_uniform(rng.random(_N_CALLERS), _LOCATION_WEIGHTS)
    loc_i = np.where(rng.random(n) < 0.9, home[caller], _choice_by_uniform(rng.random(n), _LOCATION_WEIGHTS))
    hour = (opened // _HOUR_NS) % 24
    night = (hour < 7) | (hour >= 19)
    profiles = np.array([_CONTACT_PROFILES[s.contact] for s in systems])[sys_i]
    profiles[:, 3] *= np.where(night, 4.0, 1.0)  # at night mostly monitoring opens tickets
    contact_i = _choice_by_uniform(rng.random(n), profiles)
    monitoring = contact_i == 3

    # Impact, urgency, priority, SLA.
    critical = np.array([s.critical for s in systems])[sys_i]
    impact_p = np.where(critical[:, None], [0.1, 0.3, 0.6], [0.04, 0.2, 0.76])
    impact_p = np.where(is_rc[:, None], [0.15, 0.5, 0.35], impact_p)
    urgency_p = np.where(monitoring[:, None], [0.2, 0.6, 0.2], [0.07, 0.5, 0.43])
    impact = _choice_by_uniform(rng.random(n), impact_p) + 1
    urgency = _choice_by_uniform(rng.random(n), urgency_p) + 1
    priority = _PRIORITY_MATRIX[impact - 1, urgency - 1]
    sla = np.array([np.nan, *(DEFAULT_SLA_HOURS[p] for p in range(1, 6))])[priority]

    # Routing with label noise: vague tickets are misrouted more often.
    vague = rng.random(n) < np.where(is_rc, 0.04, 0.08)
    misrouted = rng.random(n) < 0.07 + 0.25 * vague
    u_alt = rng.random(n)
    group = true_group.copy()
    for g in np.unique(true_group[misrouted]):
        mask = misrouted & (true_group == g)
        alternates = _ALTERNATE_GROUPS.get(g, ("Service Desk", "Application Support"))
        group[mask] = np.array(alternates, dtype=object)[(u_alt[mask] * len(alternates)).astype(int)]

    # Time to resolve: priority, group, category, load, off-hours wait, noise, a fat tail of pending tickets.
    load = _group_load(group, opened)
    speed_g = np.array([_GROUP_SPEED.get(g, _ROLLOUT_GROUP_SPEED) for g in group])
    speed_c = np.array([_CATEGORY_SPEED[c] for c in category])
    log_work = (
        np.log(_PRIORITY_MEDIAN_HOURS[priority])
        + np.log(speed_g)
        + np.log(speed_c)
        + 0.35 * np.log(np.clip(load, 0.25, 4.0))
        + 0.5 * misrouted
        + 0.3 * vague
        - 0.2 * monitoring
        + rng.normal(0.0, 0.75, n)
    )
    # Waiting for a vendor, a part or the user: likelier for hardware, and usually said in the ticket.
    pending = rng.random(n) < np.where(category == "Hardware", 0.30, 0.09)
    wait_hint = np.where(pending, rng.random(n) < 0.7, rng.random(n) < 0.02)
    log_work += pending * rng.uniform(2.0, 4.2, n)
    wait = np.where(priority >= 3, _business_wait_hours(opened), 0.0)
    work = _MAX_WORK_HOURS * -np.expm1(-np.exp(log_work) / _MAX_WORK_HOURS)  # soft cap, no pile-up
    ttr_hours = np.maximum(work + wait, 0.05)
    resolved = opened + (np.round(ttr_hours * 3600) * _SEC_NS).astype(np.int64)
    by_caller = rng.random(n) < 0.4
    close_delay_h = np.where(by_caller, rng.uniform(0.05, 48.0, n), 72.0)
    closed = resolved + (np.round(close_delay_h * 3600) * _SEC_NS).astype(np.int64)
    reassign = rng.poisson(0.25 + 1.0 * misrouted + 0.5 * vague + 0.4 * pending) + misrouted

    # Final state at export.
    x = export.value
    is_open = resolved > x
    is_resolved = ~is_open & (closed > x)
    is_new = is_open & (opened > x - 8 * _HOUR_NS) & (rng.random(n) < 0.7)
    touched = opened + (rng.uniform(0.05, 1.0, n) * (x - opened) // _SEC_NS * _SEC_NS).astype(np.int64)
    updated = np.select([is_new, is_open, is_resolved], [opened, touched, resolved], default=closed)
    state = np.select(
        [is_new, is_open & pending, is_open, is_resolved],
        ["New", "On Hold", "In Progress", "Resolved"],
        "Closed",
    ).astype(object)
    reassign = np.where(is_new, 0, reassign)

    # Free text (the only per-ticket Python loop).
    rnd = random.Random(int(rng.integers(0, 2**63)))
    # Mentions of other systems come from the base catalogue, so a rollout leaves earlier tickets unchanged.
    aliases = [
        [a for j, s in enumerate(_SYSTEMS) if j != k for a in s.aliases[:2]] for k in range(len(systems))
    ]
    shorts, descs = [], []
    for i in range(n):
        cause = _ROOT_CAUSES[cause_i[i]] if cause_i[i] >= 0 else None
        s_text, d_text = _ticket_text(
            rnd, systems[sys_i[i]], category[i], subcategory[i], cause, bool(vague[i]), LOCATIONS[loc_i[i]],
            aliases[sys_i[i]], bool(wait_hint[i]),
        )  # fmt: skip
        shorts.append(s_text)
        descs.append(d_text)

    def ts(values: np.ndarray, missing: np.ndarray | None = None) -> pd.Series:
        out = pd.Series(values.astype("datetime64[ns]"))
        return out.mask(missing) if missing is not None else out

    frame = pd.DataFrame(
        {
            "number": [f"INC{10_001 + i:07d}" for i in range(n)],
            "opened_at": ts(opened),
            "sys_updated_at": ts(updated),
            "state": state,
            "caller_id": np.array([f"Caller {c + 1}" for c in range(_N_CALLERS)], dtype=object)[caller],
            "contact_type": np.array(CONTACT_TYPES, dtype=object)[contact_i],
            "location": np.array(LOCATIONS, dtype=object)[loc_i],
            "impact": pd.array(impact, dtype="Int64"),
            "urgency": pd.array(urgency, dtype="Int64"),
            "priority": pd.array(priority, dtype="Int64"),
            "category": category,
            "subcategory": subcategory,
            "cmdb_ci": np.array([s.name for s in systems], dtype=object)[sys_i],
            "owning_team": np.array([s.team for s in systems], dtype=object)[sys_i],
            "assignment_group": group,
            "short_description": np.array(shorts, dtype=object),
            "description": np.array(descs, dtype=object),
            "sla_target_hours": sla.astype(float),
            "reassignment_count": pd.array(reassign, dtype="Int64"),
            "resolved_at": ts(resolved, is_open),
            "closed_at": ts(closed, is_open | is_resolved),
            "made_sla": pd.array(np.where(is_open, None, ttr_hours <= sla), dtype="boolean"),
            "root_cause": np.array([c.name for c in _ROOT_CAUSES] + [ONE_OFF], dtype=object)[cause_i],
            "source": SOURCE,
        }
    )
    frame["source"] = frame["source"].astype(object)
    return frame[INCIDENT_COLUMNS]


def snapshot_incidents(final: pd.DataFrame, as_of: Any) -> pd.DataFrame:
    """The incidents as an export taken at `as_of` would show them, with nothing that happened later."""
    as_of = pd.Timestamp(as_of)
    snap = final.loc[final["opened_at"] <= as_of].copy()
    resolved_by = snap["resolved_at"].notna() & (snap["resolved_at"] <= as_of)
    closed_by = snap["closed_at"].notna() & (snap["closed_at"] <= as_of)
    # Still open in the final export: its last recorded update is visible once it has happened.
    open_update = snap["resolved_at"].isna() & (snap["sys_updated_at"] <= as_of)
    fresh = ~resolved_by & ~open_update
    only_resolved = resolved_by & ~closed_by

    snap.loc[fresh, "state"] = "In Progress"
    snap.loc[fresh, "sys_updated_at"] = snap.loc[fresh, "opened_at"]
    snap.loc[fresh, "reassignment_count"] = 0
    snap.loc[fresh, ["resolved_at", "closed_at"]] = pd.NaT
    snap.loc[fresh, "made_sla"] = pd.NA
    snap.loc[only_resolved, "state"] = "Resolved"
    snap.loc[only_resolved, "sys_updated_at"] = snap.loc[only_resolved, "resolved_at"]
    snap.loc[only_resolved, "closed_at"] = pd.NaT
    return snap.reset_index(drop=True)


def incident_batches(
    final: pd.DataFrame, *, every: str = "14D", start: Any = None, export_at: Any = None
) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """Dated incremental exports: each holds the incidents whose row changed since the previous export."""
    step = pd.Timedelta(every)
    if step <= pd.Timedelta(0):
        raise ValueError(f"every must be a positive duration, got {every!r}")
    if final.empty:
        raise ValueError("cannot cut batches from an empty incident frame")
    export = pd.Timestamp(export_at) if export_at is not None else final["sys_updated_at"].max()
    if final["sys_updated_at"].max() > export:
        raise ValueError(f"export_at={export} is before the last update in the frame")
    t = (pd.Timestamp(start) if start is not None else final["opened_at"].min().normalize()) + step
    as_ofs = []
    while t < export:
        as_ofs.append(t)
        t += step
    as_ofs.append(export)
    batches, previous = [], None
    for as_of in as_ofs:
        snap = snapshot_incidents(final, as_of)
        if previous is not None:
            snap = snap.loc[snap["sys_updated_at"] > previous].reset_index(drop=True)
        batches.append((as_of, snap))
        previous = as_of
    return batches


# --- Landing files -----------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> str:
    """Write bytes via a temporary file and rename, so a reader never sees half a file; return sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, date_format=TS_FORMAT, lineterminator="\n").encode()


def _json_records_bytes(frame: pd.DataFrame) -> bytes:
    """A JSON array of records, one per line: ISO timestamps, null for missing, native ints and booleans."""
    columns = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            values = [v if isinstance(v, str) else None for v in s.dt.strftime(TS_FORMAT).tolist()]
        else:
            values = [None if v is pd.NA or v is None or (isinstance(v, float) and math.isnan(v)) else v
                      for v in s.astype(object).tolist()]  # fmt: skip
        columns[col] = values
    lines = [
        json.dumps(dict(zip(columns, row, strict=True)), sort_keys=True, ensure_ascii=False)
        for row in zip(*columns.values(), strict=True)
    ]
    return ("[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n").encode()


def _remove_stale(directory: Path, pattern: str, keep: set[str]) -> None:
    """Drop batch files of an earlier run that this run did not write, so the landing dir is exactly one run."""
    for old in directory.glob(pattern):
        if old.name not in keep:
            old.unlink()


def write_landing(params: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write the landing zone from the `generate` params: sensor CSV batches, incident JSON batches, labels, manifest."""
    out = Path(out_dir)
    seed = params.get("seed", 0)
    sensor_params = dict(params.get("sensors") or {})
    incident_params = dict(params.get("incidents") or {})
    sensor_every = sensor_params.pop("batch_every", "7D")
    resend = sensor_params.pop("resend_overlap", "6h")
    incident_every = incident_params.pop("batch_every", "14D")

    readings, windows = make_sensors(seed=seed, **sensor_params)
    shifts = sensor_shifts(seed=seed, **sensor_params)
    final = make_incidents(seed=seed, **incident_params)
    export_at = incident_export_time(
        incident_params.get("start", DEFAULT_START), incident_params.get("months", DEFAULT_MONTHS)
    )

    files: list[dict[str, Any]] = []

    def record(rel: str, data: bytes, rows: int, as_of: pd.Timestamp | None = None) -> None:
        entry: dict[str, Any] = {"path": rel, "rows": rows, "sha256": _write_atomic(out / rel, data)}
        if as_of is not None:
            entry["as_of"] = as_of.strftime(TS_FORMAT)
        files.append(entry)

    sensor_names = set()
    for as_of, batch in sensor_batches(readings, every=sensor_every, resend_overlap=resend):
        name = f"readings_{as_of.strftime(FILE_TS_FORMAT)}.csv"
        sensor_names.add(name)
        record(f"sensors/{name}", _csv_bytes(batch[READING_COLUMNS]), len(batch), as_of)
    record("sensors/anomaly_windows.csv", _csv_bytes(windows[WINDOW_COLUMNS]), len(windows))
    record("sensors/shifts.csv", _csv_bytes(shifts), len(shifts))
    _remove_stale(out / "sensors", "readings_*.csv", sensor_names)

    incident_names = set()
    for as_of, batch in incident_batches(final, every=incident_every, export_at=export_at):
        name = f"incidents_{as_of.strftime(FILE_TS_FORMAT)}.json"
        incident_names.add(name)
        record(f"incidents/{name}", _json_records_bytes(batch[INCIDENT_COLUMNS]), len(batch), as_of)
    _remove_stale(out / "incidents", "incidents_*.json", incident_names)

    rollout = incident_params.get("rollout") or None
    recal = sensor_params.get("recalibration") or None
    closed_or_resolved = final["made_sla"].notna()
    manifest = {
        "generator": "ml.data.synth",
        "seed": seed,
        "params": params,
        "rows": {
            "sensor_readings": len(readings),
            "anomaly_windows": len(windows),
            "sensor_shifts": len(shifts),
            "incidents": len(final),
        },
        "injected_shifts": {
            "sensor_recalibration_at": pd.Timestamp(recal["at"]).strftime(TS_FORMAT) if recal else None,
            "recalibrated_sensors": shifts["sensor_id"].tolist(),
            "incident_rollout_at": pd.Timestamp(rollout["at"]).strftime(TS_FORMAT) if rollout else None,
            "rollout_system": str(rollout["system"]) if rollout else None,
        },
        "incidents": {
            "export_at": export_at.strftime(TS_FORMAT),
            "open_at_export": int((~closed_or_resolved).sum()),
            "breach_rate": round(
                float(1.0 - final.loc[closed_or_resolved, "made_sla"].astype(bool).mean()), 4
            ),
        },
        "files": files,
    }
    text = json.dumps(manifest, sort_keys=True, indent=2, default=str) + "\n"
    _write_atomic(out / "manifest.json", text.encode())
    return json.loads(text)


def _smoke_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Shrink the generate params for a quick run: 2,000 incidents, 21 days of sensors (shift dates scaled along)."""
    smoke = json.loads(json.dumps(params, default=str))
    sensors = smoke.setdefault("sensors", {})
    days = float(sensors.get("days", 60))
    new_days = min(days, 21)
    recal = sensors.get("recalibration")
    if recal and new_days < days:
        start = pd.Timestamp(sensors.get("start", DEFAULT_START))
        frac = (pd.Timestamp(recal["at"]) - start) / pd.Timedelta(days=days)
        recal["at"] = (start + frac * pd.Timedelta(days=new_days)).floor("h").strftime(TS_FORMAT)
    sensors["days"] = new_days
    incidents = smoke.setdefault("incidents", {})
    incidents["n_incidents"] = min(int(incidents.get("n_incidents", 20_000)), 2_000)
    return smoke


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write the synthetic landing zone from the `generate` section of params.yaml."""
    from ml.config import load_params

    parser = argparse.ArgumentParser(prog="python -m ml.data.synth", description=main.__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file with a `generate` section")
    parser.add_argument("--out", default="data/landing", help="landing directory to (re)write")
    parser.add_argument(
        "--smoke", action="store_true", help="small run: 2,000 incidents and 21 days of sensors"
    )
    args = parser.parse_args(argv)
    params = load_params(args.params).get("generate")
    if not isinstance(params, Mapping):
        parser.error(f"{args.params} has no `generate` section")
    if args.smoke:
        params = _smoke_params(params)
    manifest = write_landing(params, args.out)
    rows, shifts, inc = manifest["rows"], manifest["injected_shifts"], manifest["incidents"]
    sensor_files = [f for f in manifest["files"] if f["path"].startswith("sensors/readings_")]
    incident_files = [f for f in manifest["files"] if f["path"].startswith("incidents/")]
    print(
        f"sensors: {rows['sensor_readings']:,} readings in {len(sensor_files)} batches, "
        f"{rows['anomaly_windows']} anomaly windows, {rows['sensor_shifts']} recalibrated sensors "
        f"(at {shifts['sensor_recalibration_at']}) -> {Path(args.out) / 'sensors'}"
    )
    print(
        f"incidents: {rows['incidents']:,} incidents in {len(incident_files)} batches, "
        f"{inc['open_at_export']} open at {inc['export_at']}, breach rate {inc['breach_rate']:.1%}, "
        f"rollout {shifts['rollout_system']} at {shifts['incident_rollout_at']} -> {Path(args.out) / 'incidents'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
