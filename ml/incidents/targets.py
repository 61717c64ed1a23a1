"""Incident outcomes and the time-ordered split: one protocol for every incident model.

The targets (SLA breached, hours to resolve) read the gold columns or the silver ones; `time_split`
trains on the past and tests on the latest incidents, so no model ever sees its future.
"""

from __future__ import annotations

import pandas as pd


def breach_target(incidents: pd.DataFrame) -> pd.Series:
    """1.0 where the SLA was breached, 0.0 where met, NaN while unknown (gold `target_breached` or silver `made_sla`)."""
    if "target_breached" in incidents:
        flag = incidents["target_breached"].astype("boolean")
    else:
        flag = ~incidents["made_sla"].astype("boolean")
    return flag.astype("Float64").astype(float).rename("breached")


def ttr_hours_target(incidents: pd.DataFrame) -> pd.Series:
    """Hours from opening to resolution, NaN when unresolved (gold `target_ttr_hours` or silver timestamps)."""
    if "target_ttr_hours" in incidents:
        return incidents["target_ttr_hours"].astype(float).rename("ttr_hours")
    delta = pd.to_datetime(incidents["resolved_at"]) - pd.to_datetime(incidents["opened_at"])
    return (delta.dt.total_seconds() / 3600.0).rename("ttr_hours")


def is_closed(incidents: pd.DataFrame) -> pd.Series:
    """Incidents whose outcome is known (an SLA verdict or a resolution time)."""
    return breach_target(incidents).notna() | ttr_hours_target(incidents).notna()


def sort_by_time(incidents: pd.DataFrame) -> pd.DataFrame:
    """Rows in opening order (ties by `number` when present), whatever order they came in."""
    keys = ["opened_at", "number"] if "number" in incidents.columns else ["opened_at"]
    return incidents.sort_values(keys, kind="stable")


def count_cutoff(incidents: pd.DataFrame, test_fraction: float = 0.2) -> pd.Timestamp:
    """The opening time that splits incidents BY COUNT: the earliest (1 - test_fraction) of them train.

    Incidents opened at the same time as the cut-off all go to the test side (`time_split` keeps
    `opened_at < cutoff` for training), so the training side may be a few incidents short of the share."""
    if not 0 < float(test_fraction) < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    opened = pd.to_datetime(incidents["opened_at"]).sort_values(kind="stable").reset_index(drop=True)
    n_train = int(len(opened) * (1.0 - float(test_fraction)))
    if not 0 < n_train < len(opened):
        raise ValueError(f"{len(opened)} incidents are too few to hold out {test_fraction:.0%}")
    return pd.Timestamp(opened.iloc[n_train])


def time_split(
    incidents: pd.DataFrame, test_fraction: float | None = 0.2, cutoff=None, *, closed_only: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) by `opened_at`: test = opened at or after `cutoff`, else the last `test_fraction` of the
    time span; both sorted by opening time and, by default, closed incidents only."""
    t = pd.to_datetime(incidents["opened_at"])
    if cutoff is None:
        if test_fraction is None or not 0 < float(test_fraction) < 1:
            raise ValueError(
                f"test_fraction must be in (0, 1) when no cutoff is given, got {test_fraction!r}"
            )
        cutoff = t.min() + (t.max() - t.min()) * (1.0 - float(test_fraction))
    cutoff = pd.Timestamp(cutoff)
    frame = incidents[is_closed(incidents)] if closed_only else incidents
    frame = sort_by_time(frame)
    opened = pd.to_datetime(frame["opened_at"])
    train, test = frame[opened < cutoff], frame[opened >= cutoff]
    if train.empty or test.empty:
        raise ValueError(f"cutoff {cutoff} leaves {len(train)} training and {len(test)} test incidents")
    return train, test
