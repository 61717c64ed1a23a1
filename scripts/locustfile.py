"""Locust load for the service benchmark (run by scripts/bench_service.py; not on its own).

Environment:
- OPSLAB_BENCH_PAYLOADS: JSON file {route: body} (the bench writes it); OPSLAB_BENCH_ROUTES: comma-separated
  routes this run calls (a user picks one per request, in turn);
- OPSLAB_BENCH_KEY: the API key; OPSLAB_BENCH_LOG: where every request is written as
  `start_epoch_s,route,latency_ms,ok` (the bench computes its percentiles from this, per step);
- OPSLAB_BENCH_STEPS (optional): comma-separated request rates, each held OPSLAB_BENCH_STEP_SECONDS:
  a step load. Each simulated user sends one request per second (constant throughput), so users = rate.
"""

from __future__ import annotations

import itertools
import json
import os

from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task

PAYLOADS = json.loads(open(os.environ["OPSLAB_BENCH_PAYLOADS"]).read())
ROUTES = [r for r in os.environ["OPSLAB_BENCH_ROUTES"].split(",") if r]
KEY = os.environ.get("OPSLAB_BENCH_KEY", "")
_log = open(os.environ["OPSLAB_BENCH_LOG"], "a", buffering=1)
_turn = itertools.count()


@events.request.add_listener
def _record(request_type, name, response_time, response_length, exception=None, start_time=None, **kw):
    _log.write(f"{start_time:.6f},{name},{response_time:.3f},{0 if exception else 1}\n")


class ServiceUser(FastHttpUser):
    wait_time = constant_throughput(1)
    connection_timeout = 10
    network_timeout = 30

    @task
    def call(self):
        route = ROUTES[next(_turn) % len(ROUTES)]
        self.client.post(
            route,
            data=PAYLOADS[route],
            headers={"Content-Type": "application/json", "X-API-Key": KEY},
            name=route,
        )


if os.environ.get("OPSLAB_BENCH_STEPS"):

    class StepShape(LoadTestShape):
        rates = [int(x) for x in os.environ["OPSLAB_BENCH_STEPS"].split(",")]
        hold = float(os.environ.get("OPSLAB_BENCH_STEP_SECONDS", "15"))

        def tick(self):
            step = int(self.get_run_time() // self.hold)
            if step >= len(self.rates):
                return None
            rate = self.rates[step]
            return rate, rate  # users (one request/s each), spawned within a second
