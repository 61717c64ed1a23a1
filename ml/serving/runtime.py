"""The running service's state: one slot per model, filled in the background, swapped whole on reload.

- Start: every model of the table is resolved and loaded in a background thread (required models first),
  so `/livez` answers at once and `/readyz` turns ready when the required models are loaded.
- A slot is replaced as one object (`self._slots[name] = Slot(...)`), never mutated: a request reads its
  model's slot once and keeps that model to the end, so a reload never tears a request or drops one; the
  old model is freed when its last request finishes.
- A model that cannot be loaded leaves its slot `failed`/`unavailable`: its endpoints answer 503 naming it,
  every other endpoint keeps working. A failed reload keeps the model that was serving.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from starlette.responses import JSONResponse
from threadpoolctl import threadpool_limits

from ml.monitoring.predlog import PredictionLog
from ml.serving import broadcast, fast, loading, schemas, settings, telemetry
from ml.serving.guard import REQUEST_ID
from ml.serving.predict import ClientError
from ml.serving.table import ENDPOINTS, LOADERS, MODELS, Endpoint, ModelSpec

log = logging.getLogger("opslab.serving")


def attach_logging() -> None:
    """Route opslab's log lines through BentoML's handlers (in a worker), else to stderr."""
    ours = logging.getLogger("opslab")
    if ours.handlers:
        return
    handlers = logging.getLogger("bentoml").handlers or [logging.StreamHandler()]
    for handler in handlers:
        ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def item_count(request) -> int:
    """The items of a request (readings, incidents or forecast items; 1 for any other body)."""
    for name in ("readings", "incidents", "items"):
        items = getattr(request, name, None)
        if isinstance(items, list):
            return len(items)
    return 1


HIDDEN = "details for admin keys only (POST /models with an admin key), and in the server log"
CLEARED = ""  # an override cleared by /models/reload: ignore OPSLAB_MODEL_URI_<NAME>, use the champion


@dataclass(frozen=True)
class Loaded:
    name: str
    model: Any
    source: loading.Source
    loaded_at: str
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Slot:
    state: str  # loading | loaded | failed | unavailable
    loaded: Loaded | None = None
    error: str | None = None


def error_response(status: int, message: str, *, loc: list | None = None, headers=None, **extra):
    """A JSON error body shaped like BentoML's validation errors: {"error": ..., "detail": [{loc, msg}]}."""

    body: dict[str, Any] = {"error": message, **extra}
    if loc is not None:
        body["detail"] = [{"loc": loc, "msg": message, "type": "value_error"}]
    return JSONResponse(body, status_code=status, headers=headers)


