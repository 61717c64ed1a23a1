"""opslab's HTTP service (BentoML 1.4). Thin on purpose: every decision lives in ml/serving/ (docs/serving.md).

bentoml serve service:OpsLab --host 127.0.0.1 --port 3000        (or: make serve)
"""

from __future__ import annotations

import os

# single-threaded BLAS/OpenMP, set before numpy/sklearn load; the workers BentoML spawns inherit it
os.environ.setdefault("OMP_NUM_THREADS", "1")

import anyio  # noqa: E402
import bentoml  # noqa: E402

from ml.serving import broadcast, guard, metrics_labels, settings
from ml.serving import schemas as S
from ml.serving.bento import RegistryModel
from ml.serving.runtime import Runtime, attach_logging

CFG = settings.get()
metrics_labels.install()  # before BentoML builds the app: unknown paths share one metrics label
if bentoml.server_context.worker_index is None:  # the serving process (not a worker): a fresh reload log
    broadcast.new_log()


@bentoml.service(
    name="opslab",
    workers=settings.worker_count(CFG),  # default one per core; reloads reach all (ml/serving/broadcast.py)
    threads=CFG.threads,
    traffic={"timeout": 60},
    http={"host": "127.0.0.1", "port": 3000},  # loopback unless told otherwise (and then keys are required)
    logging={"access": {"enabled": CFG.access_log}},  # serving.access_log / OPSLAB_ACCESS_LOG
    # no OpenTelemetry span per request unless serving.tracing (BentoML exports none by default anyway)
    tracing={} if CFG.tracing else {"excluded_urls": [".*"]},
)
class OpsLab:
    """Sensor anomaly detection and forecasting; incident SLA-breach risk, time to resolution, triage,
    impacted system and team, similar past incidents and recurring-problem clusters."""

    # The registry's models, declared at class scope so that `bentoml build` carries them (ml/serving/bento.py).
    sensor_anomaly = RegistryModel.declare("sensor-anomaly")
    sensor_forecast = RegistryModel.declare("sensor-forecast")
    incident_sla = RegistryModel.declare("incident-sla")
    incident_ttr = RegistryModel.declare("incident-ttr")
    incident_triage = RegistryModel.declare("incident-triage")
    incident_system_team = RegistryModel.declare("incident-system-team")
    incident_clusters = RegistryModel.declare("incident-clusters")
    incident_similar = RegistryModel.declare("incident-similar")
    archive_forecast = RegistryModel.declare("archive-forecast")

    def __init__(self) -> None:
        attach_logging()
        if not guard.KeyRing.from_env().enabled:
            guard.warn_open(guard.bound_host() or "this address")
        self.runtime = Runtime(CFG)
        self.runtime.follow()  # /models/reload in any worker reaches every worker
        self.runtime.start()  # loads in the background; /readyz waits for the required models

    @bentoml.on_deployment
    def refuse_open_public_bind() -> None:
        try:
            ring = guard.KeyRing.from_env()
        except guard.KeyConfigError as exc:  # a key setting without a key: refuse, never fall back to open
            raise SystemExit(f"opslab: refusing to start: {exc}") from exc
        guard.check_bind(guard.intended_host(), ring)

    def __is_ready__(self) -> bool:
        return self.runtime.ready()

    def __metrics__(self, content: str) -> str:
        return content + self.runtime.metrics_text()

    @bentoml.api(route="/detect_anomaly")
    async def detect_anomaly(self, request: S.DetectAnomalyRequest, /) -> S.DetectAnomalyResponse:
        """Score raw sensor readings: anomaly score in [0, 1], flag, threshold and top contributing feature."""
        return await self.runtime.answer("/detect_anomaly", request)  # small ones without a thread

    @bentoml.api(route="/forecast")
    def forecast(self, request: S.ForecastRequest, /) -> S.ForecastResponse:
        """Point forecast with 80% and 95% intervals per sensor, optionally after recent history."""
        return self.runtime.call("/forecast", request)

    @bentoml.api(route="/predict_sla")
    async def predict_sla(self, request: S.IncidentsRequest, /) -> S.SlaResponse:
        """P(SLA breach) from fields known at open time, and the decision at the configured threshold."""
        return await self.runtime.answer("/predict_sla", request)  # small ones without a thread

    @bentoml.api(route="/predict_ttr")
    def predict_ttr(self, request: S.IncidentsRequest, /) -> S.TtrResponse:
        """Hours to resolution: P10 / P50 (expected) / P90."""
        return self.runtime.call("/predict_ttr", request)

    @bentoml.api(route="/triage")
    async def triage(self, request: S.TopKRequest, /) -> S.TriageResponse:
        """Assignment group and category from ticket text + metadata, each with its confidence, or
        `abstain: true` with the reason; the `top_k` most probable labels of each."""
        return await self.runtime.answer("/triage", request)  # small ones without a thread

    @bentoml.api(route="/system_team")
    async def system_team(self, request: S.TopKRequest, /) -> S.SystemTeamResponse:
        """Impacted system (cmdb_ci) and owning team, each with its confidence, or `abstain: true` with
        the reason; the `top_k` most probable labels of each."""
        return await self.runtime.answer("/system_team", request)  # small ones without a thread

    @bentoml.api(route="/similar_incidents")
    def similar_incidents(self, request: S.SimilarRequest, /) -> S.SimilarResponse:
        """The k most similar resolved incidents of each ticket: their group, category, system and hours
        to resolve."""
        return self.runtime.call("/similar_incidents", request)

    @bentoml.api(route="/cluster")
    def cluster(self, request: S.IncidentsRequest, /) -> S.ClusterResponse:
        """The recurring-problem cluster of each incident and the cluster's top terms."""
        return self.runtime.call("/cluster", request)

    @bentoml.api(route="/forecast_archive")
    def forecast_archive(self, request: S.ArchiveRequest, /) -> S.ArchiveResponse:
        """GB archived and GB saved per source over the next week and month, with intervals."""
        return self.runtime.call("/forecast_archive", request)

    @bentoml.api(route="/check_drift")
    def check_drift(self, request: S.DriftRequest, /) -> S.DriftResponse:
        """PSI per feature of a batch of recent records against the model's saved training reference."""
        return self.runtime.call("/check_drift", request)

    @bentoml.api(route="/models")
    def models(self, request: S.Empty, /, ctx: bentoml.Context) -> S.ModelsResponse:
        """Every model: version, alias, sha256, source, training metrics, loaded or not (with an admin key
        also where it was loaded from and the full error text)."""
        admin = "admin" in ctx.request.scope.get(guard.GRANTED, ())
        return S.ModelsResponse(ready=self.runtime.ready(), models=self.runtime.models_info(detail=admin))

    @bentoml.api(route="/models/reload")
    async def reload(self, request: S.ReloadRequest, /) -> S.ReloadResponse:
        """(admin) Re-resolve aliases / apply source overrides and swap changed models without a restart."""
        results = await anyio.to_thread.run_sync(self.runtime.reload_everywhere, request.models, request.uris)
        return S.ReloadResponse(results=results, models=self.runtime.models_info())


OpsLab.add_asgi_middleware(guard.GuardMiddleware, openapi=lambda: OpsLab.openapi_spec.asdict())
