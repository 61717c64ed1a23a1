"""Typed, strict request and response bodies of every endpoint.

Requests are strict: unknown fields, NaN/Infinity, impossible or out-of-range timestamps, empty lists, strings
where numbers belong (and the reverse) are refused with a 4xx that names the field path. The limits from
params.yaml `serving:` (items per request, text length) are part of the schema, so the OpenAPI document
states them. Timestamps: ISO 8601; a timezone-aware one is converted to UTC and its zone dropped (the models
were trained on naive timestamps).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ml import config
from ml.serving import settings

S = settings.get()
_PARAMS = config.load_params() if (config.ROOT / "params.yaml").exists() else {}
_FORECAST = _PARAMS.get("forecast") or {}
MAX_HORIZON = int(_FORECAST.get("max_horizon", 168))
DEFAULT_HORIZON = int(_FORECAST.get("horizon", 24))
MAX_FORECAST_ITEMS = 100  # each item is a model call: a smaller cap than readings
MAX_SIMILAR_ITEMS = 100  # each incident is a search of the whole index returning k rows: answers within 2 s
EARLIEST, LATEST = datetime(1970, 1, 1), datetime(2100, 1, 1)
_TRIAGE = _PARAMS.get("triage") or {}
MAX_K = 20  # top_k of /triage and /system_team, k of /similar_incidents: 1..MAX_K
DEFAULT_TOP_K = min(int(_TRIAGE.get("top_k", 3)), MAX_K)
DEFAULT_K = min(int((_TRIAGE.get("similar") or {}).get("k", 5)), MAX_K)

# The models the service serves (the model table's names; table.check() keeps the two in step).
MODEL_NAMES = (
    "sensor-anomaly",
    "sensor-forecast",
    "incident-sla",
    "incident-ttr",
    "incident-triage",
    "incident-system-team",
    "incident-clusters",
    "incident-similar",
    "archive-forecast",
)
ModelName = Literal[MODEL_NAMES]  # type: ignore[valid-type]


def _timestamp(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"timestamp {value.isoformat()} is outside {EARLIEST.year}..{LATEST.year - 1}")
    return value


Timestamp = Annotated[datetime, AfterValidator(_timestamp)]
SensorId = Annotated[str, Field(min_length=1, max_length=200)]
ShortText = Annotated[str, Field(max_length=200)]
LongText = Annotated[str, Field(max_length=S.max_text_chars)]


class Strict(BaseModel):
    """Request bodies: unknown fields, NaN/Inf and type coercions are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Out(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class Stamped(Out):
    """Every prediction says which model made it."""

    model_name: str
    model_version: str
    model_sha256: str
    model_source: str = Field(description="registry | override | exported-copy | bento")


# --- /detect_anomaly ----------------------------------------------------------------------------
class Reading(Strict):
    sensor_id: SensorId
    timestamp: Timestamp
    value: float | None = Field(description="the reading; null for a missing one (it gets no score)")


class DetectAnomalyRequest(Strict):
    readings: list[Reading] = Field(
        min_length=1,
        max_length=S.max_items,
        description="raw readings, any order, one or more sensors; each sensor's readings are also its "
        "context (window features look back up to 24 readings), so send the recent past too",
    )
    explain: Literal["all", "flagged", "none"] = Field(
        "all", description="which readings name their top contributing feature"
    )


class ReadingScore(Out):
    sensor_id: str
    timestamp: datetime
    value: float | None
    score: float | None = Field(description="[0, 1]: share of normal training readings less unusual")
    is_anomaly: bool
    threshold: float
    top_feature: str | None


class DetectAnomalyResponse(Stamped):
    results: list[ReadingScore]


# --- /forecast ----------------------------------------------------------------------------------
class HistoryPoint(Strict):
    timestamp: Timestamp
    value: float | None


class ForecastItem(Strict):
    sensor_id: SensorId
    horizon: int = Field(DEFAULT_HORIZON, ge=1, le=MAX_HORIZON, description="steps of the sensor's grid")
    history: list[HistoryPoint] | None = Field(
        None,
        max_length=S.max_history,
        description="readings after the model's training end, on the sensor's grid; the forecast starts "
        "after the last of them",
    )


class ForecastRequest(Strict):
    items: list[ForecastItem] = Field(min_length=1, max_length=MAX_FORECAST_ITEMS)


class ForecastPoint(Out):
    timestamp: datetime
    yhat: float | None
    lo80: float | None
    hi80: float | None
    lo95: float | None
    hi95: float | None


class ForecastResult(Out):
    sensor_id: str
    horizon: int
    model: str = Field(description="the sensor's model chosen by backtest (seasonal_naive | ets | prophet)")
    forecast: list[ForecastPoint]


class ForecastResponse(Stamped):
    results: list[ForecastResult]


# --- incidents ----------------------------------------------------------------------------------
class Incident(Strict):
    """Fields known when the incident is opened (outcome fields are refused as unknown)."""

    number: ShortText | None = None
    opened_at: Timestamp
    impact: int = Field(ge=1, le=3)
    urgency: int = Field(ge=1, le=3)
    priority: int = Field(ge=1, le=5)
    sla_target_hours: float = Field(gt=0, le=100_000)
    caller_id: ShortText | None = None
    contact_type: ShortText | None = None
    location: ShortText | None = None
    category: ShortText | None = None
    subcategory: ShortText | None = None
    cmdb_ci: ShortText | None = None
    assignment_group: ShortText | None = None
    short_description: LongText | None = None
    description: LongText | None = None
    group_load_24h: int | None = Field(
        None, ge=0, le=1_000_000, description="incidents opened for the group in the previous 24 h"
    )


INCIDENT_INT_FIELDS = ("impact", "urgency", "priority", "group_load_24h")
INCIDENT_STRING_FIELDS = tuple(  # number and the categorical / text fields, sent as strings
    n for n in Incident.model_fields if n not in (*INCIDENT_INT_FIELDS, "opened_at", "sla_target_hours")
)


def incident_payload(record) -> dict:
    """One incident record (a silver/gold row as a mapping) -> the JSON object `Incident` accepts: only its
    fields that the record has, missing values as null, levels as ints, `opened_at` in ISO format."""

    out = {}
    for name in Incident.model_fields:
        if name not in record:
            continue
        v = record[name]
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            out[name] = None
        elif name == "opened_at":
            out[name] = pd.Timestamp(v).isoformat()
        elif name in INCIDENT_INT_FIELDS:
            out[name] = int(v)
        elif name == "sla_target_hours":
            out[name] = float(v)
        else:
            out[name] = str(v)
    return out


class IncidentsRequest(Strict):
    incidents: list[Incident] = Field(min_length=1, max_length=S.max_items)


class SlaPrediction(Out):
    number: str | None
    breach_probability: float
    breach_predicted: bool


class SlaResponse(Stamped):
    threshold: float
    threshold_source: str
    results: list[SlaPrediction]


class TtrPrediction(Out):
    number: str | None
    expected_hours: float = Field(description="the median (P50)")
    p10: float
    p50: float
    p90: float


class TtrResponse(Stamped):
    results: list[TtrPrediction]


# --- /triage, /system_team: one PrecisionTargetClassifier head per answer --------------------------
class TopKRequest(Strict):
    """Incidents to classify (the same open-time record as /predict_sla) and how many ranked labels to
    return per head."""

    incidents: list[Incident] = Field(min_length=1, max_length=S.max_items)
    top_k: int = Field(
        DEFAULT_TOP_K, ge=1, le=MAX_K, description="ranked labels per head (at most the head's classes)"
    )


class LabelProbability(Out):
    label: str
    probability: float


class HeadPrediction(Out):
    """One head of a precision-target classifier: its answer, or an explicit abstention with the reason."""

    prediction: str | None = Field(description="the answer; null when the model abstains")
    abstain: bool = Field(description="true: confidence below the class's threshold (see reason)")
    reason: str | None = Field(description="why it abstains; null when it answers")
    label: str = Field(description="the best guess, also when abstaining")
    confidence: float = Field(description="probability of the best guess")
    threshold: float | None = Field(
        description="the best guess's confidence threshold (chosen for the target precision at training); "
        "null: that class always abstains"
    )
    top: list[LabelProbability] = Field(description="the top_k labels, most probable first")


class TriagePrediction(Out):
    number: str | None
    assignment_group: HeadPrediction
    category: HeadPrediction


class TriageResponse(Stamped):
    top_k: int
    results: list[TriagePrediction]


class SystemTeamPrediction(Out):
    number: str | None
    cmdb_ci: HeadPrediction = Field(description="the impacted system (configuration item)")
    owning_team: HeadPrediction = Field(description="the team that owns the system")


class SystemTeamResponse(Stamped):
    top_k: int
    results: list[SystemTeamPrediction]


# --- /forecast_archive ---------------------------------------------------------------------------
MAX_ARCHIVE_RECORDS = 20 * 100  # source-days per request: 20 sources x ~100 days (a source needs 92)
Share = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0, le=1e12)]  # bounded: sums of 1e307s overflow to inf
Day = Annotated[date, Field(description="the day, YYYY-MM-DD")]  # (a field named `date` shadows the type)


