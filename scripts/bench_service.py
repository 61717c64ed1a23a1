"""Service benchmark (`make bench`): a real `bentoml serve` on loopback, in-process latency, locust HTTP load.

1. Starts `bentoml serve service:OpsLab` on a free 127.0.0.1 port with a throw-away API key, against the
   project registry (or, with --scratch, small models in a temporary registry), and times its start.
2. Loads the same models in this process through the same code (ml.serving.runtime) and times the same
   payloads without HTTP: the model's own cost.
3. Drives HTTP load with locust (headless, bounded, loopback only): each scenario at a constant rate
   (default 50 requests/s for 60 s), then a step load over the scenarios' mix to find the highest rate
   whose p95 stays within --step-p95-ms.
4. Writes docs/ml/bench.md and docs/ml/bench_service.json: per endpoint p50/p95/p99, throughput, errors,
   and HTTP p50 / in-process p50.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ml.config import ROOT
from ml.testing import models as testing_models
from ml.testing import server

SCENARIOS = {  # route -> what one request carries
    "/detect_anomaly": "24 readings of one sensor",
    "/predict_sla": "1 incident",
    "/triage": "1 ticket",
}
TRIAGE_UNKNOWN = ("assignment_group", "category", "subcategory", "cmdb_ci")  # what triage is asked for
MODEL_OF = {"/detect_anomaly": "sensor-anomaly", "/predict_sla": "incident-sla", "/triage": "incident-triage"}


# --- payloads ------------------------------------------------------------------------------------------
def payloads(known_sensors: list[str]) -> dict[str, str]:
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
def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = server.free_port()
    return server.start_server(env, log, port), f"http://127.0.0.1:{port}"


def stop_server(proc: subprocess.Popen) -> None:
    server.stop_server(proc, grace=30)


def wait_loaded(url: str, key: str, proc: subprocess.Popen, timeout: float = 600) -> tuple[float, dict]:
    import httpx

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


# --- measuring ------------------------------------------------------------------------------------------------
def pct(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def summarize(lat_ms: np.ndarray, ok: np.ndarray, seconds: float) -> dict:
    good = lat_ms[ok]
    return {
        "requests": int(len(lat_ms)),
        "errors": int((~ok).sum()),
        "p50_ms": pct(good, 50),
        "p95_ms": pct(good, 95),
        "p99_ms": pct(good, 99),
        "throughput_rps": round(len(good) / seconds, 1) if seconds else None,
    }


def in_process(rt, routes: list[str], bodies: dict[str, str], repeats: int) -> dict:
    """The same payloads through ml.serving.runtime in this process (parse + predict + response), no HTTP."""
    from ml.serving import table

    out = {}
    for route in routes:
        ep = table.ENDPOINTS[route]
        for _ in range(3):  # warm-up
            rt.call(route, ep.request.model_validate_json(bodies[route]))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = rt.call(route, ep.request.model_validate_json(bodies[route]))
            times.append(1000 * (time.perf_counter() - t0))
            if hasattr(res, "status_code"):
                raise SystemExit(f"in-process {route}: {res.status_code} {bytes(res.body)[:300]!r}")
        out[route] = {
            "p50_ms": pct(times, 50),
            "p95_ms": pct(times, 95),
            "p99_ms": pct(times, 99),
            "n": repeats,
        }
    return out


def run_locust(
    url: str,
    key: str,
    routes: list[str],
    work: Path,
    tag: str,
    *,
    rate: int = 0,
    seconds: int = 0,
    steps: list[int] | None = None,
    step_seconds: int = 15,
) -> pd.DataFrame:
    log = work / f"requests-{tag}.csv"
    env = {
        **os.environ,
        "OPSLAB_BENCH_PAYLOADS": str(work / "payloads.json"),
        "OPSLAB_BENCH_ROUTES": ",".join(routes),
        "OPSLAB_BENCH_KEY": key,
        "OPSLAB_BENCH_LOG": str(log),
    }
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "scripts" / "locustfile.py"),
        "--headless",
        "--host",
        url,
        "--only-summary",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
    ]
    if steps:
        env |= {
            "OPSLAB_BENCH_STEPS": ",".join(map(str, steps)),
            "OPSLAB_BENCH_STEP_SECONDS": str(step_seconds),
        }
        budget = len(steps) * step_seconds + 60
    else:
        cmd += ["-u", str(rate), "-r", str(rate), "--run-time", f"{seconds}s"]
        budget = seconds + 60
    with (work / f"locust-{tag}.log").open("wb") as out:
        subprocess.run(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=budget, check=False
        )
    if not log.exists():
        raise SystemExit(f"locust wrote no requests; see {work / f'locust-{tag}.log'}")
    frame = pd.read_csv(log, names=["start", "route", "ms", "ok"])
    frame["ok"] = frame["ok"].astype(bool)
    return frame


def constant_rate(frame: pd.DataFrame, seconds: int, warmup: float = 5.0) -> dict:
    t0 = frame["start"].min()
    steady = frame[frame["start"] >= t0 + warmup]
    span = max(seconds - warmup, 1.0)
    return summarize(steady["ms"].to_numpy(), steady["ok"].to_numpy(), span)


def step_results(frame: pd.DataFrame, steps: list[int], hold: int, settle: float = 3.0) -> list[dict]:
    t0 = frame["start"].min()
    out = []
    for i, rate in enumerate(steps):
        lo, hi = t0 + i * hold + settle, t0 + (i + 1) * hold
        part = frame[(frame["start"] >= lo) & (frame["start"] < hi)]
        if part.empty:
            break
        out.append({"target_rps": rate, **summarize(part["ms"].to_numpy(), part["ok"].to_numpy(), hi - lo)})
    return out


# --- report -------------------------------------------------------------------------------------------------------
def write_report(result: dict, md: Path, js: Path) -> None:
    js.write_text(json.dumps(result, indent=2) + "\n")
    env = result["environment"]
    lines = [
        "# Service benchmark",
        "",
        f"Measured {result['when']} by `make bench` (scripts/bench_service.py) on {env['cpus']} CPU(s) "
        f"({env['machine']}, load average {env['loadavg_before']} before the run), one BentoML worker, "
        f"models from {result['models_from']}. Locust runs in its own process on the same machine, so "
        "load generation competes with the server for the CPUs.",
        "",
        f"Server start (process start to `/readyz` 200): **{result['server_start_s']} s**.",
        "",
        "## Constant rate",
        "",
        f"{result['rate_rps']} requests/s for {result['seconds']} s per scenario (first 5 s not counted). "
        "In-process = the same payload parsed, predicted and answered by ml.serving in one process, no HTTP.",
        "",
        "| endpoint | payload | model v | p50 ms | p95 ms | p99 ms | throughput rps | errors | in-process p50 ms | HTTP p50 / in-process p50 | target p95 ≤ 50 ms, 0 errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for route, r in result["scenarios"].items():
        if "skipped" in r:
            lines.append(
                f"| `{route}` | {SCENARIOS[route]} | – | – | – | – | – | – | – | – | skipped: {r['skipped']} |"
            )
            continue
        ip = result["in_process"].get(route, {})
        ok = r["p95_ms"] is not None and r["p95_ms"] <= 50 and r["errors"] == 0
        lines.append(
            f"| `{route}` | {SCENARIOS[route]} | {r.get('model_version', '')} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['p99_ms']} | {r['throughput_rps']} | {r['errors']} | {ip.get('p50_ms')} | {r.get('ratio_http_p50_to_in_process')} | "
            f"{'met' if ok else '**not met**'} |"
        )
    lines += [
        "",
        "Light load (2 requests/s for 20 s, same payloads): what HTTP and BentoML add when the worker is idle.",
        "",
        "| endpoint | p50 ms | p95 ms | in-process p50 ms | HTTP p50 / in-process p50 |",
        "|---|---|---|---|---|",
    ]
    for route, r in result["scenarios"].items():
        if "light_load_2rps" in r:
            lt = r["light_load_2rps"]
            lines.append(
                f"| `{route}` | {lt['p50_ms']} | {lt['p95_ms']} | {result['in_process'][route]['p50_ms']} | "
                f"{r.get('ratio_light_http_p50_to_in_process')} |"
            )
    lines += [
        "",
        "## Step load",
        "",
        f"Mix of {', '.join(f'`{r}`' for r in result['step']['routes'])} "
        f"(in turn), each rate held {result['step']['hold_s']} s (first 3 s of a step not counted).",
        "",
        "| target rps | achieved rps | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["step"]["steps"]:
        lines.append(
            f"| {s['target_rps']} | {s['throughput_rps']} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} | {s['errors']} |"
        )
    best = result["step"]["highest_rps_within_p95"]
    lines += [
        "",
        f"Highest rate with p95 ≤ {result['step']['p95_limit_ms']} ms and no errors: **{best if best else 'none of the steps'}** requests/s.",
        "",
        "Numbers from a shared, busy machine vary from run to run; rerun `make bench` to compare on yours.",
    ]
    md.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--steps", default="5,10,20,30,40,50,75,100")
    ap.add_argument("--step-seconds", type=int, default=12)
    ap.add_argument("--step-p95-ms", type=float, default=200.0)
    ap.add_argument("--repeats", type=int, default=100, help="in-process calls per endpoint")
    ap.add_argument("--scratch", action="store_true", help="small models in a temporary registry")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "ml")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="opslab-bench-"))
    key = secrets.token_urlsafe(24)
    from ml.serving import guard

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLAB_API_KEYS")}
    env |= {
        "OPSLAB_API_KEYS": f"admin:sha256:{guard.hash_key(key).hex()}",
        "BENTOML_HOME": str(work / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "OMP_NUM_THREADS": "1",
    }
    models_from = "the project registry (models:/<name>@champion)"
    if args.scratch:
        reg = {
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "MLFLOW_ARTIFACT_ROOT": (work / "artifacts").as_uri(),
            "OPSLAB_MODELS_DIR": str(work / "models"),
        }
        os.environ.update(reg)
        env |= reg
        testing_models.build_registry(work / "models", anomaly_versions=1)
        models_from = "small scratch models (ml/testing/models.py)"
    loadavg = os.getloadavg()
    proc, url = start_server(env, work / "server.log")
    try:
        t_start = time.monotonic()
        start_s, models = wait_loaded(url, key, proc)
        start_s = round(start_s, 1)
        print(f"server ready in {start_s}s ({time.monotonic() - t_start:.0f}s until every model was tried)")
        from ml.serving.runtime import Runtime

        rt = Runtime()  # the same models, loaded in this process, for the in-process timings
        rt.start(background=False)
        detector = rt.slot("sensor-anomaly").loaded
        known = sorted(detector.model.named_steps["features"].sensors_) if detector else []
        bodies = payloads(known)
        (work / "payloads.json").write_text(json.dumps(bodies))
        from ml.serving import table

        routes = [r for r in SCENARIOS if r in table.ENDPOINTS and models.get(MODEL_OF[r], {}).get("loaded")]
        skipped = {
            r: ("no such endpoint yet" if r not in table.ENDPOINTS else f"model {MODEL_OF[r]} not loaded")
            for r in SCENARIOS
            if r not in routes
        }
        print("in-process latency ...", flush=True)
        inproc = in_process(rt, routes, bodies, args.repeats)
        scenarios: dict[str, dict] = {r: {"skipped": why} for r, why in skipped.items()}
        for route in routes:
            # light load first: what HTTP adds when the worker is not saturated
            print(f"locust: {route} at 2 rps for 20s ...", flush=True)
            light = run_locust(url, key, [route], work, "light" + route.replace("/", "-"), rate=2, seconds=20)
            light_r = constant_rate(light, 20)
            print(f"locust: {route} at {args.rate} rps for {args.seconds}s ...", flush=True)
            frame = run_locust(
                url, key, [route], work, route.strip("/"), rate=args.rate, seconds=args.seconds
            )
            r = constant_rate(frame, args.seconds)
            r["model_version"] = models[MODEL_OF[route]]["version"]
            r["light_load_2rps"] = light_r
            if inproc[route]["p50_ms"]:
                if r["p50_ms"]:
                    r["ratio_http_p50_to_in_process"] = round(r["p50_ms"] / inproc[route]["p50_ms"], 2)
                if light_r["p50_ms"]:
                    r["ratio_light_http_p50_to_in_process"] = round(
                        light_r["p50_ms"] / inproc[route]["p50_ms"], 2
                    )
            scenarios[route] = r
            print(f"  {r}", flush=True)
        steps = [int(x) for x in args.steps.split(",") if x]
        print(f"locust: step load {steps} x {args.step_seconds}s ...", flush=True)
        frame = run_locust(url, key, routes, work, "steps", steps=steps, step_seconds=args.step_seconds)
        step_rows = step_results(frame, steps, args.step_seconds)
        within = [
            s["target_rps"]
            for s in step_rows
            if s["p95_ms"] is not None and s["p95_ms"] <= args.step_p95_ms and s["errors"] == 0
        ]
        result = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "environment": {
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "python": platform.python_version(),
                "loadavg_before": [round(x, 2) for x in loadavg],
            },
            "models_from": models_from,
            "server_start_s": start_s,
            "rate_rps": args.rate,
            "seconds": args.seconds,
            "in_process": inproc,
            "scenarios": scenarios,
            "step": {
                "routes": routes,
                "hold_s": args.step_seconds,
                "p95_limit_ms": args.step_p95_ms,
                "steps": step_rows,
                "highest_rps_within_p95": max(within) if within else None,
            },
        }
    finally:
        stop_server(proc)
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(result, args.out / "bench.md", args.out / "bench_service.json")
    print(json.dumps({k: result[k] for k in ("server_start_s", "in_process", "scenarios")}, indent=1))
    print(f"wrote {args.out / 'bench.md'} and {args.out / 'bench_service.json'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
