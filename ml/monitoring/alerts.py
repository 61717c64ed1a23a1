"""Alerts: which conditions hold now (`evaluate`, pure), and one alert per condition until it clears (`AlertManager`).

A condition has a stable `key`, `<kind>:<subject>`: `drift:<model>`, `output_drift:<model>`, `auc_drop:<model>`,
`coverage:<model>`, `forecast_mape:<model>` (from the monitoring job's live.json, `evaluate`), and
`quality_gate_failed:<domain>` (python -m ml.monitoring.quality), `training_failed:<model>` (the retrain job),
raised by those jobs with `fire` / `clear`. Rules and severities: params.yaml `operations.alerts`.

`AlertManager(state_dir)` keeps the active set in `<state_dir>/alert_state.json` (atomic writes under a file
lock) and appends every event — fired, cleared, notified, a webhook that failed — to `<state_dir>/alerts.jsonl`,
webhook or not. With a webhook URL (env `OPSLAB_ALERT_WEBHOOK`) each event is also POSTed as Slack-compatible
JSON (`text` + `attachments`); a failing webhook is logged there and never raises.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock

from ml import config

ENV_WEBHOOK = "OPSLAB_ALERT_WEBHOOK"  # the Slack-compatible incoming-webhook URL
ENV_STATE = "OPSLAB_ALERT_STATE"  # overrides operations.state for `from_env` (tests point it at a tmp dir)
STATE_FILE, LOG_FILE, LOCK_FILE = "alert_state.json", "alerts.jsonl", ".alerts.lock"
# the kinds `evaluate` decides: the monitoring job clears only these (`update(..., scope=MONITORING_KINDS)`)
MONITORING_KINDS = frozenset({"drift", "output_drift", "auc_drop", "coverage", "forecast_mape"})
COLOURS = {
    "critical": "#d00000",
    "failure": "#d00000",
    "warning": "#e8a317",
    "info": "#439fe0",
    "cleared": "#2eb886",
}


@dataclass(frozen=True)
class Condition:
    """Something that holds now and deserves one alert: `key` is stable across runs (`<kind>:<subject>`)."""

    key: str
    severity: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return kind_of(self.key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kind_of(key: str) -> str:
    """`drift:incident-sla` -> `drift`."""
    return key.split(":", 1)[0]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- evaluate (pure) ------------------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _model_entries(live: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """live.json's model entries: the top-level values that hold `versions`."""
    return {
        k: v for k, v in live.items() if isinstance(v, Mapping) and isinstance(v.get("versions"), Mapping)
    }


def serving_version(entry: Mapping[str, Any]) -> str | None:
    """The version that answered most recently: the one whose last window ends latest (ties: higher number)."""

    def last_end(item: tuple[str, Mapping]) -> tuple[str, float]:
        windows = item[1].get("windows") or []
        end = max((str(w.get("end", "")) for w in windows), default="")
        return end, float(item[0]) if item[0].isdigit() else -1.0

    versions = entry.get("versions") or {}
    return max(versions.items(), key=last_end)[0] if versions else None


def _streak(
    windows: list[Mapping], field_name: str, threshold: float, min_count: int, k: int
) -> list[dict] | None:
    """The last `k` judged windows when each has >= `min_count` values of `field_name` above `threshold`."""
    judged = [w for w in windows if w.get("judged")]
    if k < 1 or len(judged) < k:
        return None
    tail = []
    for w in judged[-k:]:
        over = {f: v for f, v in (w.get(field_name) or {}).items() if (_num(v) or 0.0) > threshold}
        if len(over) < min_count:
            return None
        tail.append({"start": w.get("start"), "end": w.get("end"), "n": w.get("n"), "over": over})
    return tail


def _top(over: Mapping[str, float], n: int = 3) -> str:
    return ", ".join(f"{f} {v:.2f}" for f, v in sorted(over.items(), key=lambda kv: -kv[1])[:n])


