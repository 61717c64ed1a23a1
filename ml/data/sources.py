"""Readers for real exports (NAB sensor CSVs, the UCI ServiceNow incident event log, archive-log CSVs) into the
silver contracts.

`read_*` / `load_*` do the file I/O; `parse_*` / `collapse_*` are pure (frames in, new frames out).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.data.schemas import ARCHIVE_COLUMNS, INCIDENT_COLUMNS, READING_COLUMNS, WINDOW_COLUMNS

PathLike = str | os.PathLike[str]

# --- NAB (Numenta Anomaly Benchmark) ------------------------------------------------------------
NAB_HEADER = ["timestamp", "value"]
NAB_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
NAB_LABEL_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
NAB_LABELS_FILE = Path("labels") / "combined_windows.json"
NAB_ANOMALY_KIND = "labelled"
# Units NAB documents per file; anything else gets its kind's default unit (None when unknown).
NAB_UNITS_BY_FILE = {"ambient_temperature_system_failure": "degF", "nyc_taxi": "passengers_per_30min"}
NAB_UNITS_BY_KIND: dict[str, str | None] = {"temperature": None, "cpu_pct": "pct", "request_rate": None}


def nab_sensor_id(path: PathLike) -> str:
    """Sensor id of a NAB file: its path under the nearest `data/` folder without `.csv`, else its stem."""
    p = Path(path)
    parents = p.parent.parts
    if "data" in parents:
        cut = len(parents) - 1 - parents[::-1].index("data")
        return "/".join((*parents[cut + 1 :], p.stem))
    return p.stem


def nab_kind_unit(name: str) -> tuple[str, str | None]:
    """(kind, unit) guessed from a NAB file name, so real files land in the same kinds as synthetic ones."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".csv")
    low = stem.lower()
    if "temperature" in low:
        kind = "temperature"
    elif "cpu" in low:
        kind = "cpu_pct"
    elif "latency" in low:  # ec2_request_latency_*: a latency, not a rate
        kind = "generic"
    elif any(word in low for word in ("taxi", "request", "traffic", "rate")):
        kind = "request_rate"
    else:
        kind = "generic"
    return kind, NAB_UNITS_BY_FILE.get(stem, NAB_UNITS_BY_KIND.get(kind))


def parse_nab_csv(raw: pd.DataFrame, *, sensor_id: str, source: str = "<frame>") -> pd.DataFrame:
    """Type a NAB `timestamp,value` string frame as sensor readings, keeping every row in file order."""
    if list(raw.columns) != NAB_HEADER:
        raise ValueError(
            f"{source}: NAB header must be 'timestamp,value', got {','.join(map(str, raw.columns))!r}"
        )
    timestamp = _parse_column(raw["timestamp"], "timestamp", source, NAB_TIMESTAMP_FORMAT)
    value = pd.to_numeric(raw["value"], errors="coerce").astype("float64")
    _fail_on_bad(raw["value"], value, "value", source, "a number")
    kind, unit = nab_kind_unit(sensor_id)
    return pd.DataFrame(
        {
            "sensor_id": pd.Series([sensor_id] * len(raw), dtype=object),
            "kind": pd.Series([kind] * len(raw), dtype=object),
            "unit": pd.Series([unit] * len(raw), dtype=object),
            "timestamp": timestamp.to_numpy(),
            "value": value.to_numpy(),
        },
        columns=READING_COLUMNS,
    )


def read_nab_csv(path: PathLike, *, sensor_id: str | None = None) -> pd.DataFrame:
    """Read one NAB data file (CSV reader, so a missing final newline is fine) into READING_COLUMNS."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"{path}: empty file, expected a 'timestamp,value' header") from exc
    return parse_nab_csv(raw, sensor_id=sensor_id or nab_sensor_id(path), source=str(path))


def parse_nab_labels(windows: Mapping[str, Any], *, source: str = "<labels>") -> pd.DataFrame:
    """Anomaly windows from NAB's `{"<category>/<file>.csv": [[start, end], ...]}` mapping."""
    rows = []
    for key, pairs in windows.items():
        sensor_id = key[: -len(".csv")] if key.endswith(".csv") else key
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"{source}: window of {key!r} must be [start, end], got {pair!r}")
            rows.append((sensor_id, pair[0], pair[1]))
    frame = pd.DataFrame(rows, columns=["sensor_id", "start", "end"], dtype=object)
    for col in ("start", "end"):
        frame[col] = _parse_column(frame[col], col, source, NAB_LABEL_TIMESTAMP_FORMAT)
    frame["anomaly_kind"] = pd.Series([NAB_ANOMALY_KIND] * len(frame), dtype=object)
    return frame[WINDOW_COLUMNS]


