"""The model table: every model the service can serve, how it is loaded, and which endpoints answer with it.

Adding a model:
1. a `ModelSpec` in `MODELS` (name, loader, endpoints) — and, if its loader is new, a function in `LOADERS`;
   its name also goes into `schemas.MODEL_NAMES` (the names /models/reload and /check_drift accept);
2. an `Endpoint` per route in `ENDPOINTS` (request/response schema in `schemas.py`, predict function in
   `predict.py` calling the model's own ml/ function);
3. in service.py: one class-scope line `x = RegistryModel.declare("<name>")` and one typed `@bentoml.api`
   method that returns `self.runtime.call("<route>", request)`.
A model that is in the table but not registered anywhere simply answers 503 naming itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml import registry
from ml.incidents import system_team, triage
from ml.serving import predict, schemas
from ml.serving.accel import accelerate
from ml.serving.fast import endpoints as fast


# --- loaders: (model dir, expected sha256) -> model object; each verifies the bytes before deserialising
def load_detector(path: Path, sha256: str):
    pipe = registry.load_sklearn(path, sha256)
    accelerate(pipe.named_steps["detector"])  # same scores, ~10x less per-tree overhead
    return pipe


LOADERS: dict[str, Callable[[Path, str], Any]] = {
    "sklearn": registry.load_sklearn,
    "detector": load_detector,
    "forecaster": registry.load_forecaster,
}


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the MLflow registered model name
    loader: str  # key of LOADERS
    endpoints: tuple[str, ...]
    description: str
    drift_domain: str | None = None  # its saved training reference answers /check_drift for this domain
    stage: str | None = None  # the DVC stage that trains and registers it (`make serve` runs it if missing)


@dataclass(frozen=True)
class Endpoint:
    route: str
    model: str
    request: type[schemas.Strict]
    response: type[schemas.Stamped]
    predict: Callable[..., dict]  # (model object, request, loaded model record, settings) -> response fields
    scope: str = "predict"
    pick_model: Callable[[Any], str] | None = None  # when the request decides the model (/check_drift)


# the heads each classifier endpoint answers with: the response schemas' field names, the models' targets
TRIAGE_HEADS = ("assignment_group", "category")
SYSTEM_TEAM_HEADS = ("cmdb_ci", "owning_team")

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in [
        ModelSpec(
            "sensor-anomaly",
            "detector",
            ("/detect_anomaly", "/check_drift"),
            "window features -> Isolation Forest",
            drift_domain="sensors",
            stage="anomaly",
        ),
        ModelSpec(
            "sensor-forecast",
            "forecaster",
            ("/forecast",),
            "per-sensor seasonal naive / ETS / Prophet",
            stage="forecast",
        ),
        ModelSpec(
            "incident-sla",
            "sklearn",
            ("/predict_sla", "/check_drift"),
            "calibrated P(SLA breach) at open time",
            drift_domain="incidents",
            stage="sla",
        ),
        ModelSpec(
            "incident-ttr", "sklearn", ("/predict_ttr",), "hours to resolution, P10/P50/P90", stage="ttr"
        ),
        ModelSpec(
            "incident-triage",
            "sklearn",
            ("/triage",),
            "assignment group + category from ticket text, per-class thresholds, abstains",
            stage="triage",
        ),
        ModelSpec(
            "incident-system-team",
            "sklearn",
            ("/system_team",),
            "impacted system (cmdb_ci) + owning team, per-class thresholds, abstains",
            stage="system_team",
        ),
        ModelSpec(
            "incident-clusters",
            "sklearn",
            ("/cluster",),
            "recurring-problem cluster id + top terms",
            stage="clustering",
        ),
        ModelSpec(
            "incident-similar",
            "sklearn",
            ("/similar_incidents",),
            "k most similar resolved incidents (text cosine)",
            stage="triage",
        ),
        ModelSpec(
            "archive-forecast",
            "sklearn",
            ("/forecast_archive",),
            "GB archived and GB saved per source, next week and month, with intervals",
            stage="archive",
        ),
    ]
}

ENDPOINTS: dict[str, Endpoint] = {
    e.route: e
    for e in [
        Endpoint(
            "/detect_anomaly",
            "sensor-anomaly",
            schemas.DetectAnomalyRequest,
            schemas.DetectAnomalyResponse,
            lambda model, req, loaded, cfg: fast.detect_anomaly(loaded.extras.get("fast"), model, req),
        ),
        Endpoint(
            "/forecast",
            "sensor-forecast",
            schemas.ForecastRequest,
            schemas.ForecastResponse,
            lambda model, req, loaded, cfg: predict.forecast(model, req, cfg.max_history_steps),
        ),
        Endpoint(
            "/predict_sla",
            "incident-sla",
            schemas.IncidentsRequest,
            schemas.SlaResponse,
            lambda model, req, loaded, cfg: _sla(model, req, loaded, cfg),
        ),
        Endpoint(
            "/predict_ttr",
            "incident-ttr",
            schemas.IncidentsRequest,
            schemas.TtrResponse,
            lambda model, req, loaded, cfg: predict.predict_ttr(model, req),
        ),
        Endpoint(
            "/check_drift",
            "sensor-anomaly",
            schemas.DriftRequest,
            schemas.DriftResponse,
            lambda model, req, loaded, cfg: predict.check_drift(req, loaded, cfg),
            pick_model=lambda req: DRIFT_MODELS[req.domain],
        ),
        Endpoint(
            "/triage",
            "incident-triage",
            schemas.TopKRequest,
            schemas.TriageResponse,
            lambda model, req, loaded, cfg: fast.classify_heads(
                loaded.extras.get("fast"), model, req, TRIAGE_HEADS
            ),
        ),
        Endpoint(
            "/system_team",
            "incident-system-team",
            schemas.TopKRequest,
            schemas.SystemTeamResponse,
            lambda model, req, loaded, cfg: fast.classify_heads(
                loaded.extras.get("fast"), model, req, SYSTEM_TEAM_HEADS
            ),
        ),
        Endpoint(
            "/similar_incidents",
            "incident-similar",
            schemas.SimilarRequest,
            schemas.SimilarResponse,
            lambda model, req, loaded, cfg: predict.similar_incidents(model, req),
        ),
        Endpoint(
            "/cluster",
            "incident-clusters",
            schemas.IncidentsRequest,
            schemas.ClusterResponse,
            lambda model, req, loaded, cfg: predict.cluster(model, req),
        ),
        Endpoint(
            "/forecast_archive",
            "archive-forecast",
            schemas.ArchiveRequest,
            schemas.ArchiveResponse,
            lambda model, req, loaded, cfg: predict.forecast_archive(model, req),
        ),
    ]
}


DRIFT_MODELS = {spec.drift_domain: spec.name for spec in MODELS.values() if spec.drift_domain}


def _sla(model, req, loaded, cfg) -> dict:
    threshold, source = predict.sla_threshold(loaded.source.metrics, cfg.sla_threshold)
    return {"threshold": threshold, "threshold_source": source} | fast.predict_sla(
        loaded.extras.get("fast"), model, req, threshold=threshold
    )


def check() -> None:
    """The table is consistent: every endpoint's model is in MODELS and lists it, every loader exists."""
    for spec in MODELS.values():
        assert spec.loader in LOADERS, f"{spec.name}: unknown loader {spec.loader!r}"
    assert tuple(MODELS) == schemas.MODEL_NAMES, "schemas.MODEL_NAMES must list the table's models in order"
    for e in ENDPOINTS.values():
        assert e.model in MODELS and e.route in MODELS[e.model].endpoints, f"{e.route}: model {e.model!r}"
    assert set(DRIFT_MODELS) == {"sensors", "incidents"}, DRIFT_MODELS
    for route, heads, trained in (
        ("/triage", TRIAGE_HEADS, triage.TRIAGE_TARGETS),
        ("/system_team", SYSTEM_TEAM_HEADS, system_team.SYSTEM_TEAM_TARGETS),
    ):
        item = ENDPOINTS[route].response.model_fields["results"].annotation.__args__[0]
        assert set(heads) == set(item.model_fields) - {"number"} == set(trained), f"{route}: heads {heads}"