class ArchiveRecord(Strict):
    """One source's activity on one day (the README's archive CSV contract, as JSON)."""

    source_id: SensorId
    date: Day
    total_files: int = Field(ge=0, le=10**15)
    avg_file_size_mb: NonNegative
    share_documents: Share
    share_images: Share
    share_video: Share
    share_email: Share
    share_other: Share = Field(description="the five share_* sum to 1 within 0.01")
    archive_frequency_per_day: NonNegative
    retention_days: int = Field(gt=0, le=100_000)
    archived_gb: NonNegative = Field(description="GB archived that day")
    saved_gb: NonNegative = Field(description="GB of storage the day's archiving saved (<= archived_gb)")
    source_type: ShortText | None = None
    files_archived: int | None = Field(None, ge=0, le=10**15)
    source: ShortText | None = None


class ArchiveRequest(Strict):
    """Each source's recent daily records: its last day is the forecast origin; a day without a record
    archived nothing; every source needs its longest feature window + 1 days from first to last record."""

    records: list[ArchiveRecord] = Field(min_length=1, max_length=MAX_ARCHIVE_RECORDS)


class ArchiveForecastPoint(Out):
    target: str = Field(description="archived_gb | savings_gb")
    horizon: str = Field(description="the period's name (params.yaml archive.horizons)")
    days: int = Field(description="days summed after the origin")
    gb: float = Field(description="the forecast: GB over the period")
    lo: float | None = Field(description="lower bound of the interval (coverage: `coverage`)")
    hi: float | None
    output: str = Field(description="the model's output name, e.g. archived_gb_next_week")