def evaluate(live: Mapping[str, Any], rules: Mapping[str, Any]) -> list[Condition]:
    """The conditions that hold in the monitoring job's live.json under `rules` (params.yaml
    `operations.alerts`), judged on each model's serving version (see `serving_version`)."""
    severity = rules.get("severity") or {}
    sev = lambda kind: str(severity.get(kind, "warning"))  # noqa: E731
    out: list[Condition] = []
    for name, entry in sorted(_model_entries(live).items()):
        version = serving_version(entry)
        if version is None:
            continue
        v = entry["versions"][version]
        windows = list(v.get("windows") or [])
        for kind, field_name, rule, count_key, what in (
            ("drift", "input_drift", rules.get("psi"), "min_features", "input drift"),
            ("output_drift", "output_drift", rules.get("output_psi"), "min_fields", "output drift"),
        ):
            if not rule:
                continue
            k, threshold, n_min = int(rule["consecutive"]), float(rule["threshold"]), int(rule[count_key])
            tail = _streak(windows, field_name, threshold, n_min, k)
            if tail:
                out.append(Condition(
                    f"{kind}:{name}", sev(kind),
                    f"{name} v{version}: {what} in {k} consecutive window(s) up to {tail[-1]['end']}: "
                    f"PSI > {threshold:g} for {_top(tail[-1]['over'])}",
                    {"model": name, "version": version, "threshold": threshold, count_key: n_min,
                     "consecutive": k, "windows": tail},
                ))  # fmt: skip
        perf = v.get("performance") or {}
        n = int(perf.get("n_labelled") or 0)
        enough = n >= int(rules.get("min_labelled") or 0)
        base = {"model": name, "version": version, "n_labelled": n}
        live_auc, train_auc, drop = (_num(perf.get(k)) for k in ("roc_auc", "training_roc_auc", "auc_drop"))
        if (
            enough
            and rules.get("auc_drop") is not None
            and drop is not None
            and drop > float(rules["auc_drop"])
        ):
            out.append(Condition(
                f"auc_drop:{name}", sev("auc_drop"),
                f"{name} v{version}: live ROC AUC {live_auc:.3f} is {drop:.3f} below its training "
                f"{train_auc:.3f} (limit {float(rules['auc_drop']):g}, {n} labelled)",
                {**base, "roc_auc": live_auc, "training_roc_auc": train_auc, "limit": float(rules["auc_drop"])},
            ))  # fmt: skip
        cov, nominal = _num(perf.get("coverage")), _num(perf.get("nominal_coverage"))
        tol = rules.get("coverage_tolerance")
        if (
            enough
            and tol is not None
            and cov is not None
            and nominal is not None
            and abs(cov - nominal) > tol
        ):
            out.append(Condition(
                f"coverage:{name}", sev("coverage"),
                f"{name} v{version}: live interval coverage {cov:.3f}, nominal {nominal:.2f} +- {float(tol):g} "
                f"({n} labelled)",
                {**base, "coverage": cov, "nominal_coverage": nominal, "tolerance": float(tol)},
            ))  # fmt: skip
        mape, limit = _num(perf.get("mape")), rules.get("forecast_mape")
        if enough and limit is not None and mape is not None and mape > float(limit):
            out.append(Condition(
                f"forecast_mape:{name}", sev("forecast_mape"),
                f"{name} v{version}: live MAPE {mape:.2f}% of served forecasts is above {float(limit):g}% "
                f"({n} labelled points)",
                {**base, "mape": mape, "limit": float(limit)},
            ))  # fmt: skip
    return out


