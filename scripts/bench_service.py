"""Service benchmark (`make bench`): a real `bentoml serve`, in-process latency, open-loop HTTP load.

1. Starts `bentoml serve service:OpsLab` (its default: one worker per core, 2 here) on a free 127.0.0.1
   port against the project registry (or, with --scratch, small models in a temporary registry), with
   throw-away API keys, and times its start.
2. Loads the same models in this process through the same code (ml.serving.runtime, whose endpoints call
   the compiled paths of ml/serving/fast/) and times the same payloads without HTTP; the prediction log's
   CPU per request is measured apart (see `in_process`).
3. Drives each endpoint with the open-loop generator of ml/testing/loadgen.py (each request sent on its
   schedule whatever the earlier answers, latency from its start, so queueing counts; the generator's own
   lateness apart), pinned to one core: a light-load step (the HTTP overhead), steps at 50,
   100 and 200 requests/s, then a ramp until throughput falls under 95% of the offered rate or p95 passes
   --sat-p95-ms (the saturation rate). Not Locust: its gevent users cost more CPU per request than the
   server does on a 2-core machine.
4. Records the CPU seconds of the server's process tree and of the generator per step, the load average
   before and after and the busiest other processes, and writes docs/ml/bench.md and
   docs/ml/bench_service.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from ml.config import ROOT
from ml.testing import loadgen, server
from ml.testing import models as testing_models

SCENARIOS = {  # route -> what one request carries
    "/detect_anomaly": "24 readings of one sensor",
    "/predict_sla": "1 incident",
    "/triage": "1 ticket",
}
TRIAGE_UNKNOWN = ("assignment_group", "category", "subcategory", "cmdb_ci")  # what triage is asked for
MODEL_OF = {"/detect_anomaly": "sensor-anomaly", "/predict_sla": "incident-sla", "/triage": "incident-triage"}
N_KEYS = 16  # predict keys used in turn: serving.rate_limits is per key (100/s), the bench offers more
TARGETS = {"in_process_p50_ms": 1.0, "p95_ms_at_100": 15.0, "saturation_predict_sla": 300, "overhead_ms": 5.0}


# --- payloads ------------------------------------------------------------------------------------------
def payloads(known_sensors: list[str]) -> dict[str, str]:
    # the synthetic generators (pandas, faker) are only needed here, once
    from ml.data.synth.incidents import make_incidents
    from ml.data.synth.sensors import make_sensors
    from ml.serving import schemas

    readings, _ = make_sensors(n_sensors=24, days=3, seed=11, anomalies_per_sensor=0)
    sid = known_sensors[0] if known_sensors else readings["sensor_id"].iloc[0]
    one = readings[readings["sensor_id"] == readings["sensor_id"].iloc[0]].head(24)
    body_a = {
        "readings": [
            {"sensor_id": sid, "timestamp": t.isoformat(), "value": None if pd.isna(v) else float(v)}
            for t, v in zip(one["timestamp"], one["value"], strict=True)
        ]
    }
    inc = make_incidents(n_incidents=50, seed=11).iloc[7]
    # the open-time fields the service takes, as a client sends them (caller and group load left out)
    incident = schemas.incident_payload(inc.drop(labels=["caller_id"]).to_dict())
    return {
        "/detect_anomaly": json.dumps(body_a),
        "/predict_sla": json.dumps({"incidents": [incident]}),
        # the same ticket as it arrives for routing: text and metadata, no group / category / system yet
        "/triage": json.dumps(
            {"incidents": [{k: v for k, v in incident.items() if k not in TRIAGE_UNKNOWN}]}
        ),
    }


# --- the server ---------------------------------------------------------------------------------------------
def wait_loaded(url: str, key: str, proc: subprocess.Popen, timeout: float = 300) -> tuple[float, dict]:
    import httpx  # only for the start-up polling (the load itself is ml.testing.loadgen)

    t0, ready_at = time.monotonic(), None
    deadline = t0 + timeout
    with httpx.Client(base_url=url, timeout=10) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"bentoml serve exited with {proc.returncode}")
            try:
                if ready_at is None and c.get("/readyz").status_code == 200:
                    ready_at = time.monotonic() - t0
                if ready_at is not None:
                    models = c.post("/models", json={}, headers={"X-API-Key": key}).json()["models"]
                    if all(m["state"] != "loading" for m in models):
                        return ready_at, {m["name"]: m for m in models}
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise SystemExit(f"server not loaded after {timeout}s")


# --- in process ---------------------------------------------------------------------------------------------
def pct(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def in_process(rt, routes: list[str], bodies: dict[str, str], repeats: int, log_dir: Path) -> dict:
    """The same payloads through ml.serving.runtime in this process, no HTTP: `p50_ms` is the whole answer
    (JSON parse and validation, the endpoint's predict through its fast path, the response model);
    `predict_p50_ms` the endpoint's predict alone.

    `rt` runs without a prediction log: its writer thread works off the answer's path, but in a loop of
    back-to-back calls it never catches up and its GIL hand-offs would be timed as part of each answer
    (several ms). Its cost is measured apart instead (`prediction_log_ms`: CPU per request of turning
    the answer into records and writing them, through the public API into `log_dir`); the server of the
    HTTP steps writes the log as in production, so it is in their figures."""
    from ml.serving import table  # the endpoint table imports the schemas, which read the settings

    out = {}
    for route in routes:
        ep = table.ENDPOINTS[route]
        name = ep.model
        loaded = rt.slot(name).loaded
        for _ in range(20):  # warm-up
            rt.call(route, ep.request.model_validate_json(bodies[route]))
        whole, predict_only = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = rt.call(route, ep.request.model_validate_json(bodies[route]))
            whole.append(1000 * (time.perf_counter() - t0))
            if hasattr(res, "status_code"):
                raise SystemExit(f"in-process {route}: {res.status_code} {bytes(res.body)[:300]!r}")
        request = ep.request.model_validate_json(bodies[route])
        for _ in range(repeats):
            t0 = time.perf_counter()
            ep.predict(loaded.model, request, loaded, rt.cfg)
            predict_only.append(1000 * (time.perf_counter() - t0))
        out[route] = {
            "p50_ms": pct(whole, 50),
            "p95_ms": pct(whole, 95),
            "p99_ms": pct(whole, 99),
            "predict_p50_ms": pct(predict_only, 50),
            "prediction_log_ms": log_cost(route, request, rt.call(route, request), log_dir, repeats),
            "fast_path": loaded.extras.get("fast") is not None,
            "n": repeats,
        }
    return out


def log_cost(route: str, request, response, log_dir: Path, repeats: int) -> float:
    """CPU ms per request of the prediction log (records made and written in its batches): `repeats`
    answers queued, then flushed; this process's CPU time over both (its writer thread's, mostly)."""
    from ml.monitoring.predlog import PredictionLog

    plog = PredictionLog(log_dir / route.strip("/"))
    t0 = time.process_time()
    for _ in range(repeats):
        plog.record(route, request, response, "bench")
    plog.flush(timeout=120)
    cpu = time.process_time() - t0
    plog.close()
    return round(1000 * cpu / repeats, 3)


# --- cores, CPU, what else runs -------------------------------------------------------------------------
def tree_pids(pid: int) -> list[int]:
    try:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]
    except psutil.Error:
        return [pid]


def split_cores(mode: str) -> dict:
    """Which cores the generator and the server get. `split`: the generator alone on the last core, the
    server on the others; `shared`: the generator pinned to the last core, the server on all of them (its
    workers need both cores of a 2-core machine; the generator's own CPU is recorded); `auto`: split from 3
    usable cores up, shared below."""
    cores = sorted(os.sched_getaffinity(0))
    if mode == "auto":
        mode = "split" if len(cores) >= 3 else "shared"
    gen = {cores[-1]}
    srv = set(cores[:-1]) if mode == "split" and len(cores) > 1 else set(cores)
    return {"mode": mode, "generator_cores": sorted(gen), "server_cores": sorted(srv)}


def pin_server(pid: int, cores: list[int]) -> bool:
    return all(loadgen.pin(p, set(cores)) for p in tree_pids(pid))


def busiest_others(exclude: set[int], n: int = 8) -> list[dict]:
    """The processes (name only) using the most CPU over one second, ours left out."""
    procs = []
    for p in psutil.process_iter(["name"]):
        if p.pid in exclude:
            continue
        try:
            p.cpu_percent(None)
            procs.append(p)
        except psutil.Error:
            pass
    time.sleep(1.0)
    rows = []
    for p in procs:
        try:
            rows.append({"name": p.info["name"], "cpu_percent": round(p.cpu_percent(None), 1)})
        except psutil.Error:
            pass
    rows.sort(key=lambda r: -r["cpu_percent"])
    return [r for r in rows[:n] if r["cpu_percent"] > 0]


def wait_idle(pids: list[int], below: float = 0.05, timeout: float = 180.0) -> float:
    """Seconds until the server's processes use less than `below` of a core over a second (at most
    `timeout`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        c0 = loadgen.cpu_seconds(pids)
        time.sleep(1.0)
        if loadgen.cpu_seconds(pids) - c0 < below:
            break
    return round(time.monotonic() - t0, 1)


# --- HTTP load ------------------------------------------------------------------------------------------
def step(url: str, route: str, body: str, headers: list[dict], rate: float, seconds: float, pids) -> dict:
    """One open-loop step at `rate`, with the CPU seconds both sides used during it."""
    s0, g0, w0 = loadgen.cpu_seconds(pids), loadgen.self_cpu_seconds(), time.monotonic()
    res = loadgen.run_step(url, route, body, rate, seconds, headers=headers)
    wall = time.monotonic() - w0
    s1, g1 = loadgen.cpu_seconds(pids), loadgen.self_cpu_seconds()
    out = loadgen.summarize(res, skip_s=min(1.0, seconds / 5))  # the first second warms connections
    out |= {
        "seconds": seconds,
        "server_cpu_s": round(s1 - s0, 2),
        "generator_cpu_s": round(g1 - g0, 2),
        "server_cores_used": round((s1 - s0) / wall, 2),
        "server_cpu_ms_per_request": round(1000 * (s1 - s0) / len(res.due), 2),
        "generator_cores_used": round((g1 - g0) / wall, 2),
    }
    return out


def holds(s: dict, p95_bound: float) -> bool:
    return (
        s["errors"] == 0
        and s["throughput_rps"] is not None
        and s["throughput_rps"] >= 0.95 * s["target_rps"]
        and s["p95_ms"] is not None
        and s["p95_ms"] <= p95_bound
    )


def scenario(url: str, route: str, body: str, headers: list[dict], args, pids) -> dict:
    print(f"{route}: light load {args.light_rps} rps for {args.light_seconds}s ...", flush=True)
    light = step(url, route, body, headers, args.light_rps, args.light_seconds, pids)
    steps = []
    for rate in args.steps:
        steps.append(step(url, route, body, headers, rate, args.step_seconds, pids))
        print(f"  {rate:>4} rps: {short(steps[-1])}", flush=True)
    ramp = []
    rate = max(args.steps)
    if holds(steps[-1], args.sat_p95_ms):
        while rate < args.ramp_max:
            rate += args.ramp_by
            ramp.append(step(url, route, body, headers, rate, args.ramp_seconds, pids))
            print(f"  ramp {rate:>4} rps: {short(ramp[-1])}", flush=True)
            if not holds(ramp[-1], args.sat_p95_ms):
                break
    passing = [s["target_rps"] for s in steps + ramp if holds(s, args.sat_p95_ms)]
    top = max(passing) if passing else None
    return {
        "payload": SCENARIOS[route],
        "light_load": light,
        "steps": steps,
        "ramp": ramp,
        "saturation_rps": top,
        "saturation_is_lower_bound": bool(top is not None and ramp and holds(ramp[-1], args.sat_p95_ms)),
    }


def short(s: dict) -> str:
    return (
        f"{s['throughput_rps']} rps, p50 {s['p50_ms']} p95 {s['p95_ms']} p99 {s['p99_ms']} ms, "
        f"{s['errors']} errors, server {s['server_cores_used']} / generator {s['generator_cores_used']} cores"
    )


# --- report -------------------------------------------------------------------------------------------------------
def mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def write_report(result: dict, md: Path, js: Path) -> None:
    js.write_text(json.dumps(result, indent=2) + "\n")
    env, cores, t = result["environment"], result["cores"], result["targets"]
    meanwhile = next(iter(result["in_process"].values()), {}).get("server_cores_used_meanwhile")
    lines = [
        "# Service benchmark",
        "",
        f"Measured {result['when']} by `make bench` (scripts/bench_service.py): a real `bentoml serve` with "
        f"{result['workers']} workers on {env['cpus']} CPU(s) ({env['machine']}), models from "
        f"{result['models_from']}; server start (process start to `/readyz` 200) {result['server_start_s']} s.",
        "",
        f"**The machine was shared**: load average {env['loadavg_before']} before and {env['loadavg_after']} "
        "after the run (1, 5, 15 min). Busiest other processes at the start: "
        + (", ".join(f"{p['name']} {p['cpu_percent']}%" for p in env["others_before"]) or "none")
        + ". The figures are upper bounds for an idle machine.",
        "",
        f"Load: ml/testing/loadgen.py, open loop (request i due at i/rate, sent then whatever the earlier "
        f"answers; latency from its start, so queueing for a connection or in the server counts; how late "
        f"the generator started it is the `late` column, not in the latency), raw HTTP/1.1 on keep-alive connections, "
        f"{N_KEYS} API keys in turn (the rate limit is per key). Cores ({cores['mode']}): generator pinned to "
        f"{cores['generator_cores']}, server's process tree on {cores['server_cores']}"
        + (" (pinned)" if cores.get("server_pinned") else "")
        + ". Each step's first second is not counted; throughput = 2xx answers completed within the rest of the step, per second.",
        "",
        "## Summary against the targets of issue #15",
        "",
        "| endpoint | in-process p50 ms (predict only) | HTTP p50 at light load ms | overhead ms | p95 at 100 rps ms | "
        "errors at 100 rps | saturation rps | in-process ≤ 1 ms | p95 ≤ 15 ms, 0 errors | overhead ≤ 5 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for route, r in result["scenarios"].items():
        if "skipped" in r:
            lines.append(f"| `{route}` | skipped: {r['skipped']} |" + " |" * 8)
            continue
        ip = result["in_process"][route]
        at100 = next((s for s in r["steps"] if s["target_rps"] == 100), None)
        sat = r["saturation_rps"]
        sat_txt = f"{sat}{'+' if r['saturation_is_lower_bound'] else ''}" if sat else "below the first step"
        lines.append(
            f"| `{route}` | {ip['p50_ms']} ({ip['predict_p50_ms']}) | {r['light_load']['p50_ms']} | "
            f"{r['overhead_ms']} | {at100 and at100['p95_ms']} | {at100 and at100['errors']} | {sat_txt} | "
            f"{mark(ip['p50_ms'] <= t['in_process_p50_ms'])} | "
            f"{mark(bool(at100) and at100['errors'] == 0 and (at100['p95_ms'] or 1e9) <= t['p95_ms_at_100'])} | "
            f"{mark(r['overhead_ms'] is not None and r['overhead_ms'] <= t['overhead_ms'])} |"
        )
    sla = result["scenarios"].get("/predict_sla", {}).get("saturation_rps")
    lines += [
        "",
        f"Saturation = the highest offered rate with throughput ≥ 95% of it, p95 ≤ {result['saturation_p95_ms']} ms "
        f"and no errors (ramp by {result['ramp_by']} rps after the last step, up to {result['ramp_max']}; "
        f"`+`: the ramp's top still held). `/predict_sla` target ≥ {t['saturation_predict_sla']} rps: "
        f"{mark(bool(sla) and sla >= t['saturation_predict_sla'])}. Overhead = HTTP p50 at "
        f"{result['light_rps']} rps minus the in-process p50 (parse + predict + response).",
        "",
        "The in-process figures run without the prediction log; its writer thread works off the answer's "
        "path (in the server of the HTTP steps it runs as in production). They are taken once the server "
        f"is idle (it used {meanwhile} cores meanwhile). The prediction log's CPU per request, measured "
        "apart: "
        + ", ".join(
            f"`{route}` {ip.get('prediction_log_ms')} ms" for route, ip in result["in_process"].items()
        )
        + ".",
        "",
        "## Steps",
        "",
        "| endpoint | offered rps | throughput rps | p50 ms | p95 ms | p99 ms | errors | server CPU (cores) | "
        "server CPU ms / request | generator CPU (cores) | late p50 / p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for route, r in result["scenarios"].items():
        if "skipped" in r:
            continue
        for s in [r["light_load"], *r["steps"], *r["ramp"]]:
            lines.append(
                f"| `{route}` | {s['target_rps']} | {s['throughput_rps']} | {s['p50_ms']} | {s['p95_ms']} | "
                f"{s['p99_ms']} | {s['errors']}{' ' + str(s['error_statuses']) if s['errors'] else ''} | "
                f"{s['server_cpu_s']} s ({s['server_cores_used']}) | {s.get('server_cpu_ms_per_request')} | "
                f"{s['generator_cpu_s']} s ({s['generator_cores_used']}) | "
                f"{s.get('late_p50_ms')} / {s.get('late_p95_ms')} |"
            )
    lines += [
        "",
        "Rerun `make bench` (or `python -m scripts.bench_service --help`) to compare on a quiet machine.",
    ]
    md.write_text("\n".join(lines) + "\n")


# --- main ---------------------------------------------------------------------------------------------------------
def server_env(work: Path, admin_key: str, keys: list[str]) -> dict[str, str]:
    from ml.serving import guard  # reads the settings; after the --scratch registry is in the environment

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLAB_API_KEYS")}
    entries = [f"admin:sha256:{guard.hash_key(admin_key).hex()}"]
    entries += [f"predict:sha256:{guard.hash_key(k).hex()}" for k in keys]
    return env | {
        "OPSLAB_API_KEYS": ",".join(entries),
        "BENTOML_HOME": str(work / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "OMP_NUM_THREADS": "1",
        # ready when the measured models are: a model the bench does not call may not block it
        "OPSLAB_REQUIRED_MODELS": ",".join(MODEL_OF.values()),
    }


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="50,100,200", help="offered rates (requests/s), comma-separated")
    ap.add_argument("--step-seconds", type=float, default=10)
    ap.add_argument("--light-rps", type=float, default=5, help="the light load for the HTTP overhead")
    ap.add_argument("--light-seconds", type=float, default=8)
    ap.add_argument("--ramp-by", type=int, default=100, help="after the steps: +this rate until it breaks")
    ap.add_argument("--ramp-max", type=int, default=600)
    ap.add_argument("--ramp-seconds", type=float, default=6)
    ap.add_argument("--sat-p95-ms", type=float, default=50.0, help="p95 bound of the saturation rate")
    ap.add_argument("--cores", choices=["auto", "split", "shared"], default="auto")
    ap.add_argument("--routes", default=",".join(SCENARIOS))
    ap.add_argument("--repeats", type=int, default=500, help="in-process calls per endpoint")
    ap.add_argument("--scratch", action="store_true", help="small models in a temporary registry")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "ml")
    args = ap.parse_args(argv)
    args.steps = [int(x) for x in args.steps.split(",") if x]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a `timeout` or kill ends the run through `finally`, which stops the server (its own session)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="opslab-bench-"))
    # the prediction log is written as in production (its cost is measured) but into the throw-away
    # folder: bench requests must not reach data/predictions, which monitoring reads; before any settings
    os.environ["OPSLAB_PREDICTION_LOG"] = str(work / "predictions")
    admin_key, keys = secrets.token_urlsafe(24), [secrets.token_urlsafe(24) for _ in range(N_KEYS)]
    models_from = "the project registry (models:/<name>@champion)"
    if args.scratch:
        reg = {
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "MLFLOW_ARTIFACT_ROOT": (work / "artifacts").as_uri(),
            "OPSLAB_MODELS_DIR": str(work / "models"),
        }
        os.environ.update(reg)
        testing_models.build_registry(work / "models", anomaly_versions=1)
        models_from = "small scratch models (ml/testing/models.py)"
    env = server_env(work, admin_key, keys)
    cores = split_cores(args.cores)
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    others_before = busiest_others({os.getpid()})
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = server.start_server(env, work / "server.log", port)
    print(f"bentoml serve on {url} (log {work / 'server.log'}) ...", flush=True)
    try:
        start_s, models = wait_loaded(url, admin_key, proc)
        start_s = round(start_s, 1)
        pids = tree_pids(proc.pid)
        cores["server_pinned"] = cores["mode"] == "split" and pin_server(proc.pid, cores["server_cores"])
        print(f"server ready in {start_s}s; {len(pids)} processes; cores {cores}", flush=True)
        from ml.serving import settings, table  # after --scratch has set the registry up
        from ml.serving.runtime import Runtime  # loads the models in this process too (in-process timings)

        rt = Runtime(replace(settings.get(), prediction_log=None))  # its cost apart: see in_process()
        rt.start(background=False)
        detector = rt.slot("sensor-anomaly").loaded
        known = sorted(detector.model.named_steps["features"].sensors_) if detector else []
        bodies = payloads(known)
        wanted = [r for r in args.routes.split(",") if r in SCENARIOS]
        routes = [r for r in wanted if r in table.ENDPOINTS and models.get(MODEL_OF[r], {}).get("loaded")]
        scenarios: dict[str, dict] = {
            r: {
                "skipped": "no such endpoint"
                if r not in table.ENDPOINTS
                else f"model {MODEL_OF[r]} not loaded"
            }
            for r in wanted
            if r not in routes
        }
        # the workers may still be loading the models the bench does not call (readiness waits only for
        # the measured ones): that would share the cores with the in-process timings
        idle_s = wait_idle(pids)
        print(f"in-process latency (server idle after {idle_s} s) ...", flush=True)
        s0, w0 = loadgen.cpu_seconds(pids), time.monotonic()
        inproc = in_process(rt, routes, bodies, args.repeats, work / "predictions-in-process")
        beside = round((loadgen.cpu_seconds(pids) - s0) / (time.monotonic() - w0), 3)
        for route in routes:
            inproc[route]["server_cores_used_meanwhile"] = beside
        for route in routes:
            print(f"  {route}: {inproc[route]}", flush=True)
        loadgen.pin(0, set(cores["generator_cores"]))  # from here on this process only generates load
        headers = [{"X-API-Key": k} for k in keys]
        for route in routes:
            r = scenario(url, route, bodies[route], headers, args, pids)
            light = r["light_load"]["p50_ms"]
            r["overhead_ms"] = round(light - inproc[route]["p50_ms"], 2) if light is not None else None
            r["model_version"] = models[MODEL_OF[route]]["version"]
            scenarios[route] = r
        loadavg_after = [round(x, 2) for x in os.getloadavg()]
        others_after = busiest_others({os.getpid(), *tree_pids(proc.pid)})
    finally:
        server.stop_server(proc, grace=30)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "environment": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "loadavg_before": loadavg_before,
            "loadavg_after": loadavg_after,
            "others_before": others_before,
            "others_after": others_after,
        },
        "models_from": models_from,
        "workers": len([p for p in pids if p != proc.pid]) or None,
        "server_processes": len(pids),
        "server_start_s": start_s,
        "cores": cores,
        "generator": "ml/testing/loadgen.py (open loop, asyncio, HTTP/1.1 keep-alive)",
        "api_keys": N_KEYS,
        "light_rps": args.light_rps,
        "step_seconds": args.step_seconds,
        "ramp_by": args.ramp_by,
        "ramp_max": args.ramp_max,
        "saturation_p95_ms": args.sat_p95_ms,
        "targets": TARGETS,
        "in_process": inproc,
        "scenarios": scenarios,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(result, args.out / "bench.md", args.out / "bench_service.json")
    print(f"wrote {args.out / 'bench.md'} and {args.out / 'bench_service.json'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
