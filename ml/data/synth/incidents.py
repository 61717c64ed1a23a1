"""A synthetic ServiceNow-like incident history, its snapshots at earlier times and dated incremental exports."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ml.data.schemas import INCIDENT_COLUMNS
from ml.data.synth.catalogues import (
    ALTERNATE_GROUPS,
    CONTACT_PROFILES,
    CONTACT_TYPES,
    LOCATION_WEIGHTS,
    LOCATIONS,
    ONE_OFF,
    ROLLOUT_OBJECTS,
    ROOT_CAUSE_SHARE,
    ROOT_CAUSES,
    SYSTEMS,
    System,
)
from ml.data.synth.common import (
    DEFAULT_MONTHS,
    DEFAULT_SLA_HOURS,
    DEFAULT_START,
    HOUR_NS,
    PRIORITY_MATRIX,
    SEC_NS,
    SOURCE,
    choice_by_uniform,
    is_int,
    random_stream,
)
from ml.data.synth.text import ticket_text

# Median-hours multipliers: some groups and categories are slower than others.
_GROUP_SPEED = {
    "Service Desk": 0.6, "Network Ops": 1.0, "DBA": 1.25, "SAP Support": 1.5, "Cloud Platform": 0.9,
    "Identity & Access": 0.7, "End User Computing": 1.35, "Messaging": 1.0, "Application Support": 1.3,
}  # fmt: skip
_ROLLOUT_GROUP_SPEED = 1.7  # a new team on a new system is slow
_CATEGORY_SPEED = {
    "Software": 1.0, "Network": 0.9, "Hardware": 1.4, "Database": 1.1, "Access": 0.6, "Email": 0.9,
    "Infrastructure": 0.9,
}  # fmt: skip
_PRIORITY_MEDIAN_HOURS = np.array([np.nan, 1.6, 3.5, 9.0, 27.0, 48.0])  # index = priority
_MAX_WORK_HOURS = 120 * 24.0  # the longest tickets approach ~4 months
_N_CALLERS = 400

# Arrivals: relative rate per hour of day and per day of week (Mon..Sun).
_HOUR_WEIGHT = np.array([0.06, 0.05, 0.04, 0.04, 0.05, 0.08, 0.2, 0.5, 0.9, 1.0, 1.0, 0.95,
                         0.8, 0.95, 1.0, 0.95, 0.85, 0.6, 0.35, 0.25, 0.18, 0.14, 0.1, 0.08])  # fmt: skip
_DOW_WEIGHT = np.array([1.1, 1.0, 1.0, 1.0, 0.85, 0.22, 0.18])
_GROWTH = 0.3  # ticket volume grows 30% over the period


def incident_export_time(start: Any = DEFAULT_START, months: int = DEFAULT_MONTHS) -> pd.Timestamp:
    """The moment the final incident export is taken: start + months."""
    return pd.Timestamp(start) + pd.DateOffset(months=int(months))


def _rollout_system(rollout: Mapping[str, Any]) -> tuple[pd.Timestamp, float, System]:
    """The new system a rollout introduces, with its own team, group and vocabulary."""
    unknown = set(rollout) - {"at", "system", "share", "owning_team", "assignment_group"}
    if unknown:
        raise ValueError(f"rollout has unknown keys {sorted(unknown)}")
    for key in ("at", "system"):
        if key not in rollout:
            raise ValueError(f"rollout needs '{key}'")
    name = str(rollout["system"])
    if name in {s.name for s in SYSTEMS}:
        raise ValueError(f"rollout.system {name!r} already exists; a rollout introduces a new system")
    share = float(rollout.get("share", 0.15))
    if not 0 < share < 1:
        raise ValueError(f"rollout.share must be in (0, 1), got {share!r}")
    group = str(rollout.get("assignment_group", f"{name} support"))
    words = name.split()
    short = " ".join(words[-2:])
    system = System(
        name, str(rollout.get("owning_team", f"{name} team")), 0.0, False, "desk",
        (("Software", "Application error", group, 0.35), ("Software", "Functional question", group, 0.35),
         ("Software", "Performance", group, 0.15), ("Access", "Authorization", "Identity & Access", 0.15)),
        (name, short, f"new {short}", f"{short} (new)"),
        ROLLOUT_OBJECTS,
        ("HTTP 500", "workflow error WF-2031", "submission failed"),
        ("hrportal.corp.example.com",),
    )  # fmt: skip
    return pd.Timestamp(rollout["at"]), share, system


def _arrivals(rng: np.random.Generator, start: pd.Timestamp, export: pd.Timestamp, n: int) -> np.ndarray:
    """Opening times (int ns): business hours and weekdays busier, slight growth over time."""
    hours = pd.date_range(start, export, freq="h", inclusive="left")
    w = (
        _HOUR_WEIGHT[hours.hour]
        * _DOW_WEIGHT[hours.dayofweek]
        * (1.0 + _GROWTH * np.linspace(0, 1, len(hours)))
    )
    idx = choice_by_uniform(rng.random(n), w)
    return hours.asi8[idx] + rng.integers(0, 3600, n) * SEC_NS


def _root_cause_arrivals(
    rng: np.random.Generator, start: pd.Timestamp, export: pd.Timestamp, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(root-cause index, opening time) for tickets that come in bursts of episodes, most early in each."""
    counts = rng.multinomial(n, [rc.weight for rc in ROOT_CAUSES] / np.sum([rc.weight for rc in ROOT_CAUSES]))
    span = export.value - start.value
    hour_p = _HOUR_WEIGHT / _HOUR_WEIGHT.sum()
    causes, times = [], []
    for r, count in enumerate(counts):
        n_episodes = int(rng.integers(2, 5))
        ep_start = start.value + (0.05 + 0.85 * rng.random(n_episodes)) * span
        ep_days = rng.uniform(3.0, 14.0, n_episodes)
        which = rng.integers(0, n_episodes, count)
        offset_days = np.floor(np.minimum(rng.exponential(ep_days[which] / 3.0), ep_days[which] - 1e-9))
        day0 = (ep_start[which] // (24 * HOUR_NS)) * (24 * HOUR_NS)
        t = day0 + offset_days * 24 * HOUR_NS + choice_by_uniform(rng.random(count), hour_p) * HOUR_NS
        t = t + rng.integers(0, 3600, count) * SEC_NS
        t = np.where(t < ep_start[which], t + 24 * HOUR_NS, t)  # before the episode began: next day
        causes.append(np.full(count, r))
        times.append(np.minimum(t, export.value - SEC_NS).astype(np.int64))
    return np.concatenate(causes).astype(np.int64), np.concatenate(times)


def _business_wait_hours(opened_ns: np.ndarray) -> np.ndarray:
    """Hours from opening until the next business hour (Mon-Fri 08:00-18:00); 0 inside business hours."""
    ts = pd.DatetimeIndex(opened_ns)
    hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60 + ts.second.to_numpy() / 3600
    dow = ts.dayofweek.to_numpy()
    weekday = dow < 5
    inside = weekday & (hour >= 8) & (hour < 18)
    before = weekday & (hour < 8)
    days_ahead = np.select([before, dow == 4, dow == 5], [0, 3, 2], default=1)
    nxt = ts.normalize().asi8 + days_ahead * 24 * HOUR_NS + 8 * HOUR_NS
    return np.where(inside, 0.0, (nxt - opened_ns) / HOUR_NS)


def _group_load(groups: np.ndarray, opened_ns: np.ndarray) -> np.ndarray:
    """Tickets opened in the same group during the previous 24 h, relative to that group's average."""
    ratio = np.ones(len(groups))
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        t = opened_ns[idx]
        count = np.arange(len(idx)) - np.searchsorted(t, t - 24 * HOUR_NS, side="left")
        ratio[idx] = count / max(count.mean(), 1.0)
    return ratio


# --- the generator -------------------------------------------------------------------------------
def make_incidents(
    *,
    n_incidents: int = 20_000,
    start: Any = DEFAULT_START,
    months: int = DEFAULT_MONTHS,
    seed: int = 0,
    rollout: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """A ServiceNow-like incident history, final state as exported at start + months (INCIDENT_COLUMNS)."""
    if not is_int(n_incidents) or n_incidents < 1:
        raise ValueError(f"n_incidents must be a positive integer, got {n_incidents!r}")
    if not is_int(months) or months < 1:
        raise ValueError(f"months must be a positive integer, got {months!r}")
    start = pd.Timestamp(start)
    export = incident_export_time(start, months)
    systems = list(SYSTEMS)
    roll_at, roll_share = None, 0.0
    if rollout:
        roll_at, roll_share, roll_system = _rollout_system(rollout)
        if not start < roll_at < export:
            raise ValueError(f"rollout.at={roll_at} must fall inside {start} .. {export}")
        systems.append(roll_system)
    sys_index = {s.name: i for i, s in enumerate(systems)}
    rng = random_stream(seed, "incidents")

    # Who, what and when: recurring root causes come in bursts, the rest follows the weekly rhythm.
    n_rc = round(ROOT_CAUSE_SHARE * n_incidents)
    n_base = n_incidents - n_rc
    base_opened = _arrivals(rng, start, export, n_base)
    base_sys = choice_by_uniform(rng.random(n_base), np.array([s.weight for s in SYSTEMS]))
    to_new = rng.random(n_base) < roll_share
    if roll_at is not None:
        base_sys = np.where(to_new & (base_opened >= roll_at.value), len(SYSTEMS), base_sys)
    rc_cause, rc_opened = _root_cause_arrivals(rng, start, export, n_rc)
    rc_u = rng.random(n_rc)
    rc_sys = np.empty(n_rc, dtype=np.int64)
    for r, cause in enumerate(ROOT_CAUSES):
        mask = rc_cause == r
        cand = [sys_index[name] for name in cause.systems]
        p = np.array([0.5] + [0.5 / (len(cand) - 1)] * (len(cand) - 1)) if len(cand) > 1 else np.ones(1)
        rc_sys[mask] = np.array(cand)[choice_by_uniform(rc_u[mask], p)]

    opened = np.concatenate([base_opened, rc_opened])
    sys_i = np.concatenate([base_sys, rc_sys])
    cause_i = np.concatenate([np.full(n_base, -1), rc_cause])
    order = np.argsort(opened, kind="stable")
    opened, sys_i, cause_i = opened[order], sys_i[order], cause_i[order]
    n = n_incidents
    is_rc = cause_i >= 0

    # Category, subcategory and the group that should own it.
    u_pair = rng.random(n)
    category = np.empty(n, dtype=object)
    subcategory = np.empty(n, dtype=object)
    true_group = np.empty(n, dtype=object)
    for k, system in enumerate(systems):
        mask = sys_i == k
        if not mask.any():
            continue
        pick = choice_by_uniform(u_pair[mask], np.array([p[3] for p in system.pairs]))
        pairs = np.array([p[:3] for p in system.pairs], dtype=object)[pick]
        category[mask], subcategory[mask], true_group[mask] = pairs[:, 0], pairs[:, 1], pairs[:, 2]
    for r, cause in enumerate(ROOT_CAUSES):
        mask = cause_i == r
        category[mask], subcategory[mask], true_group[mask] = cause.category, cause.subcategory, cause.group

    # Caller, channel, site.
    caller_w = 1.0 / np.arange(1, _N_CALLERS + 1) ** 0.9
    caller_perm = rng.permutation(_N_CALLERS)
    caller = caller_perm[choice_by_uniform(rng.random(n), caller_w)]
    home = choice_by_uniform(rng.random(_N_CALLERS), LOCATION_WEIGHTS)
    loc_i = np.where(rng.random(n) < 0.9, home[caller], choice_by_uniform(rng.random(n), LOCATION_WEIGHTS))
    hour = (opened // HOUR_NS) % 24
    night = (hour < 7) | (hour >= 19)
    profiles = np.array([CONTACT_PROFILES[s.contact] for s in systems])[sys_i]
    profiles[:, 3] *= np.where(night, 4.0, 1.0)  # at night mostly monitoring opens tickets
    contact_i = choice_by_uniform(rng.random(n), profiles)
    monitoring = contact_i == 3

    # Impact, urgency, priority, SLA.
    critical = np.array([s.critical for s in systems])[sys_i]
    impact_p = np.where(critical[:, None], [0.1, 0.3, 0.6], [0.04, 0.2, 0.76])
    impact_p = np.where(is_rc[:, None], [0.15, 0.5, 0.35], impact_p)
    urgency_p = np.where(monitoring[:, None], [0.2, 0.6, 0.2], [0.07, 0.5, 0.43])
    impact = choice_by_uniform(rng.random(n), impact_p) + 1
    urgency = choice_by_uniform(rng.random(n), urgency_p) + 1
    priority = PRIORITY_MATRIX[impact - 1, urgency - 1]
    sla = np.array([np.nan, *(DEFAULT_SLA_HOURS[p] for p in range(1, 6))])[priority]

    # Routing with label noise: vague tickets are misrouted more often.
    vague = rng.random(n) < np.where(is_rc, 0.04, 0.08)
    misrouted = rng.random(n) < 0.07 + 0.25 * vague
    u_alt = rng.random(n)
    group = true_group.copy()
    for g in np.unique(true_group[misrouted]):
        mask = misrouted & (true_group == g)
        alternates = ALTERNATE_GROUPS.get(g, ("Service Desk", "Application Support"))
        group[mask] = np.array(alternates, dtype=object)[(u_alt[mask] * len(alternates)).astype(int)]

    # Time to resolve: priority, group, category, load, off-hours wait, noise, a fat tail of pending tickets.
    load = _group_load(group, opened)
    speed_g = np.array([_GROUP_SPEED.get(g, _ROLLOUT_GROUP_SPEED) for g in group])
    speed_c = np.array([_CATEGORY_SPEED[c] for c in category])
    log_work = (
        np.log(_PRIORITY_MEDIAN_HOURS[priority])
        + np.log(speed_g)
        + np.log(speed_c)
        + 0.35 * np.log(np.clip(load, 0.25, 4.0))
        + 0.5 * misrouted
        + 0.3 * vague
        - 0.2 * monitoring
        + rng.normal(0.0, 0.75, n)
    )
    # Waiting for a vendor, a part or the user: likelier for hardware, and usually said in the ticket.
    pending = rng.random(n) < np.where(category == "Hardware", 0.30, 0.09)
    wait_hint = np.where(pending, rng.random(n) < 0.7, rng.random(n) < 0.02)
    log_work += pending * rng.uniform(2.0, 4.2, n)
    wait = np.where(priority >= 3, _business_wait_hours(opened), 0.0)
    work = _MAX_WORK_HOURS * -np.expm1(-np.exp(log_work) / _MAX_WORK_HOURS)  # soft cap, no pile-up
    ttr_hours = np.maximum(work + wait, 0.05)
    resolved = opened + (np.round(ttr_hours * 3600) * SEC_NS).astype(np.int64)
    by_caller = rng.random(n) < 0.4
    close_delay_h = np.where(by_caller, rng.uniform(0.05, 48.0, n), 72.0)
    closed = resolved + (np.round(close_delay_h * 3600) * SEC_NS).astype(np.int64)
    reassign = rng.poisson(0.25 + 1.0 * misrouted + 0.5 * vague + 0.4 * pending) + misrouted

    # Final state at export.
    x = export.value
    is_open = resolved > x
    is_resolved = ~is_open & (closed > x)
    is_new = is_open & (opened > x - 8 * HOUR_NS) & (rng.random(n) < 0.7)
    touched = opened + (rng.uniform(0.05, 1.0, n) * (x - opened) // SEC_NS * SEC_NS).astype(np.int64)
    updated = np.select([is_new, is_open, is_resolved], [opened, touched, resolved], default=closed)
    state = np.select(
        [is_new, is_open & pending, is_open, is_resolved],
        ["New", "On Hold", "In Progress", "Resolved"],
        "Closed",
    ).astype(object)
    reassign = np.where(is_new, 0, reassign)

    # Free text (the only per-ticket Python loop).
    rnd = random.Random(int(rng.integers(0, 2**63)))
    # Mentions of other systems come from the base catalogue, so a rollout leaves earlier tickets unchanged.
    aliases = [
        [a for j, s in enumerate(SYSTEMS) if j != k for a in s.aliases[:2]] for k in range(len(systems))
    ]
    shorts, descs = [], []
    for i in range(n):
        cause = ROOT_CAUSES[cause_i[i]] if cause_i[i] >= 0 else None
        s_text, d_text = ticket_text(
            rnd, systems[sys_i[i]], category[i], subcategory[i], cause, bool(vague[i]), LOCATIONS[loc_i[i]],
            aliases[sys_i[i]], bool(wait_hint[i]),
        )  # fmt: skip
        shorts.append(s_text)
        descs.append(d_text)

    def ts(values: np.ndarray, missing: np.ndarray | None = None) -> pd.Series:
        out = pd.Series(values.astype("datetime64[ns]"))
        return out.mask(missing) if missing is not None else out

    frame = pd.DataFrame(
        {
            "number": [f"INC{10_001 + i:07d}" for i in range(n)],
            "opened_at": ts(opened),
            "sys_updated_at": ts(updated),
            "state": state,
            "caller_id": np.array([f"Caller {c + 1}" for c in range(_N_CALLERS)], dtype=object)[caller],
            "contact_type": np.array(CONTACT_TYPES, dtype=object)[contact_i],
            "location": np.array(LOCATIONS, dtype=object)[loc_i],
            "impact": pd.array(impact, dtype="Int64"),
            "urgency": pd.array(urgency, dtype="Int64"),
            "priority": pd.array(priority, dtype="Int64"),
            "category": category,
            "subcategory": subcategory,
            "cmdb_ci": np.array([s.name for s in systems], dtype=object)[sys_i],
            "owning_team": np.array([s.team for s in systems], dtype=object)[sys_i],
            "assignment_group": group,
            "short_description": np.array(shorts, dtype=object),
            "description": np.array(descs, dtype=object),
            "sla_target_hours": sla.astype(float),
            "reassignment_count": pd.array(reassign, dtype="Int64"),
            "resolved_at": ts(resolved, is_open),
            "closed_at": ts(closed, is_open | is_resolved),
            "made_sla": pd.array(np.where(is_open, None, ttr_hours <= sla), dtype="boolean"),
            "root_cause": np.array([c.name for c in ROOT_CAUSES] + [ONE_OFF], dtype=object)[cause_i],
            "source": SOURCE,
        }
    )
    frame["source"] = frame["source"].astype(object)
    return frame[INCIDENT_COLUMNS]


def snapshot_incidents(final: pd.DataFrame, as_of: Any) -> pd.DataFrame:
    """The incidents as an export taken at `as_of` would show them, with nothing that happened later."""
    as_of = pd.Timestamp(as_of)
    snap = final.loc[final["opened_at"] <= as_of].copy()
    resolved_by = snap["resolved_at"].notna() & (snap["resolved_at"] <= as_of)
    closed_by = snap["closed_at"].notna() & (snap["closed_at"] <= as_of)
    # Still open in the final export: its last recorded update is visible once it has happened.
    open_update = snap["resolved_at"].isna() & (snap["sys_updated_at"] <= as_of)
    fresh = ~resolved_by & ~open_update
    only_resolved = resolved_by & ~closed_by

    snap.loc[fresh, "state"] = "In Progress"
    snap.loc[fresh, "sys_updated_at"] = snap.loc[fresh, "opened_at"]
    snap.loc[fresh, "reassignment_count"] = 0
    snap.loc[fresh, ["resolved_at", "closed_at"]] = pd.NaT
    snap.loc[fresh, "made_sla"] = pd.NA
    snap.loc[only_resolved, "state"] = "Resolved"
    snap.loc[only_resolved, "sys_updated_at"] = snap.loc[only_resolved, "resolved_at"]
    snap.loc[only_resolved, "closed_at"] = pd.NaT
    return snap.reset_index(drop=True)


def incident_batches(
    final: pd.DataFrame, *, every: str = "14D", start: Any = None, export_at: Any = None
) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """Dated incremental exports: each holds the incidents whose row changed since the previous export."""
    step = pd.Timedelta(every)
    if step <= pd.Timedelta(0):
        raise ValueError(f"every must be a positive duration, got {every!r}")
    if final.empty:
        raise ValueError("cannot cut batches from an empty incident frame")
    export = pd.Timestamp(export_at) if export_at is not None else final["sys_updated_at"].max()
    if final["sys_updated_at"].max() > export:
        raise ValueError(f"export_at={export} is before the last update in the frame")
    t = (pd.Timestamp(start) if start is not None else final["opened_at"].min().normalize()) + step
    as_ofs = []
    while t < export:
        as_ofs.append(t)
        t += step
    as_ofs.append(export)
    batches, previous = [], None
    for as_of in as_ofs:
        snap = snapshot_incidents(final, as_of)
        if previous is not None:
            snap = snap.loc[snap["sys_updated_at"] > previous].reset_index(drop=True)
        batches.append((as_of, snap))
        previous = as_of
    return batches