class Runtime:
    def __init__(
        self,
        cfg: settings.Settings | None = None,
        models: dict[str, ModelSpec] = MODELS,
        endpoints: dict[str, Endpoint] = ENDPOINTS,
    ):
        self.cfg = cfg or settings.get()
        self.models, self.endpoints = models, endpoints
        self._slots: dict[str, Slot] = {name: Slot("loading") for name in models}
        self._overrides: dict[str, str] = {}
        self._reload_lock = threading.Lock()
        self.started_at = time.time()
        self.initial_load_done = threading.Event()
        self.follower: broadcast.Follower | None = None
        self._threads: anyio.CapacityLimiter | None = None  # `answer`'s threads, made in the event loop
        # drift, alerts and ingest counters from the operations jobs' files, read when /metrics is scraped
        self.telemetry = telemetry.FileSeries()
        self.predlog = PredictionLog(
            self.cfg.prediction_log,
            max_queue=self.cfg.prediction_log_max_queue,
            retention_days=self.cfg.prediction_log_retention_days,
        )

    def follow(self, path=None) -> None:
        """Share reloads with the other workers through the reload log (ml/serving/broadcast.py); call
        before `start`: the reloads logged so far (a late worker) are applied before the first load."""
        self.follower = broadcast.Follower(self.reload, path)
        for name, uri in self.follower.overrides().items():
            self._overrides[name] = uri if uri else CLEARED

    # --- loading ---------------------------------------------------------------------------------------
    def start(self, background: bool = True) -> None:
        """Load every model (required ones first); in a daemon thread unless `background=False`.

        BLAS/OpenMP run single-threaded in the service: requests are small, and on a shared 2-core box
        OpenMP's thread hand-offs cost more than the work (measured: gradient boosting on one incident
        ~1.6 ms per tree with 2 threads vs ~0.03 ms with 1).
        """

        threadpool_limits(1)  # process-wide, for the life of the worker
        if background:
            threading.Thread(target=self._load_all, name="opslab-model-loader", daemon=True).start()
        else:
            self._load_all()

    def _load_all(self) -> None:
        order = sorted(self.models, key=lambda n: (n not in self.cfg.required_models, n))
        try:
            with self._reload_lock:
                for name in order:
                    self._refresh_guarded(name)
        finally:
            self.initial_load_done.set()
            if self.follower is not None:
                self.follower.start()
            log.info(
                "opslab: initial model load done in %.1fs: %s", time.time() - self.started_at, self.summary()
            )

    def _refresh(self, name: str) -> dict:
        """Re-resolve one model's source; load and swap it in if its bytes differ from what is serving."""
        spec = self.models[name]
        current = self._slots[name]
        before = current.loaded.source.version if current.loaded else None
        override = self._overrides.get(name)
        try:
            source = loading.resolve(name, override or None, use_env=override != CLEARED)
        except loading.ResolveError as exc:
            return self._failed(name, current, f"{exc}", before, state="unavailable")
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed manifest: this model fails, no other
            log.exception("opslab: resolving %s failed", name)
            return self._failed(name, current, f"cannot resolve: {loading.short_error(exc)}", before)
        if current.loaded and current.loaded.source.model_sha256 == source.model_sha256:
            kept = replace(current.loaded, source=source)
            self._slots[name] = Slot("loaded", kept)
            return {
                "name": name,
                "status": "unchanged",
                "version_before": before,
                "version_after": source.version,
            }
        t0 = time.perf_counter()
        try:
            model = loading.load(source, LOADERS[spec.loader])
        except Exception as exc:  # noqa: BLE001 - a broken model must not take the service down
            return self._failed(
                name,
                current,
                f"{source.kind} {source.uri} v{source.version}: {loading.short_error(exc)}",
                before,
            )
        seconds = time.perf_counter() - t0
        extras: dict[str, Any] = {"fast": fast.compile_model(name, model) if self.cfg.fast_path else None}
        if spec.drift_domain:
            try:
                extras["reference"], extras["reference_note"] = loading.load_reference(source)
            except Exception as exc:  # noqa: BLE001 - a broken reference fails /check_drift only
                extras["reference"], extras["reference_note"] = (
                    None,
                    f"reference unreadable: {loading.short_error(exc)}",
                )
        self._slots[name] = Slot("loaded", Loaded(name, model, source, loading.now_iso(), seconds, extras))
        log.info(
            "opslab: %s v%s loaded from %s (%s) in %.1fs",
            name,
            source.version,
            source.kind,
            source.uri,
            seconds,
        )
        if source.note:
            log.warning("opslab: %s: %s", name, source.note)
        return {"name": name, "status": "swapped", "version_before": before, "version_after": source.version}

    def _failed(
        self, name: str, current: Slot, error: str, before: str | None, state: str = "failed"
    ) -> dict:
        if current.loaded is not None:  # keep serving what was loaded; say that the refresh failed
            self._slots[name] = Slot("loaded", current.loaded, f"last reload failed: {error}")
            log.error("opslab: reload of %s failed, still serving v%s: %s", name, before, error)
        else:
            self._slots[name] = Slot(state, None, error)
            log.error("opslab: model %s is not available: %s", name, error)
        return {
            "name": name,
            "status": "failed",
            "version_before": before,
            "version_after": before,
            "error": error,
        }

    def reload(self, names: list[str] | None = None, uris: dict[str, str | None] | None = None) -> list[dict]:
        """Re-resolve aliases (and apply `uris` overrides) and swap changed models, without a restart."""
        with self._reload_lock:
            for name, uri in (uris or {}).items():
                self._overrides[name] = uri if uri else CLEARED
            targets = list(names) if names else list(self.models)
            targets += [n for n in (uris or {}) if n not in targets]
            return [self._refresh_guarded(n) if n in self.models else self._unknown(n) for n in targets]

    def reload_everywhere(self, names=None, uris=None) -> list[dict]:
        """`reload` here, then logged for every other worker to replay (within POLL_SECONDS + load time)."""
        results = self.reload(names, uris)
        if self.follower is not None:
            self.follower.publish(names, uris)
        return results

    def _refresh_guarded(self, name: str) -> dict:
        """`_refresh`, with any error it did not expect failing this model only (never the loader thread,
        never the other models, never /models/reload)."""
        try:
            return self._refresh(name)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.exception("opslab: refreshing %s failed", name)
            return self._failed(name, self._slots[name], f"refresh failed: {loading.short_error(exc)}", None)

    @staticmethod
    def _unknown(name: str) -> dict:
        return {
            "name": name,
            "status": "failed",
            "version_before": None,
            "version_after": None,
            "error": f"{name} is not served by this service (not in the model table)",
        }

    # --- state ---------------------------------------------------------------------------------------
    def ready(self) -> bool:
        return all(
            self._slots.get(n, Slot("unavailable")).state == "loaded" for n in self.cfg.required_models
        )

    def slot(self, name: str) -> Slot:
        return self._slots[name]

    def summary(self) -> str:
        return ", ".join(
            f"{n}=" + (f"v{s.loaded.source.version}({s.loaded.source.kind})" if s.loaded else s.state)
            for n, s in self._slots.items()
        )

    def models_info(self, detail: bool = True) -> list[schemas.ModelInfo]:
        """Every model's state. `detail=False` (a key without the admin scope) leaves out what tells about
        the host: the source's uri (a path), the raw error text, notes and reference locations."""
        out = []
        for name, spec in self.models.items():
            slot = self._slots[name]
            info: dict[str, Any] = {
                "name": name,
                "endpoints": list(spec.endpoints),
                "required": name in self.cfg.required_models,
                "state": slot.state,
                "loaded": slot.loaded is not None,
                "error": slot.error if detail or slot.error is None else HIDDEN,
            }
            if slot.loaded is not None:
                src = slot.loaded.source
                info |= {
                    "version": src.version,
                    "alias": src.alias,
                    "model_sha256": src.model_sha256,
                    "source": src.kind,
                    "uri": src.uri if detail else None,
                    "metrics": {k: v for k, v in src.metrics.items() if v == v and abs(v) != float("inf")},
                    "loaded_at": slot.loaded.loaded_at,
                    "note": src.note if detail or src.note is None else HIDDEN,
                }
                if self.models[name].drift_domain:
                    ref = slot.loaded.extras.get("reference")
                    where = slot.loaded.extras.get("reference_note") if detail else "location hidden"
                    info["drift_reference"] = (
                        f"{len(ref)} rows ({where})" if ref is not None else f"none: {where}"
                    )
            out.append(schemas.ModelInfo(**info))
        return out

    def metrics_text(self) -> str:
        """Prometheus lines: one gauge per model (1 = loaded), labelled with version and source."""
        lines = [
            "# HELP opslab_model_loaded 1 when the model is loaded and answering, else 0",
            "# TYPE opslab_model_loaded gauge",
        ]
        for name, slot in self._slots.items():
            version = slot.loaded.source.version if slot.loaded else ""
            kind = slot.loaded.source.kind if slot.loaded else slot.state
            lines.append(
                f'opslab_model_loaded{{model="{name}",version="{version}",source="{kind}"}} '
                f"{1 if slot.loaded else 0}"
            )
        lines += ["# HELP opslab_ready 1 when every required model is loaded", "# TYPE opslab_ready gauge"]
        lines.append(f"opslab_ready {1 if self.ready() else 0}")
        plog = self.predlog
        for what, value in (("dropped", plog.dropped), ("written", plog.written), ("failed", plog.failed)):
            lines += [f"# HELP opslab_prediction_log_{what}_total prediction records {what} by this worker",
                      f"# TYPE opslab_prediction_log_{what}_total counter",
                      f"opslab_prediction_log_{what}_total {value}"]  # fmt: skip
        return "\n".join(lines) + "\n" + self.telemetry.text()

    # --- requests --------------------------------------------------------------------------------------
    async def answer(self, route: str, request):
        """`call` from an async endpoint: on the worker's event loop when the endpoint's model has a compiled
        path and the request holds at most `serving.inline_items` items (the answer then takes well under a
        millisecond, less than handing it to a thread and back, which on a busy box waits for the scheduler
        twice), else in a thread (at most `serving.threads` at once), so a large request never holds the loop."""
        slot = self._slots.get(self.endpoints[route].model)
        fast = slot is not None and slot.loaded is not None and slot.loaded.extras.get("fast") is not None
        if fast and item_count(request) <= self.cfg.inline_items:
            return self.call(route, request)
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(self.cfg.threads)
        return await anyio.to_thread.run_sync(
            functools.partial(self.call, route, request), limiter=self._threads
        )

    def call(self, route: str, request):
        """Answer one request with the endpoint's model: response model, or a JSON error response."""
        ep = self.endpoints[route]
        name = ep.pick_model(request) if ep.pick_model else ep.model
        slot = self._slots[name]  # read once: this request keeps this model even if a reload swaps it
        if slot.loaded is None:  # the raw error (paths, exception text) is for /models with an admin key
            reason = "still loading" if slot.state == "loading" else f"{slot.state} ({HIDDEN})"
            return error_response(
                503, f"model {name!r} is not available: {reason}", model=name, headers={"Retry-After": "5"}
            )
        loaded = slot.loaded
        started = time.perf_counter()
        try:
            fields = ep.predict(loaded.model, request, loaded, self.cfg)
        except ClientError as exc:
            if exc.status == 503:
                return error_response(503, exc.message, model=name)
            return error_response(exc.status, exc.message, loc=exc.loc)
        except Exception:  # noqa: BLE001 - log the trace, never send it
            log.exception("opslab: %s failed with model %s v%s", route, name, loaded.source.version)
            return error_response(500, f"internal error in {route} (model {name!r}); see the server log")
        response = ep.response(
            model_name=name,
            model_version=loaded.source.version,
            model_sha256=loaded.source.model_sha256,
            model_source=loaded.source.kind,
            **fields,
        )
        self.predlog.record(route, request, response, REQUEST_ID.get())  # queued: never blocks or raises
        results = fields.get("results")
        items = len(results) if isinstance(results, list) else 1
        telemetry.observe(route, name, loaded.source.version, items, time.perf_counter() - started)
        return response
