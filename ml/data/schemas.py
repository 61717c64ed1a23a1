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
