"""What the archive forecast predicts: GB archived and GB saved by archiving over the next period, per source.

A forecast is made at the end of an origin day (that day's activity is known) for the sum of the next `H` days.
Pure functions of the daily records (`ml.data.gold.archive_grid` or raw rows: a day without a row archived
nothing); no generator knowledge.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

# target -> the daily flow it sums; the issue's `archived_gb_next_period` and `savings_gb_next_period`
TARGETS = {"archived_gb": "archived_gb", "savings_gb": "saved_gb"}


def target_name(target: str, horizon: str) -> str:
    """`archived_gb_next_week`, `savings_gb_next_month`, ...: one output of the multi-output forecast."""
    return f"{target}_next_{horizon}"


def output_names(horizons: Mapping[str, int]) -> list[str]:
    """Every output, target-major: archived next week, archived next month, savings next week, ..."""
    return [target_name(t, h) for t in TARGETS for h in horizons]


def check_horizons(horizons: Mapping[str, int], windows) -> dict[str, int]:
    """The horizons as {name: days}; each must be a positive number of days that is also a feature window
    (the seasonal naive of a horizon is the sum over its last window of the same length)."""
    out = {str(k): int(v) for k, v in dict(horizons).items()}
    if not out:
        raise ValueError("horizons: give at least one, e.g. {week: 7, month: 30}")
    bad = {k: v for k, v in out.items() if v < 1 or v not in set(windows)}
    if bad:
        raise ValueError(
            f"horizons {bad}: each must be >= 1 day and one of the feature windows {list(windows)}"
        )
    return out


def next_period_targets(daily: pd.DataFrame, horizons: Mapping[str, int]) -> pd.DataFrame:
    """For every row, each target summed over the source's next `H` days after the row's date (the day itself
    excluded); NaN where the source's records end before the period does. Aligned with `daily`'s index."""
    days = pd.DatetimeIndex(pd.to_datetime(daily["date"])).normalize()
    day = days.to_numpy(dtype="datetime64[D]").astype(np.int64)
    out = pd.DataFrame(np.nan, index=daily.index, columns=output_names(horizons))
    for idx in daily.groupby("source_id", sort=False).indices.values():
        rows = idx[np.argsort(day[idx], kind="stable")]
        d = day[rows]
        pos = d - d[0]
        for target, flow in TARGETS.items():
            grid = np.zeros(pos[-1] + 1)
            np.add.at(grid, pos, daily[flow].to_numpy(dtype=float)[rows])
            cum = np.concatenate([[0.0], np.cumsum(grid)])
            for name, h in horizons.items():
                end = pos + h
                ok = end <= pos[-1]
                sums = cum[np.minimum(end, pos[-1]) + 1] - cum[pos + 1]
                out.iloc[rows, out.columns.get_loc(target_name(target, name))] = np.where(
                    ok, np.maximum(sums, 0), np.nan
                )
    return out


def history_days(daily: pd.DataFrame) -> np.ndarray:
    """Days of each row's source's records up to and including the row's date (the first day counts 1)."""
    day = pd.DatetimeIndex(pd.to_datetime(daily["date"])).normalize().to_numpy(dtype="datetime64[D]")
    first = (
        pd.Series(day).groupby(daily["source_id"].to_numpy()).transform("min").to_numpy(dtype="datetime64[D]")
    )
    return (day - first).astype(np.int64) + 1
