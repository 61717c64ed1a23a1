"""Alerts: conditions from live.json (pure), one alert per condition until it clears, the local log, the webhook."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ml import config
from ml.monitoring import alerts

RULES = config.section("operations")["alerts"]


def events(state) -> list[dict]:
    path = state / alerts.LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def manager(tmp_path):
    return alerts.AlertManager(tmp_path / "state")


# --- one alert per condition ------------------------------------------------------------------------------
def test_one_alert_per_condition_until_it_clears(manager):
    assert manager.fire("drift:incident-sla", "category drifted", {"psi": 0.4}) is True
    assert (
        manager.fire("drift:incident-sla", "category drifted again") is False
    )  # already active: no second alert
    active = manager.active()
    assert list(active) == ["drift:incident-sla"]
    assert active["drift:incident-sla"]["severity"] == "warning" and active["drift:incident-sla"][
        "details"
    ] == {"psi": 0.4}
    assert manager.clear("drift:incident-sla") is True
    assert manager.clear("drift:incident-sla") is False  # nothing to clear
    assert manager.active() == {}
    assert manager.fire("drift:incident-sla", "drifted once more") is True  # cleared, so it may fire again
    log = events(manager.state_dir)
    assert [(e["event"], e["key"]) for e in log] == [
        ("fired", "drift:incident-sla"), ("cleared", "drift:incident-sla"), ("fired", "drift:incident-sla")
    ]  # fmt: skip
    state = json.loads((manager.state_dir / alerts.STATE_FILE).read_text())
    assert list(state["active"]) == ["drift:incident-sla"]


def test_update_fires_new_conditions_once_and_clears_only_those_in_scope(manager):
    manager.fire("quality_gate_failed:incidents", "gate failed", severity="critical")  # another job's alert
    a = alerts.Condition("drift:incident-sla", "warning", "drift")
    b = alerts.Condition("auc_drop:incident-sla", "critical", "auc down")
    fired = manager.update([a, b], scope=set(alerts.MONITORING_KINDS))
    assert sorted(e["key"] for e in fired) == ["auc_drop:incident-sla", "drift:incident-sla"]
    assert manager.update([a, b], scope=set(alerts.MONITORING_KINDS)) == []  # still holding: nothing new
    cleared = manager.update([a], scope=set(alerts.MONITORING_KINDS))
    assert [(e["event"], e["key"]) for e in cleared] == [("cleared", "auc_drop:incident-sla")]
    assert set(manager.active()) == {
        "drift:incident-sla",
        "quality_gate_failed:incidents",
    }  # out of scope: kept
    manager.update([], scope={"drift:incident-sla"})  # a scope may name whole keys too
    assert set(manager.active()) == {"quality_gate_failed:incidents"}
    with pytest.raises(ValueError, match="repeat a key"):
        manager.update([a, a])


def test_a_malformed_state_file_is_refused_naming_it(manager):
    manager.state_dir.mkdir(parents=True)
    (manager.state_dir / alerts.STATE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="alert_state.json"):
        manager.active()


# --- evaluate (pure) --------------------------------------------------------------------------------------
def window(end: str, psi: dict, judged: bool = True, out: dict | None = None) -> dict:
    return {
        "start": "x",
        "end": end,
        "n": 400,
        "judged": judged,
        "input_drift": psi,
        "output_drift": out or {},
    }


def live_of(windows: list[dict], performance: dict | None = None, name: str = "incident-sla") -> dict:
    return {"run_at": "t", "since": "a", "until": "b", "forecast_mape": {},
            name: {"versions": {"3": {"windows": windows, "performance": performance or {}}}}}  # fmt: skip


DRIFTED = {"category": 0.5, "text_chars": 0.3, "priority": 0.01}
CALM = {"category": 0.02, "text_chars": 0.01, "priority": 0.01}


def test_drift_needs_k_consecutive_judged_windows_with_enough_drifted_features():
    k = RULES["psi"]["consecutive"]
    assert k >= 2
    hold = alerts.evaluate(live_of([window(f"2024-03-0{i}", DRIFTED) for i in range(1, k + 1)]), RULES)
    assert [c.key for c in hold] == ["drift:incident-sla"]
    assert hold[0].severity == RULES["severity"]["drift"] and "category 0.50" in hold[0].message
    assert len(hold[0].details["windows"]) == k
    broken = [window("2024-03-01", DRIFTED), window("2024-03-02", CALM), window("2024-03-03", DRIFTED)]
    assert alerts.evaluate(live_of(broken[-k:]), RULES) == []  # the streak is broken
    # an unjudged window (too few records) neither breaks nor makes a streak
    skipped = [
        window("2024-03-01", DRIFTED),
        window("2024-03-02", CALM, judged=False),
        window("2024-03-03", DRIFTED),
    ]
    assert [c.key for c in alerts.evaluate(live_of(skipped), RULES)] == ["drift:incident-sla"]
    one_feature = {"category": 0.5, "text_chars": 0.01}
    assert (
        alerts.evaluate(live_of([window(f"2024-03-0{i}", one_feature) for i in range(1, k + 1)]), RULES) == []
    )


def test_output_drift_and_performance_rules():
    out = {"breach_probability": RULES["output_psi"]["threshold"] + 0.1}
    perf = {"n_labelled": RULES["min_labelled"], "roc_auc": 0.70, "training_roc_auc": 0.80, "auc_drop": 0.10}
    live = live_of([window(f"2024-03-0{i}", CALM, out=out) for i in range(1, 4)], perf)
    assert sorted(c.key for c in alerts.evaluate(live, RULES)) == [
        "auc_drop:incident-sla",
        "output_drift:incident-sla",
    ]
    few = {**perf, "n_labelled": RULES["min_labelled"] - 1}
    assert alerts.evaluate(live_of([], few), RULES) == []  # too few labels to judge
    small_drop = {**perf, "roc_auc": 0.79, "auc_drop": 0.01}
    assert alerts.evaluate(live_of([], small_drop), RULES) == []
    nominal, tol = 0.8, RULES["coverage_tolerance"]
    ttr = {"n_labelled": 500, "coverage": nominal - tol - 0.05, "nominal_coverage": nominal}
    assert [c.key for c in alerts.evaluate(live_of([], ttr, "incident-ttr"), RULES)] == [
        "coverage:incident-ttr"
    ]
    ok = {**ttr, "coverage": nominal - tol / 2}
    assert alerts.evaluate(live_of([], ok, "incident-ttr"), RULES) == []
    mape = {"n_labelled": 500, "mape": 12.0}
    fc = live_of([], mape, "sensor-forecast")
    assert alerts.evaluate(fc, {**RULES, "forecast_mape": None}) == []  # off: reported only
    assert [c.key for c in alerts.evaluate(fc, {**RULES, "forecast_mape": 10})] == [
        "forecast_mape:sensor-forecast"
    ]


def test_only_the_serving_version_is_judged():
    live = live_of([window("2024-03-01", DRIFTED), window("2024-03-02", DRIFTED)])
    live["incident-sla"]["versions"]["4"] = {
        "windows": [window("2024-03-03", CALM), window("2024-03-04", CALM)]
    }
    assert alerts.serving_version(live["incident-sla"]) == "4"
    assert alerts.evaluate(live, RULES) == []  # v3's drift is history once v4 answers


# --- webhook ----------------------------------------------------------------------------------------------
class Receiver(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        Receiver.bodies.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Receiver.bodies = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Receiver.bodies
    server.shutdown()
    server.server_close()


def test_the_webhook_receives_slack_json_for_fired_cleared_and_notified(tmp_path, webhook):
    url, bodies = webhook
    m = alerts.AlertManager(tmp_path / "state", url, webhook_timeout=2)
    m.fire("drift:incident-sla", "incident-sla v3: input drift", {"version": "3"}, severity="critical")
    m.fire("drift:incident-sla", "again")  # active: no second message
    m.clear("drift:incident-sla")
    m.notify("retrain of incident-sla finished: v4 champion", {"model": "incident-sla"}, kind="info")
    assert [ctype for ctype, _ in bodies] == ["application/json"] * 3
    fired, cleared, note = (b for _, b in bodies)
    assert fired["text"] == "[CRITICAL] incident-sla v3: input drift"
    assert fired["attachments"][0]["fields"] == [{"title": "version", "value": "3", "short": True}]
    assert cleared["text"].startswith("[RESOLVED] drift:incident-sla")
    assert note["text"] == "retrain of incident-sla finished: v4 champion"
    assert [e["event"] for e in events(tmp_path / "state")] == ["fired", "cleared", "notified"]


def test_a_dead_webhook_is_logged_and_never_raises(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = alerts.AlertManager(tmp_path / "state", f"http://127.0.0.1:{port}/hook", webhook_timeout=0.5)
    assert m.fire("coverage:incident-ttr", "coverage 0.6") is True
    m.notify("hello")
    log = events(tmp_path / "state")
    assert [e["event"] for e in log] == ["fired", "webhook_failed", "notified", "webhook_failed"]
    assert "webhook failed" in log[1]["message"] and log[1]["key"] == "coverage:incident-ttr"
    assert list(m.active()) == ["coverage:incident-ttr"]  # the alert itself stands


def test_from_env_reads_the_webhook_and_state_folder(tmp_path, monkeypatch, alert_state):
    monkeypatch.setenv(alerts.ENV_WEBHOOK, "http://127.0.0.1:9/x")
    m = alerts.AlertManager.from_env(config.load_params())
    assert m.webhook_url == "http://127.0.0.1:9/x" and m.state_dir == alert_state
    assert m.webhook_timeout == float(RULES["webhook_timeout"])


# --- conditions other jobs raise -----------------------------------------------------------------------------
def test_a_failing_quality_gate_fires_once_and_a_pass_clears_it(alert_state):
    params = config.load_params()
    assert alerts.report_outcome(params, "quality_gate_failed", "incidents", False, "gate FAILED") is True
    assert alerts.report_outcome(params, "quality_gate_failed", "incidents", False, "gate FAILED") is False
    active = alerts.AlertManager(alert_state).active()
    assert active["quality_gate_failed:incidents"]["severity"] == RULES["severity"]["quality_gate_failed"]
    assert alerts.report_outcome(params, "quality_gate_failed", "incidents", True, "gate passed") is True
    assert alerts.AlertManager(alert_state).active() == {}
    off = {"operations": {"alerts": {"quality_gate_failed": False}}}
    assert alerts.report_outcome(off, "quality_gate_failed", "incidents", False, "x") is None


def test_alerting_that_cannot_write_never_raises(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(alerts.ENV_STATE, str(blocker / "state"))
    assert alerts.report_outcome({}, "quality_gate_failed", "sensors", False, "gate FAILED") is None
    assert "alerting failed for quality_gate_failed:sensors" in capsys.readouterr().err
