"""Retrain only with a reason (issue #17): per model, decide from params.yaml `operations.retrain` whether the
champion is too old, drifted, has enough new labels or does worse live; run its DVC stages; let the gates
decide `champion`; ask the service to reload; roll back a new champion that does worse live; audit each step.

    python -m ml.retrain --if-needed [--params params.yaml] [--dry-run] [--model NAME ...] [--force]
    python -m ml.retrain --check-rollback [--dry-run]

Inputs: the registry (champion, its run tag `training.to`, versions), silver (new labelled rows),
`<operations.state>/live.json` (the monitoring job: live metrics per version) and the active alerts
(`ml.monitoring.alerts`). Output: the command's run, alerts (`training_failed:<model>`), notifications and
one line per run in `<operations.state>/audit.jsonl`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ml import config
from ml.monitoring.alerts import AlertManager
from ml.operations import process
from ml.operations.policy import (
    DRIFT_ALERT,
    PERFORMANCE_ALERTS,
    Evidence,
    Policy,
    decide,
    live_entry,
    live_value,
    load_policy,
    rollback_decision,
    stage_order,
)
from ml.operations.service import ServiceClient, reload_and_wait

FAILED_ALERT = "training_failed:{}"
AUDIT_FILE, LIVE_FILE, LOCK_FILE = "audit.jsonl", "live.json", "retrain.lock"


# --- evidence -----------------------------------------------------------------------------------------------
def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_live(state: Path) -> dict:
    """`live.json` of the monitoring job ({} when it has not run yet, or cannot be read: said on stderr)."""
    f = Path(state) / LIVE_FILE
    try:
        return json.loads(f.read_text()) if f.is_file() else {}
    except (OSError, ValueError) as exc:
        print(f"retrain: {f} unreadable ({exc}); live performance is not judged this run", file=sys.stderr)
        return {}


def read_audit(state: Path) -> list[dict]:
    """The audit's records, oldest first (a line cut short by a crash is skipped)."""
    f = Path(state) / AUDIT_FILE
    records = []
    for line in f.read_text().splitlines() if f.is_file() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def append_audit(state: Path, record: Mapping) -> None:
    """One JSON line per run: when, why, versions before/after, gates, command + exit code, reload."""
    Path(state).mkdir(parents=True, exist_ok=True)
    with open(Path(state) / AUDIT_FILE, "a") as fh:
        fh.write(json.dumps(record, default=str, sort_keys=True) + "\n")


def last_attempts(audit: Iterable[Mapping]) -> dict[str, dict]:
    """Per model, from the audit: the newest retrain attempt (`when`, `data_end`: the newest labelled row it
    saw) and the label baseline recorded for each champion version (`baselines`: version -> time)."""
    out: dict[str, dict] = {}
    for rec in audit:
        if rec.get("dry_run") or rec.get("kind") not in ("retrain", "check"):
            continue
        for name, m in (rec.get("models") or {}).items():
            seen = out.setdefault(name, {"baselines": {}})
            if m.get("since") and m.get("before"):
                seen["baselines"].setdefault(str(m["before"]), m["since"])
            if rec["kind"] == "retrain" and m.get("status"):
                seen.update(when=rec["when"], data_end=m.get("data_end"))
    return out


def label_baseline(state: Mapping, seen: Mapping, silver_written: dt.datetime | None, silver_end: str | None):
    """After which time a labelled row counts as new for the champion: the latest of its run's `training.to`,
    the newest labelled row at the last retrain attempt, the baseline first recorded for this champion, and
    (when silver was last written before the champion was trained) the newest labelled row in silver.
    -> (time, what it is)."""
    version, created = state.get("champion"), state.get("created")
    candidates = [(state.get("training_to"), "its training end (run tag training.to)"),
                  (seen.get("data_end"), "the newest labelled row at the last retrain attempt"),
                  ((seen.get("baselines") or {}).get(str(version)), f"the baseline first recorded for v{version}")]  # fmt: skip
    if silver_written and created and silver_end and silver_written <= created:
        candidates.append((silver_end, f"the newest labelled row, in silver before v{version} was trained"))
    known = [(t, how) for t, how in candidates if t]
    return max(known, key=lambda c: _ts(c[0])) if known else (None, "no baseline: every labelled row counts")