# --- the alert manager ------------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def slack_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    """An event as a Slack-compatible message: `text` (what phones show) + one attachment with the details."""
    what = event["event"]
    if what == "fired":
        text = f"[{str(event.get('severity', 'warning')).upper()}] {event['message']}"
    elif what == "cleared":
        text = f"[RESOLVED] {event['key']}: {event['message']}"
    else:
        text = str(event["message"])
    details = event.get("details") or {}
    fields = [
        {
            "title": str(k),
            "value": v if isinstance(v, str) else json.dumps(v, default=str)[:500],
            "short": True,
        }
        for k, v in details.items()
    ]
    colour = (
        COLOURS["cleared"] if what == "cleared" else COLOURS.get(str(event.get("severity")), COLOURS["info"])
    )
    attachment = {"color": colour, "fields": fields, "footer": f"opslab {what} {event.get('key') or ''}".strip(),
                  "ts": int(datetime.now(UTC).timestamp())}  # fmt: skip
    return {"text": text, "attachments": [attachment]}


class AlertManager:
    """One alert per condition until it clears; every event in `<state_dir>/alerts.jsonl`; optional webhook."""

    def __init__(
        self,
        state_dir: Path,
        webhook_url: str | None = None,
        *,
        webhook_timeout: float | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        defaults = config.section("operations")["alerts"]  # params.yaml is where the defaults are declared
        self.state_dir = Path(state_dir)
        self.webhook_url = webhook_url or None
        self.webhook_timeout = float(
            defaults["webhook_timeout"] if webhook_timeout is None else webhook_timeout
        )
        self.lock_timeout = float(defaults["lock_timeout"] if lock_timeout is None else lock_timeout)
        self.state_path = self.state_dir / STATE_FILE
        self.log_path = self.state_dir / LOG_FILE

    @classmethod
    def from_env(cls, params: Mapping[str, Any] | None = None) -> AlertManager:
        """The manager of `operations.state` (env OPSLAB_ALERT_STATE overrides it), webhook from OPSLAB_ALERT_WEBHOOK."""
        given = (params or {}).get("operations") or {}
        ops = config.section("operations", {k: given[k] for k in ("state", "alerts") if k in given})
        state = os.environ.get(ENV_STATE) or ops["state"]
        alerts = ops["alerts"]
        return cls(
            config.resolve(state),
            os.environ.get(ENV_WEBHOOK) or None,
            webhook_timeout=alerts["webhook_timeout"],
            lock_timeout=alerts["lock_timeout"],
        )

    # -- state -------------------------------------------------------------------------------------------
    def _lock(self) -> FileLock:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.state_dir / LOCK_FILE), timeout=self.lock_timeout)

    def _read(self) -> dict[str, dict]:
        if not self.state_path.exists():
            return {}
        try:
            data = json.loads(self.state_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{self.state_path}: not valid JSON ({exc}); fix or remove it") from exc
        active = data.get("active") if isinstance(data, dict) else None
        if not isinstance(active, dict):
            raise ValueError(f"{self.state_path}: field 'active' must be an object of alerts by key")
        return active

    def _write(self, active: Mapping[str, dict]) -> None:
        body = {"updated_at": now_iso(), "active": dict(sorted(active.items()))}
        _atomic_write(self.state_path, json.dumps(body, indent=2, default=str) + "\n")

    def _append(self, events: Iterable[Mapping[str, Any]]) -> None:
        lines = "".join(json.dumps(dict(e), default=str) + "\n" for e in events)
        if lines:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as fh:
                fh.write(lines)

    def active(self) -> dict[str, dict]:
        """The alerts that are firing now, by key (each: severity, message, details, since, last_seen)."""
        with self._lock():
            return self._read()

    # -- events ------------------------------------------------------------------------------------------
    @staticmethod
    def _event(what: str, key: str | None, message: str, details, severity: str) -> dict[str, Any]:
        return {"time": now_iso(), "event": what, "key": key, "severity": severity, "message": message,
                "details": dict(details or {})}  # fmt: skip

    def _apply(
        self, fires: list[Condition], clears: Iterable[str] | None, scope: set[str] | None
    ) -> list[dict]:
        """Fire `fires` not yet active and clear `clears` (or, with `scope`, every in-scope key not in
        `fires`), under the lock; the events, already in the log; then the webhook."""
        events = []
        with self._lock():
            active = self._read()
            for c in fires:
                if c.key in active:
                    active[c.key]["last_seen"] = now_iso()
                    continue
                ev = self._event("fired", c.key, c.message, c.details, c.severity)
                active[c.key] = {k: ev[k] for k in ("severity", "message", "details")}
                active[c.key].update(since=ev["time"], last_seen=ev["time"])
                events.append(ev)
            if clears is None:
                holding = {c.key for c in fires}
                clears = [k for k in active if k not in holding and (scope is None or _in_scope(k, scope))]
            for key in clears:
                if key in active:
                    was = active.pop(key)
                    ev = self._event(
                        "cleared", key, was.get("message", ""), was.get("details"), was.get("severity")
                    )
                    events.append({**ev, "since": was.get("since")})
            if events or fires:
                self._write(active)
            self._append(events)
        for ev in events:
            self._post(ev)
        return events

    def update(self, conditions: Iterable[Condition], scope: set[str] | None = None) -> list[dict]:
        """Fire each condition that is not active yet (once), clear each active alert in `scope` that is not
        among `conditions`; the events. `scope`: keys or kinds (`drift`) this caller decides; None: all."""
        conditions = list(conditions)
        keys = [c.key for c in conditions]
        if len(set(keys)) != len(keys):
            raise ValueError(f"conditions repeat a key: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
        return self._apply(conditions, None, set(scope) if scope is not None else None)

    def fire(self, key: str, message: str, details: Mapping | None = None, severity: str = "warning") -> bool:
        """Fire `key` unless it is already active (then False: one alert per condition until it clears)."""
        return bool(self._apply([Condition(key, severity, message, dict(details or {}))], [], None))

    def clear(self, key: str) -> bool:
        """Clear `key`; False when it was not active."""
        return bool(self._apply([], [key], None))

    def notify(self, text: str, details: Mapping | None = None, kind: str = "info") -> dict[str, Any]:
        """A notification that is not an alert (e.g. a retrain succeeded or failed): logged and sent once."""
        ev = self._event("notified", None, text, details, kind)
        ev["kind"] = kind
        self._append([ev])
        self._post(ev)
        return ev

    def _post(self, event: Mapping[str, Any]) -> None:
        """POST the event to the webhook (if any); a failure is logged in alerts.jsonl, never raised."""
        if not self.webhook_url:
            return
        try:
            resp = httpx.post(self.webhook_url, json=slack_payload(event), timeout=self.webhook_timeout)
            resp.raise_for_status()
        except Exception as exc:  # noqa: BLE001 - alerting must never take the caller down
            failed = self._event("webhook_failed", event.get("key"), f"webhook failed: {type(exc).__name__}: {exc}"[:500],
                                 {"for_event": event.get("event")}, "warning")  # fmt: skip
            try:
                self._append([failed])
            except OSError:
                pass


def _in_scope(key: str, scope: set[str]) -> bool:
    return key in scope or kind_of(key) in scope


def report_outcome(
    params: Mapping[str, Any] | None,
    kind: str,
    subject: str,
    ok: bool,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> bool | None:
    """For jobs that raise their own condition (`quality_gate_failed`, `training_failed`): fire `<kind>:<subject>`
    when not `ok`, clear it when `ok`, if `operations.alerts.<kind>` is on. Never raises (alerting must not
    change the caller's verdict or exit code): whether an alert fired / cleared, None when off or it failed."""
    try:
        given = ((params or {}).get("operations") or {}).get("alerts") or {}
        rules = config.section("operations", {"alerts": given})["alerts"]
        if not rules.get(kind):
            return None
        manager = AlertManager.from_env(params)
        key = f"{kind}:{subject}"
        if ok:
            return manager.clear(key)
        return manager.fire(
            key, message, details, severity=str((rules.get("severity") or {}).get(kind, "warning"))
        )
    except Exception as exc:  # noqa: BLE001 - e.g. an unwritable state dir: say so, keep the caller's verdict
        print(f"alerting failed for {kind}:{subject}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
