"""params.yaml `operations.retrain` and `operations.schedule` as checked objects, and the pure decisions on
them: does a model need retraining (and why, or why not), and should a new champion be rolled back."""

from __future__ import annotations

import datetime as dt
import functools
import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ml import config

DRIFT_ALERT = "drift:{}"
# the monitoring job's alerts on live performance (ml.monitoring.alerts.evaluate), `<kind>:<model>`
PERFORMANCE_ALERTS = ("auc_drop", "coverage", "forecast_mape")
MODEL_KEYS = {
    "stages": list,
    "max_age_days": (int, float, type(None)),
    "on_drift_alert": bool,
    "on_performance_alert": bool,
    "min_new_labelled_rows": (int, type(None)),
    "labels": (dict, type(None)),
    "live_metric": (str, type(None)),
    "higher_is_better": bool,
    "offline_metric": (str, type(None)),
    "performance_drop": (int, float, type(None)),
}


# --- the policy (params.yaml operations.retrain) -------------------------------------------------------------
@dataclass(frozen=True)
class ModelPolicy:
    """When one registered model is retrained, and by which DVC stages."""

    name: str
    stages: tuple[str, ...]
    max_age_days: float | None
    on_drift_alert: bool
    on_performance_alert: bool
    min_new_labelled_rows: int | None
    labels: Mapping[str, str] | None
    live_metric: str | None
    higher_is_better: bool
    offline_metric: str | None
    performance_drop: float | None


@dataclass(frozen=True)
class Policy:
    command: str
    timeout_minutes: float
    reload_timeout_seconds: float
    reload_poll_seconds: float
    rollback_enabled: bool
    min_live_rows: int
    rollback_tolerance: float
    models: dict[str, ModelPolicy]
    training_failed_alert: bool  # operations.alerts.training_failed
    training_failed_severity: str  # operations.alerts.severity.training_failed
    state: Path
    silver: Path
    source: str  # the params file, for messages


def load_policy(params_path: str | os.PathLike | None = None) -> Policy:
    """The retrain policy from a params file (its `operations.retrain` merged over the project's), checked:
    a bad value is refused naming the file and the field."""
    path = Path(params_path) if params_path else config.ROOT / "params.yaml"
    params = config.load_params(path)
    ops = params.get("operations") or {}
    where = f"{path}: operations.retrain"
    cfg = config.section("operations", {"retrain": ops.get("retrain") or {}})["retrain"]
    state = ops.get("state") or config.section("operations").get("state")
    if not state:
        raise ValueError(f"{path}: operations.state is not set (the monitoring job's state directory)")
    silver = (params.get("features") or {}).get("silver") or config.section("features")["silver"]
    stages = dvc_stages()
    models = {}
    for name, spec in (cfg.get("models") or {}).items():
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}.models.{name}: expected a mapping of {sorted(MODEL_KEYS)}")
        for key, kind in MODEL_KEYS.items():
            value = spec.get(key)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ValueError(f"{where}.models.{name}.{key}: got {value!r}, expected {_kind(kind)}")
        unknown = [s for s in spec["stages"] if not isinstance(s, str) or (stages and s not in stages)]
        if not spec["stages"] or unknown:
            raise ValueError(f"{where}.models.{name}.stages: {unknown or 'empty'} not a stage of dvc.yaml")
        labels = spec["labels"]
        if labels is not None and set(labels) != {"table", "time", "outcome"}:
            raise ValueError(
                f"{where}.models.{name}.labels: expected keys table, time, outcome; got {labels}"
            )
        models[name] = ModelPolicy(name=name, **{k: spec[k] for k in MODEL_KEYS if k != "stages"},
                                   stages=tuple(spec["stages"]))  # fmt: skip
    if "{stages}" not in str(cfg["command"]):
        raise ValueError(f"{where}.command: {cfg['command']!r} has no {{stages}} placeholder")
    rb = cfg["rollback"]
    alerts = config.section("operations", {"alerts": ops.get("alerts") or {}})["alerts"]
    return Policy(
        command=str(cfg["command"]),
        timeout_minutes=float(cfg["timeout_minutes"]),
        reload_timeout_seconds=float(cfg["reload_timeout_seconds"]),
        reload_poll_seconds=float(cfg["reload_poll_seconds"]),
        rollback_enabled=bool(rb["enabled"]),
        min_live_rows=int(cfg["min_live_rows"]),
        rollback_tolerance=float(rb["tolerance"]),
        models=models,
        training_failed_alert=bool(alerts.get("training_failed")),
        training_failed_severity=str((alerts.get("severity") or {}).get("training_failed", "critical")),
        state=config.resolve(state),
        silver=config.resolve(silver),
        source=str(path),
    )