class ArchiveForecast(Out):
    source_id: str
    origin: str = Field(description="the source's last day in the request: the forecast starts after it")
    forecasts: list[ArchiveForecastPoint]


class ArchiveResponse(Stamped):
    coverage: float = Field(description="nominal coverage of the intervals")
    results: list[ArchiveForecast]


# --- /similar_incidents -------------------------------------------------------------------------
class SimilarRequest(Strict):
    """Incidents to find resolved look-alikes for; each needs short_description or description."""

    incidents: list[Incident] = Field(min_length=1, max_length=MAX_SIMILAR_ITEMS)
    k: int = Field(DEFAULT_K, ge=1, le=MAX_K, description="neighbours per incident")


class SimilarIncident(Out):
    rank: int = Field(description="1 = most similar")
    number: str | None
    similarity: float = Field(description="cosine similarity of the ticket text, 0..1")
    short_description: str | None
    assignment_group: str | None = Field(description="the group that resolved it")
    category: str | None
    cmdb_ci: str | None
    ttr_hours: float | None = Field(description="hours from opened to resolved")
    opened_at: datetime | None
    resolved_at: datetime | None
    state: str | None


class SimilarResult(Out):
    number: str | None = Field(description="the query incident's number")
    similar: list[SimilarIncident] = Field(description="at most k (fewer when the index is smaller)")


class SimilarResponse(Stamped):
    k: int
    results: list[SimilarResult]


# --- /cluster -----------------------------------------------------------------------------------
class ClusterPrediction(Out):
    number: str | None
    cluster: int = Field(description="cluster id (0 = the largest training cluster)")
    cluster_terms: str = Field(description="the cluster's short name: its three top terms")
    top_terms: list[str] = Field(description="the heaviest terms of the cluster's mean TF-IDF vector")


class ClusterResponse(Stamped):
    results: list[ClusterPrediction]


# --- /check_drift -------------------------------------------------------------------------------
class DriftRequest(Strict):
    """A batch of recent raw records of one domain, compared with the training reference saved with the
    domain's model (sensors: sensor-anomaly; incidents: incident-sla)."""

    domain: Literal["sensors", "incidents"]
    readings: list[Reading] = Field(
        default_factory=list, max_length=S.max_items, description="domain sensors"
    )
    incidents: list[Incident] = Field(
        default_factory=list, max_length=S.max_items, description="domain incidents"
    )


class FeatureDrift(Out):
    feature: str
    psi: float
    drifted: bool
    kind: str


class DriftResponse(Stamped):
    domain: str
    psi_threshold: float
    bins: int
    rows: int
    reference_rows: int
    noise_floor: float = Field(description="PSI expected from sampling alone at these sizes (no drift)")
    drifted: bool
    features: list[FeatureDrift]


# --- /models, /models/reload --------------------------------------------------------------------
class Empty(Strict):
    pass


class ModelInfo(Out):
    name: str
    endpoints: list[str]
    required: bool
    state: Literal["loading", "loaded", "failed", "unavailable"]
    loaded: bool
    version: str | None = None
    alias: str | None = None
    model_sha256: str | None = None
    source: str | None = None
    uri: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    loaded_at: str | None = None
    error: str | None = None
    note: str | None = None
    drift_reference: str | None = Field(None, description="the training reference /check_drift uses")


class ModelsResponse(Out):
    ready: bool
    models: list[ModelInfo]


ModelUri = Annotated[
    str,
    Field(
        pattern=r"^models:/[A-Za-z0-9._-]+(/[0-9]+|@[A-Za-z0-9_-]+)$",
        max_length=300,
        description="models:/<name>/<version> or models:/<name>@<alias>",
    ),
]


class ReloadRequest(Strict):
    # (no `| None` at the top level: BentoML's OpenAPI drops it there, so null would be undocumented)
    models: list[ModelName] = Field(
        default_factory=list, max_length=20, description="which models to re-resolve (empty: all)"
    )
    uris: dict[ModelName, ModelUri | None] = Field(
        default_factory=dict,
        description="set (or with null clear) a model's source for this process, like "
        "OPSLAB_MODEL_URI_<NAME> at start: hot swap and rollback without restart",
    )


class ReloadResult(Out):
    name: str
    status: Literal["swapped", "unchanged", "failed"]
    version_before: str | None
    version_after: str | None
    error: str | None = None


class ReloadResponse(Out):
    results: list[ReloadResult]
    models: list[ModelInfo]
