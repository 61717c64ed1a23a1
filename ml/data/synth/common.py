"""Shared pieces of the generator: ITIL priority and SLA targets, seeded random streams, file formats."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SOURCE = "synthetic"
TS_FORMAT = "%Y-%m-%dT%H:%M:%S"
FILE_TS_FORMAT = "%Y%m%dT%H%M"
DEFAULT_START = "2024-01-01"
DEFAULT_MONTHS = 12
HOUR_NS = 3_600 * 10**9
SEC_NS = 10**9

# --- ITIL priority and SLA ---------------------------------------------------------------------
PRIORITY_MATRIX = np.array([[1, 2, 3], [2, 3, 4], [3, 4, 5]])  # rows impact 1..3, columns urgency 1..3
DEFAULT_SLA_HOURS: dict[int, float] = {1: 4.0, 2: 8.0, 3: 24.0, 4: 72.0, 5: 120.0}


def is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_level(name: str, value: Any) -> int:
    if not is_int(value) or not 1 <= int(value) <= 3:
        raise ValueError(f"{name} must be an integer 1, 2 or 3, got {value!r}")
    return int(value)


def itil_priority(impact: int, urgency: int) -> int:
    """ServiceNow's default ITIL priority (1 critical .. 5 planning) from impact and urgency (1 high .. 3 low)."""
    return int(PRIORITY_MATRIX[_check_level("impact", impact) - 1, _check_level("urgency", urgency) - 1])


def itil_priorities(impact: Sequence[int] | np.ndarray, urgency: Sequence[int] | np.ndarray) -> np.ndarray:
    """Vectorised `itil_priority` over equal-length arrays of impact and urgency."""
    arrays = {}
    for name, values in (("impact", impact), ("urgency", urgency)):
        arr = np.asarray(values, dtype=object)
        bad = [v for v in arr.ravel().tolist() if not is_int(v) or not 1 <= v <= 3]
        if bad:
            raise ValueError(f"{name} must be 1, 2 or 3; got {bad[:5]}")
        arrays[name] = arr.astype(np.int64)
    if arrays["impact"].shape != arrays["urgency"].shape:
        raise ValueError("impact and urgency must have the same shape")
    return PRIORITY_MATRIX[arrays["impact"] - 1, arrays["urgency"] - 1]


def sla_target_hours(priority: int, targets: Mapping[int, float] | None = None) -> float:
    """Resolution SLA target in hours for a priority (default P1 4h, P2 8h, P3 24h, P4 72h, P5 120h)."""
    table = DEFAULT_SLA_HOURS if targets is None else targets
    if not is_int(priority) or int(priority) not in table:
        raise ValueError(f"priority must be one of {sorted(table)}, got {priority!r}")
    return float(table[int(priority)])


def random_stream(seed: int, *tags: str) -> np.random.Generator:
    """An independent random stream per (seed, purpose), so a change in one draw never shifts another."""
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), *(zlib.crc32(t.encode()) for t in tags)])


def choice_by_uniform(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inverse-CDF categorical draws: row-wise if `p` is 2-D, so each item's pick depends only on its own u."""
    cdf = np.cumsum(p, axis=-1)
    cdf = cdf / cdf[..., -1:]
    if cdf.ndim == 1:
        return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
    return np.minimum((cdf < u[:, None]).sum(axis=1), cdf.shape[1] - 1)