class Silver:
    """Reads the few columns of a silver table the label counts need, once per table and columns."""

    def __init__(self, root: Path):
        self.root, self._cache = Path(root), {}

    def labelled(self, labels: Mapping[str, str]):
        # imported on use: pandas is only needed when a model counts new labels
        import pandas as pd

        key = (labels["table"], labels["time"], labels["outcome"])
        if key not in self._cache:
            f = self.root / f"{labels['table']}.parquet"
            if not f.is_file():
                raise FileNotFoundError(f"{f}: silver table not found (operations.retrain labels.table)")
            frame = pd.read_parquet(f, columns=[labels["time"], labels["outcome"]])
            t = pd.to_datetime(frame[labels["time"]], utc=True).dt.tz_localize(None)
            self._cache[key] = t[frame[labels["outcome"]].notna().to_numpy()]
        return self._cache[key]

    def written(self, labels: Mapping[str, str]) -> dt.datetime | None:
        """When the table was last written (its file's mtime), None when it is not there."""
        f = self.root / f"{labels['table']}.parquet"
        return dt.datetime.fromtimestamp(f.stat().st_mtime, dt.UTC) if f.is_file() else None

    def count_after(self, labels: Mapping[str, str], after: str | None) -> tuple[int, str | None]:
        """(rows with an outcome whose time is after `after`, the newest such time)."""
        t = self.labelled(labels)
        end = str(t.max()) if len(t) else None
        if after is None:
            return int(len(t)), end
        return int((t > _ts(after)).sum()), end


# --- the registry (read through one small object, so tests can stand in for it) ----------------------------
class RegistryView:
    """Champion, versions and gate verdicts from the MLflow registry; rollback through ml.registry."""

    def __init__(self):
        # imported on use: mlflow takes seconds to import; --help and --list need none of it
        from ml import registry

        self.registry = registry

    def state(self, name: str) -> dict:
        """{champion, created, training_to, metrics, latest: the newest version number} (champion None: none)."""
        c = self.registry.client()
        versions = c.search_model_versions(f"name='{name}'")  # [] for a name never registered
        out = {"champion": None, "latest": max((int(v.version) for v in versions), default=0)}
        info = self.registry.champion_info(name)
        if info is not None:
            mv = c.get_model_version(name, info["version"])
            tags = c.get_run(info["run_id"]).data.tags
            created = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC)
            out.update(champion=info["version"], created=created, metrics=info["metrics"],
                       training_to=tags.get("training.to"))  # fmt: skip
        return out

    def version(self, name: str, version: str) -> dict:
        """One version's gate verdict (tag and gates.txt lines) and run metrics."""
        c = self.registry.client()
        mv = c.get_model_version(name, str(version))
        try:
            import mlflow.artifacts  # imported on use: loaded by ml.registry already (see __init__)

            lines = mlflow.artifacts.load_text(f"runs:/{mv.run_id}/gates.txt").splitlines()
        except Exception:  # noqa: BLE001 - an old run without gates.txt
            lines = []
        metrics = dict(c.get_run(mv.run_id).data.metrics)
        return {
            "version": str(version),
            "gates": mv.tags.get("gates"),
            "gate_lines": lines,
            "metrics": metrics,
        }

    def rollback(self, name: str) -> dict:
        return self.registry.rollback(name)


# --- running ------------------------------------------------------------------------------------------------
def build_command(template: str, stages: Iterable[str]) -> list[str]:
    """The training command's argv: `{stages}` filled in (see ml.operations.process.argv_for)."""
    return process.argv_for(template, {"stages": " ".join(shlex.quote(s) for s in stages)})


def comparison(old: Mapping | None, new: Mapping) -> dict:
    """Old vs new metrics for the gated metrics (the names in the new version's gate lines)."""
    names = sorted({m.group(1) for line in new.get("gate_lines", []) if (m := re.match(r"(\w+)=", line))})
    old_m = (old or {}).get("metrics") or {}
    return {k: {"old": old_m.get(k), "new": new["metrics"].get(k)} for k in names}


