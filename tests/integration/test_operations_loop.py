"""The operations loop end to end (docs/operations.md), with real processes throughout:

a `bentoml serve` answers /predict_sla traffic whose ticket mix is shifted away from the training reference
-> its prediction log -> `python -m ml.monitoring.job` sees the drift and raises `drift:incident-sla` in the
alert log and at a local webhook receiver -> `python -m ml.retrain --if-needed` retrains (the command is the
scratch trainer standing in for `dvc repro sla`), the new version becomes champion, the job asks the service
to reload with the admin key -> the service answers with the new version. A second run of both with no new
data does nothing and says why.

The whole loop runs with the registry in SQLite. Through a local `mlflow server` process (HTTP tracking,
registry and artifacts, the way a team shares one tracking server) runs the part of it that talks to the
registry: the service loads v1 over HTTP, the retrain job (on the drift alert, raised through the same
`AlertManager` the monitoring job uses) registers and promotes v2 there, and the service reloads it. The
monitoring job reads the exported champion and the prediction log only, so it runs once, in the SQLite case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from ml import retrain
from ml.config import ROOT, load_params
from ml.monitoring import alerts, predlog
from ml.monitoring import job as monitoring_job
from ml.serving import guard, schemas, settings, telemetry
from ml.testing import models as testing_models
from ml.testing import server

# one xdist group per test: two long tests that wait on their processes much of the time can run side by side
pytestmark = pytest.mark.slow

ADMIN_KEY = "admin-key-for-the-loop-0123456789"
WINDOW_S = 2  # operations.window in this test: the job judges whole windows of this many seconds
DRIFT = "drift:incident-sla"


class Webhook:
    """A Slack-compatible incoming webhook on 127.0.0.1 that keeps what it receives."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):  # quiet
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: the process exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not answering after {timeout}s:\n{log.read_text()[-3000:]}")


def loop_params(work: Path) -> Path:
    """The project's params with the loop's state under `work`, short windows, and the scratch trainer."""
    params = load_params(ROOT / "params.yaml")
    ops = params["operations"]
    ops.update(predictions=str(work / "predictions"), state=str(work / "state"), report=str(work / "report"),
               window=f"{WINDOW_S}s", settle="1s", min_rows=30, lookback="1D")  # fmt: skip
    params["features"]["silver"] = str(work / "silver")  # no labels have arrived: drift is the trigger
    retrain_cfg = ops["retrain"]
    retrain_cfg["command"] = f"python -m ml.testing.models --export-dir {work / 'models'} --seed 8 {{stages}}"
    retrain_cfg["reload_timeout_seconds"] = 120
    retrain_cfg["models"]["incident-sla"].update(
        max_age_days=None, min_new_labelled_rows=None, performance_drop=None
    )
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def shifted(incidents: pd.DataFrame) -> list[dict]:
    """Real scratch tickets, but all arriving by one channel at top priority in one category at 3 a.m."""
    rows = incidents.copy()
    top = rows["category"].value_counts().index[-1]  # the rarest category
    rows = rows.assign(category=top, priority=1, impact=1, urgency=1, contact_type="Self-service")
    rows["opened_at"] = pd.to_datetime(rows["opened_at"]).dt.normalize() + pd.Timedelta(hours=3)
    return [schemas.incident_payload(r) for r in rows.to_dict("records")]