def read_nab_labels(path: PathLike) -> pd.DataFrame:
    """Read NAB's `combined_windows.json` into WINDOW_COLUMNS (both window ends included)."""
    with open(path) as fh:
        windows = json.load(fh)
    if not isinstance(windows, dict):
        raise ValueError(f"{path}: expected a JSON object of file -> [[start, end], ...]")
    return parse_nab_labels(windows, source=str(path))


def load_nab_dir(root: PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(readings, windows) of a NAB-layout dir `data/<category>/<file>.csv` (+ optional labels json).

    Files are read in sorted path order; windows of files not present under `data/` are dropped.
    """
    root = Path(root)
    files = sorted((root / "data").glob("*/*.csv"))
    if not files:
        raise ValueError(f"{root}: no NAB data files at data/<category>/<file>.csv")
    readings = pd.concat(
        [read_nab_csv(f, sensor_id=f"{f.parent.name}/{f.stem}") for f in files], ignore_index=True
    )
    labels = root / NAB_LABELS_FILE
    windows = read_nab_labels(labels) if labels.exists() else parse_nab_labels({})
    windows = windows[windows["sensor_id"].isin(readings["sensor_id"].unique())].reset_index(drop=True)
    return readings, windows


def nab_probationary_rows(n: int) -> int:
    """Rows of NAB's unscored probationary period of an n-row file: min(floor(0.15 n), 750)."""
    if n < 0:
        raise ValueError(f"row count must be >= 0, got {n}")
    return min(15 * n // 100, 750)


# --- UCI "Incident management process enriched event log" (ServiceNow audit events) ---------------
EVENT_LOG_TIMESTAMP_FORMAT = "%d/%m/%Y %H:%M"
EVENT_LOG_MISSING = ("?", "")
EVENT_LOG_TIMESTAMPS = ("opened_at", "sys_created_at", "sys_updated_at", "resolved_at", "closed_at")
EVENT_LOG_BOOLEANS = ("active", "made_sla", "knowledge", "u_priority_confirmation")
EVENT_LOG_INTEGERS = ("reassignment_count", "reopen_count", "sys_mod_count")
EVENT_LOG_SOURCE = "servicenow_eventlog"

# Raw columns that are outcomes or change while the incident is handled (the data README's leakage list).
INCIDENT_LOG_OUTCOME_FIELDS = frozenset(
    {
        "made_sla",
        "closed_code",
        "resolved_by",
        "resolved_at",
        "closed_at",
        "sys_mod_count",
        "reassignment_count",
        "reopen_count",
        "assigned_to",
        "incident_state",
        "active",
        "sys_updated_at",
        "sys_updated_by",
    }
)
# Where each open-time column comes from: a raw column of the FIRST event (None: the log has no such field).
# assignment_group is the group the ticket was first routed to, not the group that resolved it.
OPEN_TIME_SOURCE: dict[str, str | None] = {
    "opened_at": "opened_at",
    "caller_id": "caller_id",
    "contact_type": "contact_type",
    "location": "location",
    "impact": "impact",
    "urgency": "urgency",
    "priority": "priority",
    "category": "category",
    "subcategory": "subcategory",
    "cmdb_ci": "cmdb_ci",
    "assignment_group": "assignment_group",
    "short_description": None,
    "description": None,
    "sla_target_hours": "priority",
}
# Where each outcome column comes from: a raw column of the LAST event.
OUTCOME_SOURCE: dict[str, str] = {
    "sys_updated_at": "sys_updated_at",
    "state": "incident_state",
    "reassignment_count": "reassignment_count",
    "resolved_at": "resolved_at",
    "closed_at": "closed_at",
    "made_sla": "made_sla",
}
# Used only to order an incident's events (first = lowest count, then earliest update), never as values.
EVENT_ORDER = ["sys_mod_count", "sys_updated_at"]
EVENT_LOG_REQUIRED = frozenset(
    {"number", *EVENT_ORDER, *OUTCOME_SOURCE.values()} | {c for c in OPEN_TIME_SOURCE.values() if c}
)
# Assumption: the log has no SLA target, so it is derived from priority (hours to resolve).
DEFAULT_SLA_HOURS_BY_PRIORITY: Mapping[int, float] = {1: 4, 2: 8, 3: 24, 4: 72, 5: 120}
EVENT_LOG_STATES = {
    "New": "New",
    "Active": "In Progress",
    "Resolved": "Resolved",
    "Closed": "Closed",
    "-100": "Canceled",
}  # plus every "Awaiting <reason>" -> "On Hold"
RESOLVED_STATES = frozenset({"Resolved", "Closed"})


def parse_incident_event_log(raw: pd.DataFrame, *, source: str = "<frame>") -> pd.DataFrame:
    """Type the raw string event log: `?` -> missing, day-first timestamps, true/false, integer counters."""
    _require_columns(raw, EVENT_LOG_REQUIRED, source)
    events = raw.astype(object).where(~raw.isin(EVENT_LOG_MISSING) & raw.notna(), None)
    for col in events.columns:
        if col in EVENT_LOG_TIMESTAMPS:
            events[col] = _parse_column(events[col], col, source, EVENT_LOG_TIMESTAMP_FORMAT)
        elif col in EVENT_LOG_BOOLEANS:
            parsed = events[col].map({"true": True, "false": False}, na_action="ignore").astype("boolean")
            _fail_on_bad(events[col], parsed, col, source, "true/false")
            events[col] = parsed
        elif col in EVENT_LOG_INTEGERS:
            parsed = pd.to_numeric(events[col], errors="coerce")
            _fail_on_bad(events[col], parsed, col, source, "an integer")
            events[col] = parsed.astype("Int64")
    return events


def read_incident_event_log(path: PathLike) -> pd.DataFrame:
    """Read the UCI incident event log CSV (one row per audit event) as typed raw events."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    return parse_incident_event_log(raw, source=str(path))


def collapse_event_log(
    events: pd.DataFrame,
    *,
    sla_hours_by_priority: Mapping[int, float] = DEFAULT_SLA_HOURS_BY_PRIORITY,
    drop_resolved_at_first_event: bool = False,
) -> pd.DataFrame:
    """One INCIDENT_COLUMNS row per incident: open-time fields from its first event, outcomes from its last.

    `assignment_group` is the group the ticket was first routed to (not the one that resolved it).
    `sla_target_hours` comes from priority via `sla_hours_by_priority`, an assumption: the log has no target.
    Incidents whose first logged event is already Resolved/Closed carry post-resolution values in their
    open-time fields; they are kept unless `drop_resolved_at_first_event=True`.
    """
    _require_columns(events, EVENT_LOG_REQUIRED, "events frame")
    ordered = events.assign(_row=np.arange(len(events))).sort_values(
        ["number", *EVENT_ORDER, "_row"], kind="stable", na_position="last"
    )
    first = ordered.drop_duplicates("number", keep="first").set_index("number")
    last = ordered.drop_duplicates("number", keep="last").set_index("number")
    if drop_resolved_at_first_event:
        first = first[~first["incident_state"].isin(RESOLVED_STATES)]
        last = last.loc[first.index]
    open_raw = sorted({c for c in OPEN_TIME_SOURCE.values() if c})
    opened = _open_time_fields(first.loc[:, open_raw], sla_hours_by_priority)
    outcomes = _outcome_fields(last.loc[:, list(OUTCOME_SOURCE.values())])
    out = pd.concat([opened, outcomes], axis=1)
    out["number"] = out.index.astype(object)
    out["owning_team"] = None
    out["root_cause"] = None
    out["source"] = EVENT_LOG_SOURCE
    out = out.reset_index(drop=True)[INCIDENT_COLUMNS]
    for col in ("owning_team", "root_cause", "source", "number"):
        out[col] = out[col].astype(object)
    return out


def load_incident_event_log(
    path: PathLike,
    *,
    sla_hours_by_priority: Mapping[int, float] = DEFAULT_SLA_HOURS_BY_PRIORITY,
    drop_resolved_at_first_event: bool = False,
) -> pd.DataFrame:
    """The silver incidents table of a UCI event log file: collapse(read(path))."""
    return collapse_event_log(
        read_incident_event_log(path),
        sla_hours_by_priority=sla_hours_by_priority,
        drop_resolved_at_first_event=drop_resolved_at_first_event,
    )


# --- archive logs (the CSV contract of README "Archive logs") --------------------------------------
ARCHIVE_LOG_SOURCE = "archive_log"


def parse_archive_log(raw: pd.DataFrame) -> pd.DataFrame:
    """An archive-log string frame in the contract: header names trimmed and lower-cased, `source` filled with
    "archive_log" where absent. Values stay strings: ingestion types them and quarantines bad rows by name."""
    out = raw.rename(columns=lambda c: str(c).strip().lower()).astype(object)
    extra = [c for c in out.columns if c not in ARCHIVE_COLUMNS]
    out = out.drop(columns=extra)
    if "source" not in out.columns:
        out["source"] = ARCHIVE_LOG_SOURCE
    out["source"] = out["source"].where(out["source"].notna(), ARCHIVE_LOG_SOURCE)
    return out.where(out.notna(), None)


def read_archive_log(path: PathLike) -> pd.DataFrame:
    """Read one archive-log CSV (one row per source and day) as strings in the archive contract."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"{path}: empty file, expected a header with {ARCHIVE_COLUMNS[:3]}...") from exc
    return parse_archive_log(raw)


def archive_log_files(path: PathLike) -> list[Path]:
    """The CSV files of `ingest.sources.archive.path`: the file itself, or every *.csv under a folder, by name."""
    p = Path(path)
    if p.is_dir():
        return sorted(p.rglob("*.csv"))
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such archive-log file or folder")
    return [p]


def _open_time_fields(first: pd.DataFrame, sla_hours_by_priority: Mapping[int, float]) -> pd.DataFrame:
    """Open-time columns computed from the first event's OPEN_TIME_SOURCE columns only (all it is given)."""
    out = pd.DataFrame(index=first.index)
    for col, raw_col in OPEN_TIME_SOURCE.items():
        if raw_col is None:
            out[col] = pd.Series([None] * len(first), index=first.index, dtype=object)
        elif col in ("impact", "urgency", "priority"):
            out[col] = _parse_level(first[raw_col], raw_col)
        elif col == "sla_target_hours":
            out[col] = _sla_hours(_parse_level(first[raw_col], raw_col), sla_hours_by_priority)
        elif col == "opened_at":
            out[col] = first[raw_col].astype("datetime64[ns]")
        elif col == "contact_type":
            # "Phone" -> "phone", "Self service" -> "self-service" (the synthetic generator's vocabulary)
            out[col] = _strings(first[raw_col]).str.strip().str.lower().str.replace(" ", "-")
        else:
            out[col] = _strings(first[raw_col])
    return out


def _outcome_fields(last: pd.DataFrame) -> pd.DataFrame:
    """Outcome columns from the last event."""
    out = pd.DataFrame(index=last.index)
    for col, raw_col in OUTCOME_SOURCE.items():
        if col == "state":
            out[col] = _map_states(last[raw_col])
        elif col == "made_sla":
            out[col] = last[raw_col].astype("boolean")
        elif col == "reassignment_count":
            out[col] = last[raw_col].astype("Int64")
        else:
            out[col] = last[raw_col].astype("datetime64[ns]")
    return out


def _map_states(states: pd.Series) -> pd.Series:
    """ServiceNow log states -> our INCIDENT_STATES (every 'Awaiting …' is On Hold)."""
    mapped = states.map(lambda s: "On Hold" if isinstance(s, str) and s.startswith("Awaiting") else None)
    mapped = mapped.where(mapped.notna(), states.map(EVENT_LOG_STATES))
    bad = sorted({str(s) for s in states[mapped.isna()]})
    if bad:
        raise ValueError(
            f"incident_state: unknown state(s) {bad}; known: {sorted(EVENT_LOG_STATES)} + Awaiting *"
        )
    return mapped.astype(object)


def _parse_level(values: pd.Series, col: str) -> pd.Series:
    """'1 - High' -> 1 (numbers pass through) as Int64."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("Int64")
    parsed = values.astype("string").str.extract(r"^\s*(\d+)(?:\s*-.*)?$", expand=False)
    parsed = pd.to_numeric(parsed, errors="coerce").astype("Int64")
    bad = sorted({str(v) for v in values[values.notna() & parsed.isna()]})
    if bad:
        raise ValueError(f"{col}: expected '<n> - <label>', got {bad[:5]}")
    return parsed


def _sla_hours(priority: pd.Series, hours: Mapping[int, float]) -> pd.Series:
    """SLA target hours per priority (an assumption: the log carries no target)."""
    target = priority.map(lambda p: np.nan if pd.isna(p) else hours.get(int(p), np.nan)).astype("float64")
    unmapped = sorted({int(p) for p in priority[priority.notna() & target.isna()]})
    if unmapped:
        raise ValueError(
            f"sla_target_hours: no SLA target for priority {unmapped}; pass sla_hours_by_priority"
        )
    return target


def _strings(values: pd.Series) -> pd.Series:
    """Object-dtype strings with None for missing (the silver convention)."""
    return values.astype(object).where(values.notna(), None)


def _require_columns(frame: pd.DataFrame, required: frozenset[str], source: str) -> None:
    """Fail naming the source and the missing columns."""
    missing = sorted(required - set(frame.columns))
    if missing:
        raise ValueError(
            f"{source}: missing required column(s) {missing} (is this the UCI incident event log?)"
        )


def _parse_column(values: pd.Series, col: str, source: str, fmt: str) -> pd.Series:
    """Timestamps of one column in a fixed format; unparseable values fail naming file, column and rows."""
    parsed = pd.to_datetime(values, format=fmt, errors="coerce").astype("datetime64[ns]")
    _fail_on_bad(values, parsed, col, source, f"format {fmt!r}")
    return parsed


def _fail_on_bad(raw: pd.Series, parsed: pd.Series, col: str, source: str, expected: str) -> None:
    """Raise if a present raw value did not parse, naming the first few rows."""
    bad = raw.notna() & parsed.isna()
    if bad.any():
        sample = ", ".join(f"row {i}: {raw[i]!r}" for i in raw.index[bad][:5])
        raise ValueError(f"{source}: column {col!r} has {int(bad.sum())} value(s) not {expected} ({sample})")