def _kind(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def stage_order(root: Path | None = None) -> list[str]:
    """The stage names of dvc.yaml in its order (empty when there is none)."""
    f = (root or config.ROOT) / "dvc.yaml"
    return list(_stages(f, f.stat().st_mtime_ns)) if f.is_file() else []


@functools.cache
def _stages(path: Path, mtime_ns: int) -> tuple[str, ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built in: dvc.yaml is long
    return tuple((yaml.load(path.read_text(), Loader=loader) or {}).get("stages", {}))


def dvc_stages(root: Path | None = None) -> set[str]:
    return set(stage_order(root))


# --- the schedule (params.yaml operations.schedule) -----------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One scheduled command: a standard 5-field cron expression, the command, its time limit."""

    name: str
    cron: str
    command: str
    timeout_minutes: float


@dataclass(frozen=True)
class Schedule:
    timezone: str
    misfire_grace_seconds: int
    jobs: dict[str, Job]
    source: str


def load_schedule(params_path: str | os.PathLike | None = None) -> Schedule:
    """`operations.schedule` from a params file (merged over the project's), checked field by field."""
    path = Path(params_path) if params_path else config.ROOT / "params.yaml"
    given = (config.load_params(path).get("operations") or {}).get("schedule") or {}
    cfg = config.section("operations", {"schedule": given})["schedule"]
    where = f"{path}: operations.schedule"
    try:
        zoneinfo.ZoneInfo(str(cfg["timezone"]))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{where}.timezone: unknown time zone {cfg['timezone']!r}") from exc
    jobs = {}
    for name, spec in (cfg.get("jobs") or {}).items():
        if not isinstance(spec, Mapping) or set(spec) != {"cron", "command", "timeout_minutes"}:
            raise ValueError(
                f"{where}.jobs.{name}: expected {{cron, command, timeout_minutes}}, got {spec!r}"
            )
        if len(str(spec["cron"]).split()) != 5:
            raise ValueError(
                f"{where}.jobs.{name}.cron: {spec['cron']!r} is not 5 fields (min hour dom month dow)"
            )
        jobs[name] = Job(name, str(spec["cron"]), str(spec["command"]), float(spec["timeout_minutes"]))
    return Schedule(str(cfg["timezone"]), int(cfg["misfire_grace_seconds"]), jobs, str(path))


def live_entry(live: Mapping, name: str, version: str | None) -> dict | None:
    """live.json's record of one version: `{n, input_drift, drifted_features, performance}`."""
    return ((live.get(name) or {}).get("versions") or {}).get(str(version)) if version else None


def live_value(entry: Mapping | None, metric: str | None) -> tuple[float | None, int]:
    """(the live metric, the labelled predictions it was measured on) from a live.json version record;
    (None, 0) when the job could not measure it (`performance.available` false)."""
    perf = (entry or {}).get("performance") or {}
    if not metric or perf.get("available") is False:
        return None, 0
    value = perf.get(metric)
    n = perf.get("n_labelled", perf.get("n", 0))
    return (float(value) if isinstance(value, int | float) else None), int(n or 0)


# --- the decision (pure) ------------------------------------------------------------------------------------
@dataclass
class Evidence:
    """What is known about one model when deciding."""

    now: dt.datetime
    champion: str | None = None
    champion_created: dt.datetime | None = None
    last_attempt: dt.datetime | None = None
    drift_alert: Mapping | None = None
    performance_alerts: Mapping[str, Mapping] = field(default_factory=dict)  # key -> the active alert
    new_rows: int | None = None
    new_rows_since: str | None = None
    live: float | None = None
    live_rows: int = 0
    offline: float | None = None
    notes: list[str] = field(default_factory=list)  # evidence that could not be read, and why


@dataclass
class Decision:
    name: str
    reasons: list[str] = field(default_factory=list)  # why retrain (empty: no)
    checks: list[str] = field(default_factory=list)  # why not, per trigger

    @property
    def needed(self) -> bool:
        return bool(self.reasons)


def _alert_reason(d: Decision, key: str, alert: Any, last_attempt: dt.datetime | None) -> None:
    """An active alert is a reason to retrain, unless it was already firing at the last retrain attempt
    (that attempt acted on it; it stays active until the monitoring job sees the new version clear it)."""
    text = alert.get("message") if isinstance(alert, Mapping) else None
    since = _when(alert.get("since")) if isinstance(alert, Mapping) else None
    if last_attempt is not None and since is not None and since <= last_attempt:
        d.checks.append(f"active alert {key} fired {since.isoformat()}, before the last retrain attempt "
                        f"({last_attempt.isoformat()}): already acted on")  # fmt: skip
        return
    d.reasons.append(f"active alert {key}" + (f": {text}" if text else ""))


def _when(value: Any) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def decide(p: ModelPolicy, ev: Evidence, *, min_live_rows: int = 0) -> Decision:
    """Every trigger of the policy, each with a sentence: a reason to retrain, or why it does not fire."""
    d = Decision(p.name)
    if ev.champion is None:
        d.reasons.append("no champion in the registry")
        return d
    if p.max_age_days is not None and ev.champion_created is not None:
        since, what = ev.champion_created, f"champion v{ev.champion}"
        if ev.last_attempt and ev.last_attempt > since:
            since, what = ev.last_attempt, "the last retrain attempt"
        age = (ev.now - since).total_seconds() / 86400
        msg = f"{what} is {age:.1f} days old (max_age_days {p.max_age_days})"
        (d.reasons if age > p.max_age_days else d.checks).append(msg)
    if p.on_drift_alert:
        if ev.drift_alert is not None:
            _alert_reason(d, DRIFT_ALERT.format(p.name), ev.drift_alert, ev.last_attempt)
        else:
            d.checks.append(f"no active {DRIFT_ALERT.format(p.name)} alert")
    if p.on_performance_alert:
        for key, alert in ev.performance_alerts.items():
            _alert_reason(d, key, alert, ev.last_attempt)
        if not ev.performance_alerts:
            d.checks.append("no active performance alert (" + ", ".join(PERFORMANCE_ALERTS) + ")")
    if p.min_new_labelled_rows is not None and ev.new_rows is not None:
        msg = (f"{ev.new_rows} new labelled rows in silver/{(p.labels or {}).get('table')} after "
               f"{ev.new_rows_since}; min_new_labelled_rows {p.min_new_labelled_rows}")  # fmt: skip
        (d.reasons if ev.new_rows >= p.min_new_labelled_rows else d.checks).append(msg)
    if p.performance_drop is not None and p.live_metric and p.offline_metric:
        if ev.live is None or ev.offline is None:
            d.checks.append(
                f"{p.live_metric}: no live value for v{ev.champion} in live.json, or no {p.offline_metric}"
            )
        elif ev.live_rows < min_live_rows:
            d.checks.append(
                f"live {p.live_metric} on {ev.live_rows} labelled rows only (min_live_rows {min_live_rows})"
            )
        else:
            drop = (ev.offline - ev.live) if p.higher_is_better else (ev.live - ev.offline)
            msg = (f"live {p.live_metric} {ev.live:.4g} on {ev.live_rows} rows vs {p.offline_metric} {ev.offline:.4g}: "
                   f"{drop:+.4g} worse (performance_drop {p.performance_drop})")  # fmt: skip
            (d.reasons if drop > p.performance_drop else d.checks).append(msg)
    d.checks += ev.notes
    if not d.reasons and not d.checks:
        d.checks.append("no trigger configured")
    return d


def rollback_decision(
    new: Mapping | None,
    old: Mapping | None,
    *,
    metric: str | None,
    higher_is_better: bool,
    min_rows: int,
    tolerance: float = 0.0,
) -> tuple[bool, str]:
    """Roll back when the new champion's live metric is worse than the previous champion's by more than
    `tolerance`, both measured (live.json) on at least `min_rows` labelled rows."""
    if not metric:
        return False, "no live_metric for this model: nothing to compare"
    (a, na), (b, nb) = live_value(new, metric), live_value(old, metric)
    if a is None or b is None:
        return False, f"{metric}: live value missing for the {'new' if a is None else 'previous'} champion"
    if min(na, nb) < min_rows:
        return False, f"{metric}: too few labelled rows (new {na}, previous {nb}; min {min_rows})"
    worse = (b - a) if higher_is_better else (a - b)
    verdict = worse > tolerance
    return verdict, (
        f"live {metric}: new {a:.4g} ({na} rows) vs previous {b:.4g} ({nb} rows), "
        f"{worse:+.4g} worse (tolerance {tolerance}): {'roll back' if verdict else 'keep'}"
    )