# --- the two jobs -------------------------------------------------------------------------------------------
@dataclass
class Ops:
    """What a run talks to: the registry, the alerts, the service and the clock (tests pass stand-ins)."""

    registry: Any
    alerts: Any
    service: ServiceClient | None
    now: Any = utcnow


def gather(policy: Policy, names: list[str], ops: Ops, live: Mapping, active: Mapping) -> tuple[dict, dict]:
    """Per model: (the registry state, the evidence for decide())."""
    silver, attempts = Silver(policy.silver), last_attempts(read_audit(policy.state))
    states, evidence = {}, {}
    for name in names:
        p, st = policy.models[name], ops.registry.state(name)
        att = attempts.get(name) or {}
        perf_alerts = {
            f"{k}:{name}": active[f"{k}:{name}"] for k in PERFORMANCE_ALERTS if f"{k}:{name}" in active
        }
        ev = Evidence(now=ops.now(), champion=st.get("champion"), champion_created=st.get("created"),
                      drift_alert=active.get(DRIFT_ALERT.format(name)), performance_alerts=perf_alerts)  # fmt: skip
        if att.get("when"):
            ev.last_attempt = dt.datetime.fromisoformat(att["when"])
        if p.labels and p.min_new_labelled_rows is not None and st.get("champion"):
            try:
                _, end = silver.count_after(p.labels, None)
                since, how = label_baseline(st, att, silver.written(p.labels), end)
                ev.new_rows, st["data_end"] = silver.count_after(p.labels, since)
                ev.new_rows_since, st["since"] = f"{since} ({how})", since
            except (OSError, KeyError, ValueError) as exc:
                ev.notes.append(f"new labelled rows not counted: {exc}")
        ev.live, ev.live_rows = live_value(live_entry(live, name, st.get("champion")), p.live_metric)
        ev.offline = (st.get("metrics") or {}).get(p.offline_metric) if p.offline_metric else None
        states[name], evidence[name] = st, ev
    return states, evidence


def _ts(value: str):
    # imported on use: pandas parses the registry's and silver's time strings alike
    import pandas as pd

    return pd.Timestamp(value).tz_localize(None) if pd.Timestamp(value).tzinfo else pd.Timestamp(value)


