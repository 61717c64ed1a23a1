"""Shared builder of the forecasting tests: an hourly gold `sensor_series` frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def _hourly(
    sensor_id: str = "cpu-01",
    *,
    days: int = 21,
    trend: float = 0.0,
    noise: float = 0.3,
    kind: str = "cpu_pct",
    level: float = 50.0,
    seed: int = 0,
    noisy_until: int | None = None,
) -> pd.DataFrame:
    n = 24 * days
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    eps = noise * rng.standard_normal(n)
    if noisy_until is not None:
        eps[noisy_until:] = 0.0
    value = level + 10 * np.sin(2 * np.pi * t / 24) + trend * t + eps
    return pd.DataFrame(
        {
            "sensor_id": sensor_id,
            "kind": kind,
            "unit": "pct",
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="1h"),
            "value": value,
            "is_missing": False,
            "is_anomaly": False,
            "anomaly_kind": None,
        }
    )


@pytest.fixture(scope="session")
def hourly():
    """Builder of a daily sine (+ trend, + Gaussian noise) on an hourly grid, as a gold `sensor_series` frame."""
    return _hourly
