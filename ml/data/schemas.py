"""Pandera schemas of the silver tables: the one contract every source (synthetic or real) must meet."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.pandas import Check, Column

# --- Sensors ----------------------------------------------------------------------------------
READING_KEY = ["sensor_id", "timestamp"]
READING_COLUMNS = ["sensor_id", "kind", "unit", "timestamp", "value"]
# Kinds whose readings are counts, rates or shares: a negative value is a broken reading. Other kinds
# (temperature, generic NAB series) may legitimately go below zero.
NON_NEGATIVE_KINDS = ["cpu_pct", "memory_pct", "request_rate", "disk_io"]

sensor_readings = pa.DataFrameSchema(
    {
        "sensor_id": Column(str, Check.str_length(min_value=1), nullable=False),
        "kind": Column(str, nullable=False),
        "unit": Column(str, nullable=True),
        "timestamp": Column("datetime64[ns]", nullable=False),
        "value": Column(
            float,
            Check(lambda s: s.abs() != float("inf"), element_wise=False, error="value is infinite"),
            nullable=False,
        ),
    },
    checks=[
        Check(
            lambda d: ~d["kind"].isin(NON_NEGATIVE_KINDS) | (d["value"] >= 0),
            name="value: negative reading",
            error="value: negative reading for a kind that cannot be negative",
        )
    ],
    unique=READING_KEY,
    strict="filter",
    coerce=False,
    name="sensor_readings",
)

WINDOW_COLUMNS = ["sensor_id", "start", "end", "anomaly_kind"]

anomaly_windows = pa.DataFrameSchema(
    {
        "sensor_id": Column(str, nullable=False),
        "start": Column("datetime64[ns]", nullable=False),
        "end": Column("datetime64[ns]", nullable=False),
        "anomaly_kind": Column(str, nullable=False),
    },
    checks=[Check(lambda d: d["end"] >= d["start"], error="window end before start")],
    strict="filter",
    name="anomaly_windows",
)

# --- Incidents --------------------------------------------------------------------------------
INCIDENT_KEY = "number"
INCIDENT_STATES = ["New", "In Progress", "On Hold", "Resolved", "Closed", "Canceled"]
PRIORITY_LABELS = {1: "1 - Critical", 2: "2 - High", 3: "3 - Moderate", 4: "4 - Low", 5: "5 - Planning"}

# Every column of the silver incidents table, in order; `root_cause` is the generator's hidden truth
# (null for real data) and must never reach a feature set.
INCIDENT_COLUMNS = [
    "number",
    "opened_at",
    "sys_updated_at",
    "state",
    "caller_id",
    "contact_type",
    "location",
    "impact",
    "urgency",
    "priority",
    "category",
    "subcategory",
    "cmdb_ci",
    "owning_team",
    "assignment_group",
    "short_description",
    "description",
    "sla_target_hours",
    "reassignment_count",
    "resolved_at",
    "closed_at",
    "made_sla",
    "root_cause",
    "source",
]

# Fields known when the ticket is opened: the only ones a model may read.
OPEN_TIME_COLUMNS = [
    "opened_at",
    "caller_id",
    "contact_type",
    "location",
    "impact",
    "urgency",
    "priority",
    "category",
    "subcategory",
    "cmdb_ci",
    "assignment_group",
    "short_description",
    "description",
    "sla_target_hours",
]
# Outcomes and fields that change while the incident is handled: never features.
OUTCOME_COLUMNS = [
    "sys_updated_at",
    "state",
    "reassignment_count",
    "resolved_at",
    "closed_at",
    "made_sla",
    "root_cause",
]

_level = Check.isin([1, 2, 3])

incidents = pa.DataFrameSchema(
    {
        "number": Column(str, Check.str_length(min_value=1), nullable=False),
        "opened_at": Column("datetime64[ns]", nullable=False),
        "sys_updated_at": Column("datetime64[ns]", nullable=False),
        "state": Column(str, Check.isin(INCIDENT_STATES), nullable=False),
        "caller_id": Column(str, nullable=True),
        "contact_type": Column(str, nullable=True),
        "location": Column(str, nullable=True),
        "impact": Column("Int64", _level, nullable=False),
        "urgency": Column("Int64", _level, nullable=False),
        "priority": Column("Int64", Check.isin([1, 2, 3, 4, 5]), nullable=False),
        "category": Column(str, nullable=True),
        "subcategory": Column(str, nullable=True),
        "cmdb_ci": Column(str, nullable=True),
        "owning_team": Column(str, nullable=True),
        "assignment_group": Column(str, nullable=True),
        "short_description": Column(str, nullable=True),
        "description": Column(str, nullable=True),
        "sla_target_hours": Column(float, Check.gt(0), nullable=False),
        "reassignment_count": Column("Int64", Check.ge(0), nullable=True),
        "resolved_at": Column("datetime64[ns]", nullable=True),
        "closed_at": Column("datetime64[ns]", nullable=True),
        "made_sla": Column("boolean", nullable=True),
        "root_cause": Column(str, nullable=True),
        "source": Column(str, nullable=False),
    },
    checks=[
        Check(
            lambda d: d["sys_updated_at"] >= d["opened_at"],
            error="sys_updated_at before opened_at",
        ),
        Check(
            lambda d: d["resolved_at"].isna() | (d["resolved_at"] >= d["opened_at"]),
            error="resolved_at before opened_at",
        ),
    ],
    unique=[INCIDENT_KEY],
    strict="filter",
    name="incidents",
)

# --- Archive activity ---------------------------------------------------------------------------
# One row per archive source (file share, mailbox, tenant) and day: what it holds, its policy, and what
# was archived that day. The contract a real archive log must meet is the same (README "Archive logs").
ARCHIVE_KEY = ["source_id", "date"]
ARCHIVE_SHARE_COLUMNS = ["share_documents", "share_images", "share_video", "share_email", "share_other"]
ARCHIVE_COLUMNS = [
    "source_id",
    "source_type",
    "date",
    "total_files",
    "avg_file_size_mb",
    *ARCHIVE_SHARE_COLUMNS,
    "archive_frequency_per_day",
    "retention_days",
    "files_archived",
    "archived_gb",
    "saved_gb",
    "source",
]
SHARE_SUM_TOLERANCE = 0.01  # the type shares of a row must sum to 1 within this

_non_negative = Check.ge(0)
_share = Check.in_range(0.0, 1.0)

archive_activity = pa.DataFrameSchema(
    {
        "source_id": Column(str, Check.str_length(min_value=1), nullable=False),
        "source_type": Column(str, nullable=True),
        "date": Column("datetime64[ns]", nullable=False),
        "total_files": Column("Int64", _non_negative, nullable=False),
        "avg_file_size_mb": Column(float, _non_negative, nullable=False),
        **{c: Column(float, _share, nullable=False) for c in ARCHIVE_SHARE_COLUMNS},
        "archive_frequency_per_day": Column(float, _non_negative, nullable=False),
        "retention_days": Column("Int64", Check.gt(0), nullable=False),
        "files_archived": Column("Int64", _non_negative, nullable=True),
        "archived_gb": Column(float, _non_negative, nullable=False),
        "saved_gb": Column(float, _non_negative, nullable=False),
        "source": Column(str, nullable=True),
    },
    checks=[  # each names its column before the colon (the quarantine's column); a row failing a column's
        # own check (a share outside [0, 1], a negative volume) is not also blamed on the row-level rule
        Check(
            lambda d: (
                ~d[ARCHIVE_SHARE_COLUMNS].apply(lambda s: s.between(0, 1)).all(axis=1)
                | ((d[ARCHIVE_SHARE_COLUMNS].sum(axis=1) - 1.0).abs() <= SHARE_SUM_TOLERANCE)
            ),
            error=f"share_documents: the five type shares (share_*) must sum to 1 ± {SHARE_SUM_TOLERANCE}",
        ),
        Check(
            lambda d: (d["archived_gb"] < 0) | (d["saved_gb"] <= d["archived_gb"] * (1 + 1e-9)),
            error="saved_gb: savings larger than the volume archived",
        ),
        Check(lambda d: d["date"] == d["date"].dt.normalize(), error="date: must be a day (no time of day)"),
    ],
    unique=ARCHIVE_KEY,
    strict="filter",
    name="archive_activity",
)