def retrain_if_needed(policy: Policy, names: list[str], ops: Ops, *, force=False, dry_run=False) -> int:
    """Decide, run the stages of the models that need it, report, reload, audit. -> exit code."""
    live, active = read_live(policy.state), _alert(ops, "active") or {}
    states, evidence = gather(policy, names, ops, live, active)
    decisions = {n: decide(policy.models[n], evidence[n], min_live_rows=policy.min_live_rows) for n in names}
    for d in decisions.values():
        if force:
            d.reasons.insert(0, "forced (--force)")
        why = "RETRAIN: " + "; ".join(d.reasons) if d.needed else "no retrain: " + "; ".join(d.checks)
        print(f"{d.name}: {why}")
    todo = [n for n in names if decisions[n].needed]
    record = {"when": ops.now().isoformat(), "kind": "retrain" if todo else "check", "dry_run": dry_run,
              "models": {n: {"reasons": decisions[n].reasons, "checks": decisions[n].checks,
                             "before": states[n].get("champion"), "since": states[n].get("since")}
                         for n in names}}  # fmt: skip
    if not todo:
        print("nothing to retrain.")
        if not dry_run:
            append_audit(policy.state, record)
        return 0
    stages = [s for s in stage_order() if any(s in policy.models[n].stages for n in todo)]
    stages += [s for n in todo for s in policy.models[n].stages if s not in stages]
    argv = build_command(policy.command, stages)
    # every model those stages register (the triage stage registers two), not only the ones that asked
    affected = [n for n in policy.models if set(policy.models[n].stages) & set(stages)]
    for n in affected:
        if n not in todo:
            states.setdefault(n, ops.registry.state(n))
            record["models"][n] = {"reasons": [f"trained by the same stage(s) {list(policy.models[n].stages)}"],
                                   "before": states[n].get("champion")}  # fmt: skip
    record.update(command=argv, stages=stages, models={n: record["models"][n] for n in affected})
    print("command:", shlex.join(argv))
    if dry_run:
        print("dry run: nothing was run.")
        return 0
    code, seconds, error = process.run(argv, cwd=config.ROOT, timeout_s=policy.timeout_minutes * 60)
    record.update(exit_code=code, seconds=round(seconds, 1), error=error)
    promoted = {}
    for n in affected:
        m = record["models"][n]
        m.update(collect(ops.registry, n, states[n], code))
        if m["status"] == "failed":
            msg = f"{n}: training registered no version (command exit {code}{': ' + error if error else ''})"
            if policy.training_failed_alert:
                _alert(ops, "fire", FAILED_ALERT.format(n), msg, details={"command": argv, "exit_code": code},
                       severity=policy.training_failed_severity)  # fmt: skip
        elif policy.training_failed_alert:
            _alert(ops, "clear", FAILED_ALERT.format(n))
        if m["status"] == "promoted":
            promoted[n] = m["after"]
    reload = (
        reload_and_wait(ops.service, promoted, **_waits(policy)) if promoted else {"status": "not needed"}
    )
    record["reload"] = reload
    append_audit(policy.state, record)
    ok = code == 0 and all(record["models"][n]["status"] != "failed" for n in affected)
    lines = [
        f"retrain {'succeeded' if ok else 'FAILED'}: {shlex.join(argv)} -> exit {code} in {seconds:.0f} s"
    ]
    for n in affected:
        m = record["models"][n]
        lines.append(f"  {n}: {m['status']}: v{m['before']} -> v{m['after']}" +
                     (f" (new {', '.join('v' + v for v in m['new_versions'])}, gates {m['gates']})" if m["new_versions"] else ""))  # fmt: skip
        lines += [f"    {k}: {v['old']} -> {v['new']}" for k, v in (m.get("comparison") or {}).items()]
    lines.append(f"  reload: {reload['status']} {reload.get('detail', '')}".rstrip())
    print("\n".join(lines))
    _alert(ops, "notify", "\n".join(lines), details=record, kind="info" if ok else "failure")
    return 0 if ok and reload["status"] in ("ok", "skipped", "not needed") else 1


def collect(registry, name: str, before: Mapping, exit_code: int) -> dict:
    """What a training run did to one model: new versions, their gate verdict and metrics vs the old champion,
    and a status: promoted | challenger (gates failed) | unchanged (exit 0, nothing registered: dvc found
    nothing changed, and the same inputs give the same model) | failed."""
    after = registry.state(name)
    new = [str(v) for v in range(int(before.get("latest") or 0) + 1, int(after.get("latest") or 0) + 1)]
    out = {
        "after": after.get("champion"),
        "new_versions": new,
        "data_end": before.get("data_end"),
        "gates": None,
    }
    if not new:
        out["status"] = "unchanged" if exit_code == 0 else "failed"
        return out
    newest = registry.version(name, new[-1])
    out.update(gates=newest["gates"], gate_lines=newest["gate_lines"], comparison=comparison(before, newest))
    moved = after.get("champion") != before.get("champion") and after.get("champion") in new
    out["status"] = "promoted" if moved else "challenger"
    return out


