"""`Runtime.answer` (the async endpoints' path): a small request to a model with a compiled path is answered
on the event loop, anything else in a worker thread; the answer is the same either way."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import datetime

from ml.serving import loading, schemas, settings
from ml.serving.runtime import Loaded, Runtime, Slot
from ml.serving.table import Endpoint, ModelSpec

ROUTE, MODEL = "/detect_anomaly", "sensor-anomaly"


def runtime(fast: bool, inline_items: int = 32) -> tuple[Runtime, list[str]]:
    ran_in: list[str] = []

    def predict(model, request, loaded, cfg):
        ran_in.append(threading.current_thread().name)
        return {"results": []}

    endpoint = Endpoint(ROUTE, MODEL, schemas.DetectAnomalyRequest, schemas.DetectAnomalyResponse, predict)
    spec = ModelSpec(MODEL, "detector", (ROUTE,), "a stub")
    cfg = replace(settings.get(), prediction_log=None, inline_items=inline_items)
    rt = Runtime(cfg, models={MODEL: spec}, endpoints={ROUTE: endpoint})
    source = loading.Source(kind="registry", uri="models:/x/1", version="1", model_sha256="0" * 64)
    extras = {"fast": object() if fast else None}
    rt._slots[MODEL] = Slot("loaded", Loaded(MODEL, object(), source, "now", 0.0, extras))
    return rt, ran_in


def request(n: int) -> schemas.DetectAnomalyRequest:
    reading = schemas.Reading(sensor_id="s", timestamp=datetime(2024, 1, 1), value=1.0)
    return schemas.DetectAnomalyRequest.model_construct(readings=[reading] * n, explain="all")


def test_small_requests_to_a_compiled_model_stay_on_the_event_loop_and_others_go_to_a_thread():
    main = threading.current_thread().name
    rt, ran_in = runtime(fast=True)
    answers = [asyncio.run(rt.answer(ROUTE, request(n))) for n in (1, 32, 33)]
    assert ran_in[:2] == [main, main] and ran_in[2] != main  # 33 > serving.inline_items
    assert all(a.model_version == "1" and a.results == [] for a in answers)
    rt, ran_in = runtime(fast=False)  # no compiled path: the fitted object may take long, a thread
    asyncio.run(rt.answer(ROUTE, request(1)))
    assert ran_in != [main]
    rt, ran_in = runtime(fast=True, inline_items=0)  # 0: always a thread
    asyncio.run(rt.answer(ROUTE, request(1)))
    assert ran_in != [main]