def run(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd[2:4]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def in_process(main, argv: list[str], env: dict[str, str], monkeypatch, capsys) -> str:
    """A second run of a job's command line in this process (same code and arguments as the subprocess,
    without another ~20 s of imports): its stdout, after it exited 0."""
    with monkeypatch.context() as mp:
        for k in [k for k in os.environ if k.startswith(("OPSLAB_", "MLFLOW_"))]:
            mp.delenv(k)
        for k, v in env.items():
            if k.startswith(("OPSLAB_", "MLFLOW_")):
                mp.setenv(k, v)
        mp.chdir(ROOT)
        capsys.readouterr()
        code = main(argv)
    out = capsys.readouterr()
    assert code == 0, f"{argv[:2]} exited {code}:\n{out.out}\n{out.err}"
    return out.out


class Loop:
    """A registry (SQLite, or a local `mlflow server`) with incident-sla v1, and a `bentoml serve` on it."""

    def __init__(self, tracking: str, work: Path, monkeypatch, extra_env: dict[str, str] | None = None):
        self.work, self.procs, self.hook = work, [], Webhook()
        base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("OPSLAB_", "MLFLOW_", "BENTOML_"))
        }
        try:
            self._start(tracking, work, monkeypatch, base_env, extra_env or {})
        except BaseException:
            self.close()
            raise

    def _start(self, tracking, work, monkeypatch, base_env, extra_env):
        if tracking == "sqlite":
            reg_env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
                       "MLFLOW_ARTIFACT_ROOT": (work / "artifacts").as_uri()}  # fmt: skip
        else:  # a tracking server owning the store and the artifacts; clients only know its URL
            port = server.free_port()
            log = work / "mlflow-server.log"
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                 "--backend-store-uri", f"sqlite:///{work / 'server.db'}",
                 "--artifacts-destination", str(work / "server-artifacts"), "--workers", "1"],
                env=base_env | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no ~6 idle Huey job consumers
                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
            wait_http(f"http://127.0.0.1:{port}/health", self.procs[-1], log)
            reg_env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
            monkeypatch.delenv("MLFLOW_ARTIFACT_ROOT", raising=False)
        for k, v in reg_env.items():
            monkeypatch.setenv(k, v)
        self.data = testing_models.make_data()
        first = testing_models.register_incident_sla(self.data, work / "models")
        assert first.version == "1" and first.promoted

        self.env = base_env | reg_env | {
            "OPSLAB_MODELS_DIR": str(work / "models"),
            settings.ENV_PREDICTION_LOG: str(work / "predictions"),
            settings.ENV_API_KEYS: f"admin:sha256:{guard.hash_key(ADMIN_KEY).hex()}",
            settings.ENV_REQUIRED: "incident-sla",
            telemetry.ENV_STATE: str(work / "state"),
            "BENTOML_HOME": str(work / "bentoml"),
            "PYTHONUNBUFFERED": "1",
        } | extra_env  # fmt: skip
        port = server.free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.procs.append(server.start_server(self.env, work / "service.log", port))
        wait_http(f"{self.url}/readyz", self.procs[-1], work / "service.log")
        self.client = httpx.Client(base_url=self.url, headers={guard.HEADER.decode(): ADMIN_KEY}, timeout=60)
        self.params = loop_params(work)
        self.job_env = self.env | {alerts.ENV_WEBHOOK: self.hook.url, alerts.ENV_STATE: str(work / "state")}
        self.retrain_env = self.job_env | {"OPSLAB_SERVICE_URL": self.url, "OPSLAB_ADMIN_KEY": ADMIN_KEY}
        self.retrain_argv = ["--if-needed", "--params", str(self.params), "--model", "incident-sla"]

    def answers(self, tickets: list[dict], version: str) -> None:
        r = self.client.post("/predict_sla", json={"incidents": tickets})
        assert r.status_code == 200 and r.json()["model_version"] == version, r.text

    def retrain_reloads_the_service(self, tickets: list[dict]) -> None:
        """`python -m ml.retrain --if-needed` on the active drift alert: v2 trained, promoted, and served
        without a restart; the audit and the webhook say so."""
        done = run([sys.executable, "-m", "ml.retrain", *self.retrain_argv], self.retrain_env)
        assert f"active alert {DRIFT}" in done.stdout, done.stdout
        self.answers(tickets[:5], "2")  # reloaded, no restart
        audit = [json.loads(x) for x in (self.work / "state" / "audit.jsonl").read_text().splitlines()]
        trained = [a for a in audit if a.get("kind") == "retrain"]
        assert trained and trained[-1]["models"]["incident-sla"]["status"] == "promoted", trained
        assert any("retrain" in json.dumps(m).lower() for m in self.hook.received), (
            "no notification of the retrain"
        )

    def idle_retrain_does_nothing(self, monkeypatch, capsys) -> None:
        """A second retrain run with nothing new does nothing, and says why."""
        before = (self.work / "state" / "audit.jsonl").read_text()
        idle = in_process(retrain.main, self.retrain_argv, self.retrain_env, monkeypatch, capsys)
        assert "no retrain" in idle and "already acted on" in idle, idle
        new_runs = (self.work / "state" / "audit.jsonl").read_text()[len(before) :]
        assert new_runs and '"kind": "retrain"' not in new_runs, new_runs

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()
        self.hook.close()
        for proc in reversed(self.procs):
            server.stop_server(proc)


