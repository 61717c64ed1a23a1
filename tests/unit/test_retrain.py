"""Retrain-if-needed (ml/retrain.py, ml/operations/): the policy's decisions and why, the command with its
stages, the audit line, the reload against a real local HTTP server with the admin key, and the rollback.

The registry is a small stand-in (the MLflow registry takes seconds to open), the alerts a recording stand-in
of AlertManager's interface or the real one in a tmp dir; the training command is a `python -c` script that
records its argv.
"""

from __future__ import annotations

import ast
import datetime as dt
import http.server
import json
import sys
import threading

import pandas as pd
import pytest
import yaml

from ml import retrain
from ml.config import ROOT
from ml.monitoring.alerts import AlertManager
from ml.operations import policy as pol
from ml.operations import service

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


class FakeAlerts:
    """AlertManager's interface (ml.monitoring.alerts): active/fire/clear/notify, recorded."""

    def __init__(self, active=None):
        self._active = dict(active or {})
        self.fired, self.cleared, self.notes = [], [], []

    @classmethod
    def from_env(cls, params=None):
        return cls()

    def active(self):
        return dict(self._active)

    def fire(self, key, message, details=None, severity="warning"):
        self.fired.append((key, message, severity))
        self._active[key] = {"message": message}

    def clear(self, key):
        self.cleared.append(key)
        self._active.pop(key, None)

    def notify(self, text, details=None, kind="info"):
        self.notes.append((kind, text, details))


class FakeRegistry:
    """Champion v1 of each model; once `trained` (a file the command writes) exists, `after` applies."""

    def __init__(self, trained, after=None):
        self.trained, self.after, self.rolled = trained, after or {}, []
        self.current = {}

    def state(self, name):
        if self.trained.exists() and name in self.after:
            return self.after[name]
        if name in self.current:
            return self.current[name]
        return {
            "champion": "1",
            "latest": 1,
            "created": NOW - dt.timedelta(days=3),
            "training_to": "2024-10-01 00:00:00",
            "metrics": {"roc_auc": 0.80, "ece": 0.02},
        }

    def version(self, name, version):
        return {
            "version": version,
            "gates": "passed",
            "gate_lines": ["roc_auc=0.83 >= 0.78 passed", "roc_auc=0.83 ok champion 0.8 (tol 0.02)"],
            "metrics": {"roc_auc": 0.83},
        }

    def rollback(self, name):
        self.rolled.append(name)
        self.current[name] = {**self.state(name), "champion": "1"}
        return {"model": name, "champion_before": "2", "champion_now": "1", "model_sha256": "abc"}


