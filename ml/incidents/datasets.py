"""Where the incident notebooks and the evaluation CLI get their rows: gold tables and the real event log.

Kept in one place so every notebook subsamples for SMOKE runs the same way (the earliest incidents, so the
time split still has a past and a future) and reads the real UCI sample through the same loader.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ml.config import SHARED_DATA
from ml.data import sources
from ml.features import add_group_load
from ml.incidents.targets import sort_by_time

UCI_SAMPLE = SHARED_DATA / "incidents_uci_sample" / "incident_event_log_sample.csv"


def load_gold(gold_dir: str | Path, table: str, smoke_incidents: int | None = None) -> pd.DataFrame:
    """A gold incident table in opening order; with `smoke_incidents`, only the earliest that many rows."""
    path = Path(gold_dir) / f"{table}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make data` (dvc repro featurize) first")
    frame = sort_by_time(pd.read_parquet(path)).reset_index(drop=True)
    return frame.head(int(smoke_incidents)) if smoke_incidents else frame


# Open-time fields the silver table does not carry but an event log may, taken from each incident's FIRST
# event: who opened the ticket, who created the record, and the symptom as first reported (it may change
# later; only the first event's value is read). A log without a column simply has no such feature.
EXTRA_OPEN_TIME = ("opened_by", "sys_created_by", "u_symptom")
ROUTED_AT = "routed_at"  # the first event's time: `ml.incidents.history.ROUTED_AT` (not imported: stage deps)


def load_event_log(path: str | Path, max_incidents: int | None = None) -> pd.DataFrame:
    """A ServiceNow event-log CSV collapsed to one row per incident (`ml.data.sources`), with the group
    load, the `EXTRA_OPEN_TIME` columns the log has (from each incident's first event) and `routed_at`, when
    that first event was logged (the initial group is known from then on)."""
    events = sources.read_incident_event_log(path)
    incidents = sources.collapse_event_log(events)
    first = events.sort_values(["number", *sources.EVENT_ORDER], kind="stable", na_position="last")
    first = first.drop_duplicates("number", keep="first").set_index("number")
    for col in [c for c in EXTRA_OPEN_TIME if c in events.columns]:
        incidents[col] = incidents["number"].map(first[col]).astype(object)
    if "sys_updated_at" in first:  # when the first event (open-time fields, initial group) was logged
        incidents[ROUTED_AT] = pd.to_datetime(incidents["number"].map(first["sys_updated_at"]))
    incidents = sort_by_time(incidents).reset_index(drop=True)
    if max_incidents:
        incidents = incidents.head(int(max_incidents))
    return add_group_load(incidents)


def real_sample(max_incidents: int | None = None) -> pd.DataFrame | None:
    """The real UCI sample from ../shared when it is there (CI, this machine), else None (a fresh clone)."""
    return load_event_log(UCI_SAMPLE, max_incidents) if UCI_SAMPLE.exists() else None