@pytest.mark.xdist_group("operations-loop")
def test_drifted_traffic_alerts_retrains_and_the_service_answers_with_the_new_version(
    tmp_path, monkeypatch, capsys
):
    loop = Loop("sqlite", tmp_path, monkeypatch)
    work = tmp_path
    try:
        # traffic over three whole windows: every ticket shifted, each one sent once (the job judges tickets)
        tickets = shifted(loop.data.incidents)
        span, chunk = 3 * WINDOW_S + 1, 20
        start, sent = time.time(), 0
        for i in range(0, len(tickets), chunk):  # paced evenly over the span
            time.sleep(max(0.0, start + span * i / len(tickets) - time.time()))
            loop.answers(tickets[i : i + chunk], "1")
            sent += len(tickets[i : i + chunk])
        deadline = time.monotonic() + 30
        while len(predlog.read_log(work / "predictions", model="incident-sla")) < sent:
            assert time.monotonic() < deadline, "the prediction log did not receive every answered item"
            time.sleep(0.5)
        time.sleep(WINDOW_S + 1)  # the last window has ended and settled

        job_argv = ["--params", str(loop.params)]
        job = run([sys.executable, "-m", "ml.monitoring.job", *job_argv], loop.job_env)
        alert_log = work / "state" / "alerts.jsonl"
        assert alert_log.exists(), (
            f"no alert log:\n{job.stdout}\n{(work / 'state' / 'live.json').read_text()[:3000]}"
        )
        fired = [json.loads(x) for x in alert_log.read_text().splitlines()]
        drift = [e for e in fired if e.get("key") == DRIFT and e.get("event") == "fired"]
        assert drift, f"no drift alert:\n{job.stdout}\n{fired}"
        assert any(DRIFT in json.dumps(m) for m in loop.hook.received), loop.hook.received
        live = json.loads((work / "state" / "live.json").read_text())
        assert live["incident-sla"]["versions"]["1"]["drifted_features"], live["incident-sla"]
        again = in_process(monitoring_job.main, job_argv, loop.job_env, monkeypatch, capsys)
        assert "no new predictions" in again, again  # a second run with no new data

        loop.retrain_reloads_the_service(tickets)
        loop.idle_retrain_does_nothing(monkeypatch, capsys)
    finally:
        loop.close()


@pytest.mark.xdist_group("operations-loop-http")
def test_through_an_mlflow_server_the_service_loads_retrain_promotes_and_the_service_reloads(
    tmp_path, monkeypatch, capsys
):
    """The registry part of the loop over HTTP tracking: v1 registered and served from the tracking server's
    artifacts, v2 registered, promoted and reloaded through it (one service worker: what differs from the
    SQLite case is where the models come from, not how many workers receive the reload)."""
    loop = Loop("mlflow-server", tmp_path, monkeypatch, {settings.ENV_WORKERS: "1"})
    try:
        tickets = shifted(loop.data.incidents.head(40))
        loop.answers(tickets, "1")
        manager = alerts.AlertManager(tmp_path / "state", loop.hook.url)
        assert manager.fire(
            DRIFT, "incident-sla v1: input drift (raised by the test)", {"model": "incident-sla"}
        )
        loop.retrain_reloads_the_service(tickets)
        loop.idle_retrain_does_nothing(monkeypatch, capsys)
    finally:
        loop.close()