def check_rollbacks(policy: Policy, names: list[str], ops: Ops, *, dry_run=False) -> int:
    """Roll back each champion this job promoted whose live performance is below the one it replaced."""
    if not policy.rollback_enabled:
        print("rollback: off (operations.retrain.rollback.enabled)")
        return 0
    live, audit, code = read_live(policy.state), read_audit(policy.state), 0
    promoted = {}  # name -> (new, previous): the latest promotion by this job not rolled back since
    for rec in audit:
        for n, m in (rec.get("models") or {}).items():
            if rec.get("kind") == "retrain" and m.get("status") == "promoted":
                promoted[n] = (str(m["after"]), str(m["before"]) if m.get("before") else None)
            elif rec.get("kind") == "rollback" and n in promoted and promoted[n][0] == str(m.get("before")):
                promoted.pop(n)
    for n in names:
        if n not in promoted or promoted[n][1] is None:
            print(f"{n}: no rollback check (no champion promoted by ml.retrain to compare)")
            continue
        new, old = promoted[n]
        current = ops.registry.state(n).get("champion")
        if current != new:
            print(f"{n}: no rollback check (champion is v{current}, not v{new} that ml.retrain promoted)")
            continue
        p = policy.models[n]
        roll, why = rollback_decision(live_entry(live, n, new), live_entry(live, n, old), metric=p.live_metric,
                                      higher_is_better=p.higher_is_better, min_rows=policy.min_live_rows,
                                      tolerance=policy.rollback_tolerance)  # fmt: skip
        print(f"{n}: v{new} vs v{old}: {why}")
        if not roll or dry_run:
            continue
        record = {"when": ops.now().isoformat(), "kind": "rollback", "reason": why,
                  "models": {n: {"before": new, "expected": old}}}  # fmt: skip
        try:
            out = ops.registry.rollback(n)
            record["models"][n]["after"] = str(out["champion_now"])
            record["reload"] = reload_and_wait(ops.service, {n: str(out["champion_now"])}, **_waits(policy))
            code = max(code, int(record["reload"]["status"] not in ("ok", "skipped")))
        except Exception as exc:  # noqa: BLE001 - audited and notified, the other models still checked
            record["error"], code = f"{type(exc).__name__}: {exc}", 1
            record.setdefault("reload", {"status": "not attempted"})
        append_audit(policy.state, record)
        text = (f"rollback {n}: v{new} -> v{record['models'][n].get('after', '?')} ({why}); "
                f"reload {record['reload'].get('status')}" + (f"; ERROR {record['error']}" if "error" in record else ""))  # fmt: skip
        print(text)
        _alert(ops, "notify", text, details=record, kind="failure" if "error" in record else "info")
    return code


def _alert(ops: Ops, method: str, *args, **kwargs):
    """Call the alert manager; alerting never changes the job's verdict: a failure is printed, not raised."""
    try:
        return getattr(ops.alerts, method)(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - e.g. an unwritable state dir or a corrupt alert_state.json
        print(f"retrain: alerting ({method}) failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def _waits(policy: Policy) -> dict:
    return {"timeout_s": policy.reload_timeout_seconds, "poll_s": policy.reload_poll_seconds}


# --- the command line ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None, ops: Ops | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.retrain", description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--if-needed", action="store_true", help="roll back if needed, then retrain the models that need it"
    )
    mode.add_argument("--check-rollback", action="store_true", help="only the rollback check")
    ap.add_argument("--params", default=None, help="params file (default: the project's params.yaml)")
    ap.add_argument("--dry-run", action="store_true", help="decide and print; run, change and audit nothing")
    ap.add_argument("--model", nargs="+", default=None, metavar="NAME", help="only these models")
    ap.add_argument(
        "--force", action="store_true", help="retrain the selected models whatever the policy says"
    )
    args = ap.parse_args(argv)
    try:
        policy = load_policy(args.params)
        names = args.model or list(policy.models)
        unknown = [n for n in names if n not in policy.models]
        if unknown:
            raise ValueError(
                f"{policy.source}: operations.retrain.models has no {unknown}; known: {list(policy.models)}"
            )
    except (ValueError, OSError) as exc:
        print(f"retrain: {exc}", file=sys.stderr)
        return 2
    policy.state.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(policy.state / LOCK_FILE, timeout=0):
            ops = ops or Ops(registry=RegistryView(), alerts=AlertManager.from_env(config.load_params(args.params)),
                             service=ServiceClient.from_env(timeout=policy.reload_timeout_seconds))  # fmt: skip
            code = check_rollbacks(policy, names, ops, dry_run=args.dry_run)
            if args.if_needed:
                code = max(
                    code, retrain_if_needed(policy, names, ops, force=args.force, dry_run=args.dry_run)
                )
            return code
    except Timeout:
        print(f"retrain: another run holds {policy.state / LOCK_FILE}; nothing done", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