def write_params(tmp_path, command=None, **models):
    state, silver = tmp_path / "state", tmp_path / "silver"
    if not (silver / "incidents.parquet").exists():
        silver.mkdir()
        opened = pd.date_range("2024-09-01", periods=300, freq="12h")
        made_sla = pd.array([True] * 250 + [None] * 50, dtype="boolean")
        pd.DataFrame({"opened_at": opened, "made_sla": made_sla, "resolved_at": opened}).to_parquet(
            silver / "incidents.parquet"
        )
    retrain_cfg = {"reload_timeout_seconds": 3, "reload_poll_seconds": 0.05, "min_live_rows": 50}
    if command:
        retrain_cfg["command"] = command
    retrain_cfg["models"] = models
    params = {
        "operations": {"state": str(state), "retrain": retrain_cfg},
        "features": {"silver": str(silver)},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


RECORD_ARGV = (
    'python -c "import json, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(json.dumps(sys.argv[2:]))" '
    "{out} {{stages}}"
)
QUIET = {
    "max_age_days": None,
    "on_drift_alert": False,
    "min_new_labelled_rows": None,
    "performance_drop": None,
}


def sla_policy(**over) -> pol.ModelPolicy:
    base = dict(name="incident-sla", stages=("sla",), max_age_days=30, on_drift_alert=True, on_performance_alert=True,
                min_new_labelled_rows=100, labels={"table": "incidents", "time": "opened_at", "outcome": "made_sla"},
                live_metric="roc_auc", higher_is_better=True, offline_metric="roc_auc", performance_drop=0.05)  # fmt: skip
    return pol.ModelPolicy(**{**base, **over})


# --- decisions (pure) ---------------------------------------------------------------------------------------
def test_each_trigger_gives_its_reason_and_a_quiet_model_says_why_not():
    quiet = pol.Evidence(now=NOW, champion="3", champion_created=NOW - dt.timedelta(days=5), new_rows=10,
                         new_rows_since="2024-10-01", live=0.79, live_rows=500, offline=0.80)  # fmt: skip
    d = pol.decide(sla_policy(), quiet, min_live_rows=100)
    assert not d.needed
    assert any("5.0 days old (max_age_days 30)" in c for c in d.checks)
    assert any("no active drift:incident-sla alert" in c for c in d.checks)
    assert any("10 new labelled rows" in c for c in d.checks)
    assert any("live roc_auc 0.79" in c for c in d.checks)

    old = pol.decide(
        sla_policy(), pol.Evidence(now=NOW, champion="3", champion_created=NOW - dt.timedelta(days=40))
    )
    assert old.needed and "champion v3 is 40.0 days old" in old.reasons[0]

    drift = pol.Evidence(now=NOW, champion="3", drift_alert={"message": "PSI 0.4 on priority"})
    assert pol.decide(sla_policy(), drift).reasons == ["active alert drift:incident-sla: PSI 0.4 on priority"]
    assert not pol.decide(sla_policy(on_drift_alert=False), drift).needed

    labels = pol.Evidence(now=NOW, champion="3", new_rows=150, new_rows_since="2024-10-01 00:00:00")
    assert (
        "150 new labelled rows in silver/incidents after 2024-10-01"
        in pol.decide(sla_policy(), labels).reasons[0]
    )

    drop = pol.Evidence(now=NOW, champion="3", live=0.70, live_rows=500, offline=0.80)
    assert "worse (performance_drop 0.05)" in pol.decide(sla_policy(), drop, min_live_rows=100).reasons[0]
    few = pol.decide(sla_policy(), pol.Evidence(now=NOW, champion="3", live=0.5, live_rows=20, offline=0.8),
                     min_live_rows=100)  # fmt: skip
    assert not few.needed and any("20 labelled rows only" in c for c in few.checks)

    assert pol.decide(sla_policy(), pol.Evidence(now=NOW)).reasons == ["no champion in the registry"]


def test_a_recent_retrain_attempt_restarts_the_age_clock():
    ev = pol.Evidence(now=NOW, champion="3", champion_created=NOW - dt.timedelta(days=90),
                      last_attempt=NOW - dt.timedelta(days=2))  # fmt: skip
    d = pol.decide(sla_policy(), ev)
    assert not d.needed and "the last retrain attempt is 2.0 days old" in d.checks[0]


def test_an_alert_already_firing_at_the_last_attempt_is_not_a_new_reason():
    """The retrain that acted on an alert leaves it firing until the monitoring job clears it on the new
    version: the next run must not retrain again for the same alert, but a later alert is a reason."""
    attempt = NOW - dt.timedelta(hours=3)
    old = {"message": "PSI 0.4", "since": (attempt - dt.timedelta(hours=1)).isoformat()}
    new = {"message": "PSI 0.5", "since": (attempt + dt.timedelta(hours=1)).isoformat()}
    acted = pol.decide(
        sla_policy(), pol.Evidence(now=NOW, champion="4", drift_alert=old, last_attempt=attempt)
    )
    assert not acted.needed and any("already acted on" in c for c in acted.checks)
    fresh = pol.decide(
        sla_policy(), pol.Evidence(now=NOW, champion="4", drift_alert=new, last_attempt=attempt)
    )
    assert fresh.reasons == ["active alert drift:incident-sla: PSI 0.5"]
    perf = pol.Evidence(now=NOW, champion="4", performance_alerts={"auc_drop:incident-sla": old},
                        last_attempt=attempt)  # fmt: skip
    assert not pol.decide(sla_policy(), perf).needed


def test_new_labels_count_from_what_the_champion_could_have_seen():
    st = {"champion": "3", "created": NOW, "training_to": "2024-10-01 00:00:00"}
    day = dt.timedelta(days=1)
    # silver written before v3 was trained: its holdout rows are not new
    since, how = retrain.label_baseline(st, {}, NOW - day, "2024-12-31 00:00:00")
    assert since == "2024-12-31 00:00:00" and "in silver before v3 was trained" in how
    # silver written since: the training end, unless a baseline was recorded for v3 or a retrain attempt saw more
    assert retrain.label_baseline(st, {}, NOW + day, "2025-01-31")[0] == "2024-10-01 00:00:00"
    recorded = {"baselines": {"3": "2024-12-31 00:00:00"}}
    assert retrain.label_baseline(st, recorded, NOW + day, "2025-01-31")[0] == "2024-12-31 00:00:00"
    assert (
        retrain.label_baseline(st, {**recorded, "data_end": "2025-01-15"}, NOW + day, "2025-01-31")[0]
        == "2025-01-15"
    )
    assert (
        retrain.label_baseline({**st, "champion": "4"}, recorded, NOW + day, "2025-01-31")[0]
        == "2024-10-01 00:00:00"
    )


@pytest.mark.parametrize(
    "new,old,higher,roll,says",
    [
        (0.70, 0.80, True, True, "roll back"),
        (0.82, 0.80, True, False, "keep"),
        (12.0, 10.0, False, True, "roll back"),  # lower is better (e.g. an error in hours)
        (0.70, 0.80, True, False, "too few labelled rows"),  # n below min_rows for the new one
        (None, 0.80, True, False, "missing for the new champion"),
    ],
)
def test_rollback_decision(new, old, higher, roll, says):
    n_new = 10 if says == "too few labelled rows" else 300
    entry = {
        "n": 999,
        "performance": {"available": True, "n_labelled": n_new, **({"m": new} if new is not None else {})},
    }
    verdict, why = pol.rollback_decision(entry, {"performance": {"available": True, "n_labelled": 300, "m": old}}, metric="m",
                                         higher_is_better=higher, min_rows=100)  # fmt: skip
    assert verdict is roll and says in why


def test_policy_errors_name_the_file_and_field(tmp_path):
    p = write_params(tmp_path, **{"incident-sla": {"stages": ["no_such_stage"]}})
    with pytest.raises(ValueError, match=r"params.yaml: operations.retrain.models.incident-sla.stages"):
        pol.load_policy(p)
    p = write_params(tmp_path, **{"incident-sla": {"max_age_days": "soon"}})
    with pytest.raises(ValueError, match=r"models.incident-sla.max_age_days: got 'soon'"):
        pol.load_policy(p)
    p = write_params(tmp_path, command="dvc repro")
    with pytest.raises(ValueError, match=r"operations.retrain.command: .* no \{stages\}"):
        pol.load_policy(p)


def test_the_policy_names_every_served_model_with_its_training_stage():
    """params.yaml's stages agree with the service's model table (`make serve` trains from it); the table is
    read from its source, since importing the serving package takes seconds."""
    calls = [
        node
        for node in ast.walk(ast.parse((ROOT / "ml" / "serving" / "table.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ModelSpec"
    ]
    served = {c.args[0].value: next(k.value.value for k in c.keywords if k.arg == "stage") for c in calls}
    assert len(served) >= 8
    policy = pol.load_policy()
    for name, stage in served.items():
        assert name in policy.models and stage in policy.models[name].stages, name


# --- the job ------------------------------------------------------------------------------------------------
def ops_for(tmp_path, registry=None, alerts=None, svc=None):
    registry = registry or FakeRegistry(tmp_path / "argv.json")
    return retrain.Ops(registry=registry, alerts=alerts or FakeAlerts(), service=svc, now=lambda: NOW)


def test_nothing_needed_runs_nothing_and_says_why(tmp_path, capsys):
    out = tmp_path / "argv.json"
    p = write_params(tmp_path, RECORD_ARGV.format(out=out), **{"incident-sla": {**QUIET, "max_age_days": 30}})
    code = retrain.main(["--if-needed", "--params", str(p), "--model", "incident-sla"], ops_for(tmp_path))
    printed = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert "incident-sla: no retrain: champion v1 is 3.0 days old (max_age_days 30)" in printed
    assert "nothing to retrain." in printed
    audit = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["kind"] == "check" and audit[-1]["models"]["incident-sla"]["reasons"] == []


def test_new_labels_trigger_the_command_with_the_stages_and_an_audit_line(tmp_path, capsys):
    out = tmp_path / "argv.json"
    p = write_params(
        tmp_path, RECORD_ARGV.format(out=out),
        **{"incident-sla": {**QUIET, "min_new_labelled_rows": 100},
           "incident-ttr": {**QUIET, "min_new_labelled_rows": 100}},
    )  # fmt: skip
    new = {
        "champion": "2",
        "latest": 2,
        "created": NOW,
        "training_to": "2024-12-01",
        "metrics": {"roc_auc": 0.83},
    }
    registry = FakeRegistry(out, after={"incident-sla": new})
    alerts = FakeAlerts()
    args = ["--if-needed", "--params", str(p), "--model", "incident-sla", "incident-ttr"]
    code = retrain.main(args, ops_for(tmp_path, registry, alerts))
    assert code == 0, capsys.readouterr()
    assert json.loads(out.read_text()) == ["sla", "ttr"]  # one run, the stages in dvc.yaml order
    rec = json.loads((tmp_path / "state" / "audit.jsonl").read_text().splitlines()[-1])
    assert rec["kind"] == "retrain" and rec["exit_code"] == 0 and rec["stages"] == ["sla", "ttr"]
    assert rec["command"][0] == sys.executable and rec["command"][-2:] == ["sla", "ttr"]
    sla = rec["models"]["incident-sla"]
    # rows opened after training.to (2024-10-01) with a known outcome: 300 rows every 12 h from 2024-09-01, last 50 open
    assert "189 new labelled rows in silver/incidents after 2024-10-01 00:00:00" in sla["reasons"][0]
    assert (sla["before"], sla["after"], sla["status"], sla["gates"]) == ("1", "2", "promoted", "passed")
    assert sla["comparison"] == {"roc_auc": {"old": 0.80, "new": 0.83}}
    assert sla["data_end"] == "2025-01-03 12:00:00"
    assert (
        rec["models"]["incident-ttr"]["status"] == "unchanged"
    )  # exit 0, nothing registered: dvc skipped it
    assert rec["reload"]["status"] == "skipped" and "OPSLAB_SERVICE_URL" in rec["reload"]["detail"]
    assert set(alerts.cleared) == {"training_failed:incident-sla", "training_failed:incident-ttr"}
    kind, text, _ = alerts.notes[-1]
    assert kind == "info" and "incident-sla: promoted: v1 -> v2" in text and "roc_auc: 0.8 -> 0.83" in text

    # the next run counts only rows after the newest labelled row that attempt saw: none
    out.unlink()
    registry.after = {}
    assert retrain.main(args, ops_for(tmp_path, registry, alerts)) == 0
    assert not out.exists()
    assert "0 new labelled rows" in capsys.readouterr().out


def test_a_failed_run_fires_training_failed_and_a_good_one_clears_it(tmp_path, capsys):
    """With the real AlertManager (ml.monitoring.alerts) in a tmp dir: the alert, its severity from params,
    the failure notification, then the clear once a run registers a version."""
    out = tmp_path / "argv.json"
    p = write_params(tmp_path, 'python -c "raise SystemExit(3)" {stages}', **{"incident-sla": QUIET})
    alerts = AlertManager(tmp_path / "alerts")
    args = ["--if-needed", "--force", "--params", str(p), "--model", "incident-sla"]
    assert retrain.main(args, ops_for(tmp_path, alerts=alerts)) == 1
    active = alerts.active()["training_failed:incident-sla"]
    assert active["severity"] == "critical" and "registered no version (command exit 3)" in active["message"]
    log = [json.loads(line) for line in (tmp_path / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert (
        log[-1]["event"] == "notified"
        and log[-1]["kind"] == "failure"
        and "retrain FAILED" in log[-1]["message"]
    )
    rec = json.loads((tmp_path / "state" / "audit.jsonl").read_text().splitlines()[-1])
    assert rec["exit_code"] == 3 and rec["models"]["incident-sla"]["reasons"] == ["forced (--force)"]
    assert rec["models"]["incident-sla"]["status"] == "failed"

    p = write_params(tmp_path, RECORD_ARGV.format(out=out), **{"incident-sla": QUIET})
    new = {
        "champion": "1",
        "latest": 2,
        "created": NOW,
        "training_to": "2024-12-01",
        "metrics": {"roc_auc": 0.7},
    }
    registry = FakeRegistry(out, after={"incident-sla": new})  # v2 registered, gates kept v1
    assert retrain.main(args, ops_for(tmp_path, registry, alerts)) == 0
    assert alerts.active() == {}
    rec = json.loads((tmp_path / "state" / "audit.jsonl").read_text().splitlines()[-1])
    assert rec["models"]["incident-sla"]["status"] == "challenger" and rec["reload"] == {
        "status": "not needed"
    }


def test_monitoring_alerts_are_reasons(tmp_path, capsys):
    p = write_params(
        tmp_path, **{"incident-sla": {**QUIET, "on_performance_alert": True, "on_drift_alert": True}}
    )
    alerts = FakeAlerts({"auc_drop:incident-sla": {"message": "live ROC AUC 0.70"}, "drift:incident-ttr": {}})
    args = ["--if-needed", "--dry-run", "--params", str(p), "--model", "incident-sla"]
    assert retrain.main(args, ops_for(tmp_path, alerts=alerts)) == 0
    printed = capsys.readouterr().out
    assert "incident-sla: RETRAIN: active alert auc_drop:incident-sla: live ROC AUC 0.70" in printed


def test_drift_alert_and_dry_run_change_nothing(tmp_path, capsys):
    out = tmp_path / "argv.json"
    p = write_params(
        tmp_path, RECORD_ARGV.format(out=out), **{"incident-sla": {**QUIET, "on_drift_alert": True}}
    )
    alerts = FakeAlerts({"drift:incident-sla": {"message": "3 features drifted"}})
    code = retrain.main(["--if-needed", "--dry-run", "--params", str(p), "--model", "incident-sla"],
                        ops_for(tmp_path, alerts=alerts))  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "RETRAIN: active alert drift:incident-sla: 3 features drifted" in printed
    assert "command:" in printed and "dry run" in printed
    assert not out.exists() and not (tmp_path / "state" / "audit.jsonl").exists() and not alerts.notes


def test_unknown_model_is_refused_naming_the_field(tmp_path, capsys):
    p = write_params(tmp_path)
    assert retrain.main(["--if-needed", "--params", str(p), "--model", "nope"]) == 2
    assert "operations.retrain.models has no ['nope']" in capsys.readouterr().err


# --- the service --------------------------------------------------------------------------------------------
@pytest.fixture
def fake_service():
    """A real HTTP server on 127.0.0.1: /models answers the served version, /models/reload moves it to `next`."""
    seen = {"requests": [], "version": "1", "next": "2"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            seen["requests"].append((self.path, self.headers.get("X-API-Key"), body))
            if self.headers.get("X-API-Key") != "admin-key":
                return self._reply(401, {"error": "missing API key"})
            if self.path == "/models/reload":
                seen["version"] = seen["next"]
                return self._reply(
                    200, {"results": [{"name": "incident-sla", "status": "swapped"}], "models": []}
                )
            models = [{"name": "incident-sla", "version": seen["version"], "loaded": True, "state": "loaded"}]
            return self._reply(200, {"ready": True, "models": models})

        def _reply(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_reload_posts_with_the_admin_key_and_waits_for_the_new_version(fake_service):
    url, seen = fake_service
    client = service.ServiceClient.from_env(
        timeout=3, env={"OPSLAB_SERVICE_URL": url, "OPSLAB_ADMIN_KEY": "admin-key"}
    )
    result = service.reload_and_wait(
        client, {"incident-sla": "2", "archive-forecast": "4"}, timeout_s=3, poll_s=0.01
    )
    assert result["status"] == "ok" and "incident-sla v2" in result["detail"]
    reload = [r for r in seen["requests"] if r[0] == "/models/reload"]
    assert reload == [("/models/reload", "admin-key", {"models": ["incident-sla"]})]  # only what it serves

    wrong = service.ServiceClient(url, "not-the-key", timeout=3)
    failed = service.reload_and_wait(wrong, {"incident-sla": "2"}, timeout_s=1, poll_s=0.01)
    assert failed["status"] == "failed" and "HTTP 401" in failed["detail"]
    keyless = service.reload_and_wait(
        service.ServiceClient(url, None, timeout=3), {"incident-sla": "2"}, timeout_s=1, poll_s=0.01
    )
    assert keyless["status"] == "failed" and "OPSLAB_ADMIN_KEY is not set" in keyless["detail"]
    assert service.ServiceClient.from_env(timeout=3, env={}) is None
    assert (
        service.reload_and_wait(None, {"incident-sla": "2"}, timeout_s=1, poll_s=0.01)["status"] == "skipped"
    )


def test_the_admin_header_is_the_guards():
    from ml.serving import guard

    assert service.ServiceClient.HEADER.lower().encode() == guard.HEADER


def test_a_promotion_is_reloaded_then_rolled_back_when_worse_live(tmp_path, fake_service, capsys):
    url, seen = fake_service
    client = service.ServiceClient(url, "admin-key", timeout=3)
    out = tmp_path / "argv.json"
    p = write_params(tmp_path, RECORD_ARGV.format(out=out),
                     **{"incident-sla": {**QUIET, "live_metric": "roc_auc", "higher_is_better": True}})  # fmt: skip
    new = {
        "champion": "2",
        "latest": 2,
        "created": NOW,
        "training_to": "2024-12-01",
        "metrics": {"roc_auc": 0.83},
    }
    registry = FakeRegistry(out, after={"incident-sla": new})
    alerts = FakeAlerts()
    args = ["--if-needed", "--force", "--params", str(p), "--model", "incident-sla"]
    assert retrain.main(args, ops_for(tmp_path, registry, alerts, client)) == 0
    audit_file = tmp_path / "state" / "audit.jsonl"
    assert json.loads(audit_file.read_text().splitlines()[-1])["reload"]["status"] == "ok"

    # live.json (the monitoring job): on the same labelled rows v2 does worse than v1 -> roll back
    perf = {"available": True, "labels": "data/silver/incidents.parquet", "n": 400, "n_labelled": 400}
    live = {"schema": 1, "run_at": "2026-03-01T00:10:00Z", "incident-sla": {"n": 1600, "versions": {
        "1": {"n": 900, "input_drift": {}, "drifted_features": [], "performance": {**perf, "roc_auc": 0.81}},
        "2": {"n": 700, "input_drift": {}, "drifted_features": [], "performance": {**perf, "roc_auc": 0.74}}}}}  # fmt: skip
    (tmp_path / "state" / "live.json").write_text(json.dumps(live))
    seen["next"] = "1"
    registry.trained = (
        tmp_path / "gone"
    )  # the registry now says what rollback() leaves (FakeRegistry.current)
    registry.current["incident-sla"] = new
    code = retrain.main(["--check-rollback", "--params", str(p), "--model", "incident-sla"],
                        ops_for(tmp_path, registry, alerts, client))  # fmt: skip
    assert code == 0 and registry.rolled == ["incident-sla"]
    rec = json.loads(audit_file.read_text().splitlines()[-1])
    assert rec["kind"] == "rollback" and rec["models"]["incident-sla"] == {
        "before": "2",
        "expected": "1",
        "after": "1",
    }
    assert "new 0.74 (400 rows) vs previous 0.81 (400 rows)" in rec["reason"]
    assert rec["reload"]["status"] == "ok" and seen["requests"][-1][2] == {} and seen["version"] == "1"
    assert "rollback incident-sla: v2 -> v1" in alerts.notes[-1][1]

    # rolled back once: the next check leaves it alone
    assert retrain.main(["--check-rollback", "--params", str(p), "--model", "incident-sla"],
                        ops_for(tmp_path, registry, alerts, client)) == 0  # fmt: skip
    assert registry.rolled == ["incident-sla"]
    assert "no rollback check" in capsys.readouterr().out
