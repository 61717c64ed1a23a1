"""Causal history and workload features of incidents: what the service desk knew when a ticket opened.

For every incident and every key column (caller, opener, location, category, assignment group, ...):
how many earlier incidents with the same value were opened, how many were resolved before this one
opened, their breach rate and their typical hours to resolution (mean of log1p hours, i.e. a geometric
mean), plain and with exponential recency weighting (the desk's recent experience; a regime shift shows
up there first). Outcomes of an earlier incident count only once it was RESOLVED (its `resolved_at`,
else `closed_at`) strictly before this incident opened, so no feature reads the future. Routing history
(the group earlier tickets of the same caller, opener, ... went to) counts an earlier ticket once it was
resolved too, by default (`routing_known_at: resolved`); `opened` uses tickets opened earlier.

Workload at open time: incidents opened and not yet resolved, overall and for the ticket's group.

Everything is computed over a frame that holds the whole history (pass all incidents, like
`ml.features.add_group_load`), columns named by `history_columns`. `HistorySnapshot` freezes the
same statistics at one moment so a later request (one ticket at serving time) gets the values the
history had then: the same function with the snapshot's incidents as the past.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.incidents.targets import breach_target, ttr_hours_target

GROUP = "assignment_group"
ROUTED_AT = "routed_at"  # when the open-time fields (the initial group) were recorded, if the log says
STATS = ("n_opened", "n_done", "breach", "log_hours", "recent_breach", "recent_log_hours")


def done_time(incidents: pd.DataFrame) -> pd.Series:
    """When an incident's outcome became known: `resolved_at`, else `closed_at`, NaT while open."""
    done = pd.to_datetime(incidents["resolved_at"])
    if "closed_at" in incidents:
        done = done.fillna(pd.to_datetime(incidents["closed_at"]))
    return done


def routed_time(incidents: pd.DataFrame) -> pd.Series:
    """When an incident's initial group became known: its first logged event (`ROUTED_AT`, when the
    loader provides it), never before it opened; else its opening time."""
    opened = pd.to_datetime(incidents["opened_at"])
    if ROUTED_AT not in incidents:
        return opened
    return pd.to_datetime(incidents[ROUTED_AT]).fillna(opened).where(lambda t: t >= opened, opened)


def key_values(frame: pd.DataFrame, key: str) -> pd.Series:
    """A key column, or several joined by "+" ("location+category": missing when any part is missing)."""
    parts = key.split("+")
    if len(parts) == 1:
        return frame[key].astype(object)
    cols = [frame[c].astype(object) for c in parts]
    joined = cols[0].astype(str).str.cat([c.astype(str) for c in cols[1:]], sep="\x1f")
    missing = np.logical_or.reduce([c.isna().to_numpy() for c in cols])
    return joined.where(~missing, None).astype(object)


def has_key(frame: pd.DataFrame, key: str) -> bool:
    return all(c in frame.columns for c in key.split("+"))


def _ns(values) -> np.ndarray:
    return pd.to_datetime(values).to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)


def key_history(past: pd.DataFrame, queries: pd.DataFrame, key: str, half_life_days: float) -> pd.DataFrame:
    """`STATS` of `key` for each query row from the incidents in `past` (which may include the queries)."""
    t_q = _ns(queries["opened_at"])
    t_d = _ns(done_time(past))
    t_d[pd.isna(done_time(past)).to_numpy()] = np.nan
    breach = breach_target(past).to_numpy(dtype=float)
    logh = np.log1p(ttr_hours_target(past).clip(lower=0).to_numpy(dtype=float))
    tau = float(half_life_days) * 86400e9 / np.log(2)
    t0 = np.nanmin(t_q) if len(t_q) else 0.0
    w = np.exp(np.clip((t_d - t0) / tau, -700, 700))  # weight of an outcome by when it became known
    b_ok, h_ok = ~np.isnan(breach), ~np.isnan(logh)
    values = np.column_stack(
        [
            np.ones(len(past)),
            b_ok * 1.0,
            np.where(b_ok, breach, 0.0),
            h_ok * 1.0,
            np.where(h_ok, logh, 0.0),
            b_ok * w,
            np.where(b_ok, breach, 0.0) * w,
            h_ok * w,
            np.where(h_ok, logh, 0.0) * w,
        ]
    )
    all_keys = pd.concat([key_values(past, key), key_values(queries, key)], ignore_index=True)
    codes = pd.factorize(all_keys, use_na_sentinel=True)[0].astype(float)
    codes[codes < 0] = np.nan
    k_past, k_q = codes[: len(past)], codes[len(past) :]
    s = _causal_sums_two(k_past, t_d, values, k_q, t_q)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "n_done": s[:, 0],
            "breach": s[:, 2] / s[:, 1],
            "log_hours": s[:, 4] / s[:, 3],
            "recent_breach": s[:, 6] / s[:, 5],
            "recent_log_hours": s[:, 8] / s[:, 7],
        }
    n_opened = _opened_count(past, queries, k_past, k_q)
    frame = pd.DataFrame({"n_opened": n_opened, **out}, index=queries.index)
    return frame.add_prefix(f"hist_{key}_")[[f"hist_{key}_{s}" for s in STATS]]


def _causal_sums_two(k_past, t_done, values, k_q, t_q) -> np.ndarray:
    """`_causal_sums` where the past rows and the query rows are different frames."""
    n, m = len(k_q), values.shape[1]
    have = ~np.isnan(t_done) & ~np.isnan(k_past)
    times = np.r_[t_q, t_done[have]]
    kind = np.r_[np.zeros(n), np.ones(int(have.sum()))]
    keys = np.r_[k_q, k_past[have]]
    vals = np.vstack([np.zeros((n, m)), values[have]])
    order = np.lexsort((kind, times))
    keys_o, vals_o = keys[order], vals[order]
    frame = pd.DataFrame(vals_o)
    frame["k"] = np.nan_to_num(keys_o, nan=-1.0)
    sums = frame.groupby("k", sort=False).cumsum().to_numpy()
    qpos = order < n
    out = np.full((n, m), np.nan)
    out[order[qpos]] = sums[qpos]
    out[np.isnan(k_q)] = np.nan
    return out


def _opened_count(past, queries, k_past, k_q) -> np.ndarray:
    """Past incidents with the same key opened strictly before each query row."""
    t_p, t_q = _ns(past["opened_at"]), _ns(queries["opened_at"])
    ones = np.ones((len(past), 1))
    ok = ~np.isnan(k_past)
    return _causal_sums_two(np.where(ok, k_past, np.nan), t_p, ones, k_q, t_q)[:, 0]


def global_history(past: pd.DataFrame, queries: pd.DataFrame, half_life_days: float) -> pd.DataFrame:
    """The desk-wide recent breach rate and typical hours, from outcomes known before each query opened."""
    one = "__all__"
    p, q = past.assign(**{one: "all"}), queries.assign(**{one: "all"})
    stats = key_history(p, q, one, half_life_days)
    keep = ["recent_breach", "recent_log_hours", "breach", "log_hours"]
    return stats[[f"hist_{one}_{s}" for s in keep]].rename(columns=lambda c: c.replace(one, "all"))


def workload(past: pd.DataFrame, queries: pd.DataFrame, group: str = GROUP) -> pd.DataFrame:
    """Incidents opened before each query and not resolved by then: overall and in the query's group."""
    t_q = _ns(queries["opened_at"])
    t_open, t_done = _ns(past["opened_at"]), _ns(done_time(past))
    t_done[pd.isna(done_time(past)).to_numpy()] = np.inf
    opened = np.searchsorted(np.sort(t_open), t_q, "left")
    done = np.searchsorted(np.sort(t_done), t_q, "left")
    out = {"open_total": (opened - done).astype(float)}
    if group in past and group in queries:
        all_keys = pd.concat([past[group], queries[group]], ignore_index=True).astype(object)
        codes = pd.factorize(all_keys, use_na_sentinel=True)[0].astype(float)
        codes[codes < 0] = np.nan
        k_p, k_q = codes[: len(past)], codes[len(past) :]
        ones = np.ones((len(past), 1))
        n_open = _causal_sums_two(k_p, t_open, ones, k_q, t_q)[:, 0]
        finite = np.where(np.isinf(t_done), np.nan, t_done)
        n_done = _causal_sums_two(k_p, finite, ones, k_q, t_q)[:, 0]
        out["open_group"] = np.nan_to_num(n_open) - np.nan_to_num(n_done)
        out["open_group"][np.isnan(k_q)] = np.nan
    return pd.DataFrame(out, index=queries.index)


def routing_history(
    past: pd.DataFrame, queries: pd.DataFrame, keys: Sequence[str], known_at: str = "resolved"
) -> pd.DataFrame:
    """Per key: the group of the latest earlier ticket with the same value (`last_group_<key>`), where an
    earlier ticket counts once resolved (`known_at: resolved`) or once opened (`opened`) before the query."""
    if known_at not in ("resolved", "opened"):
        raise ValueError(f"routing known_at must be 'resolved' or 'opened', got {known_at!r}")
    when = done_time(past) if known_at == "resolved" else routed_time(past)
    t_p = _ns(when)
    t_p[pd.isna(when).to_numpy()] = np.nan
    t_q = _ns(queries["opened_at"])
    out = {}
    labelled = past[GROUP].notna().to_numpy() & ~np.isnan(t_p)
    for key in keys:
        if not (has_key(past, key) and has_key(queries, key)):
            continue
        rows = pd.DataFrame({"k": key_values(past, key).to_numpy(dtype=object)[labelled], "t": t_p[labelled],
                             "g": past[GROUP].to_numpy(dtype=object)[labelled]})  # fmt: skip
        rows = rows.dropna(subset=["k"]).sort_values("t", kind="stable")
        q = pd.DataFrame({"k": key_values(queries, key).to_numpy(dtype=object), "t": t_q,
                          "i": np.arange(len(queries))})  # fmt: skip
        q = q.dropna(subset=["k"]).sort_values("t", kind="stable")
        rows["k"], q["k"] = rows["k"].astype(str), q["k"].astype(str)
        merged = pd.merge_asof(q, rows, on="t", by="k", allow_exact_matches=False, direction="backward")
        last = np.full(len(queries), None, dtype=object)
        last[merged["i"].to_numpy()] = merged["g"].to_numpy(dtype=object)
        out[f"last_group_{key}"] = last
    return pd.DataFrame(out, index=queries.index)


def routing_shares(
    past: pd.DataFrame,
    queries: pd.DataFrame,
    keys: Sequence[str],
    half_life_days: float,
    known_at: str = "resolved",
) -> pd.DataFrame:
    """Per key: the recency-weighted share of each group among earlier tickets with the same value
    (`share_<key>__<group>`, NaN without such tickets), known as in `routing_history`; plus the
    weighted mode `top_group_<key>` and its share `top_share_<key>`."""
    when = done_time(past) if known_at == "resolved" else routed_time(past)
    t_p = _ns(when)
    t_p[pd.isna(when).to_numpy()] = np.nan
    t_q = _ns(queries["opened_at"])
    labels = past[GROUP].to_numpy(dtype=object)
    labelled = pd.notna(labels) & ~np.isnan(t_p)
    groups, codes = np.unique(labels[labelled].astype(str), return_inverse=True)
    tau = float(half_life_days) * 86400e9 / np.log(2)
    t0 = np.nanmin(t_q) if len(t_q) else 0.0
    onehot = np.zeros((int(labelled.sum()), len(groups)))
    onehot[np.arange(len(codes)), codes] = np.exp(np.clip((t_p[labelled] - t0) / tau, -700, 700))
    blocks = {}
    for key in keys:
        if not (has_key(past, key) and has_key(queries, key)) or not len(groups):
            continue
        all_keys = pd.concat([key_values(past, key)[labelled], key_values(queries, key)], ignore_index=True)
        kc = pd.factorize(all_keys, use_na_sentinel=True)[0].astype(float)
        kc[kc < 0] = np.nan
        n = int(labelled.sum())
        s = _causal_sums_two(kc[:n], t_p[labelled], onehot, kc[n:], t_q)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = s / s.sum(axis=1, keepdims=True)
        seen = np.nan_to_num(s).sum(axis=1) > 0
        share[~seen] = np.nan
        top = np.full(len(queries), None, dtype=object)
        best = np.argmax(np.nan_to_num(share), axis=1)
        top[seen] = groups[best[seen]]
        blocks[f"top_group_{key}"] = pd.Series(top, index=queries.index)
        blocks[f"top_share_{key}"] = pd.Series(np.where(seen, np.nanmax(np.nan_to_num(share), axis=1), np.nan),
                                               index=queries.index)  # fmt: skip
        blocks |= {
            f"share_{key}__{g}": pd.Series(share[:, i], index=queries.index) for i, g in enumerate(groups)
        }
    return pd.DataFrame(blocks, index=queries.index)


def share_columns(frame: pd.DataFrame, key: str | None = None) -> dict[str, str]:
    """The `routing_shares` columns of one key (or all): column -> group."""
    prefix = f"share_{key}__" if key else "share_"
    return {c: c.split("__", 1)[1] for c in frame.columns if c.startswith(prefix) and "__" in c}


@dataclass(frozen=True)
class HistoryConfig:
    """Which keys get history statistics, the recency half-life, and when a routing label is known."""

    keys: tuple[str, ...]
    routing_keys: tuple[str, ...]
    half_life_days: float = 14.0
    routing_known_at: str = "resolved"
    routing_shares: bool = False

    @classmethod
    def from_params(cls, p: Mapping) -> HistoryConfig:
        return cls(
            keys=tuple(p["history_keys"]),
            routing_keys=tuple(p["routing_keys"]),
            half_life_days=float(p["half_life_days"]),
            routing_known_at=str(p["routing_known_at"]),
            routing_shares=bool(p["routing_shares"]),
        )


def add_history(
    incidents: pd.DataFrame, cfg: HistoryConfig, past: pd.DataFrame | None = None
) -> pd.DataFrame:
    """A copy of `incidents` with every history, workload and routing column; `past` (default: the
    incidents themselves) is the history they are computed from. Only outcomes known before each
    incident opened are read, so passing all incidents, test period included, is causal."""
    past = incidents if past is None else past
    blocks = [incidents.copy()]
    for key in cfg.keys:
        if has_key(past, key) and has_key(incidents, key):
            blocks.append(key_history(past, incidents, key, cfg.half_life_days))
    blocks.append(global_history(past, incidents, cfg.half_life_days))
    blocks.append(workload(past, incidents))
    blocks.append(routing_history(past, incidents, cfg.routing_keys, cfg.routing_known_at))
    if cfg.routing_shares:
        blocks.append(
            routing_shares(past, incidents, cfg.routing_keys, cfg.half_life_days, cfg.routing_known_at)
        )
    return pd.concat(blocks, axis=1)


def history_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric history and workload columns `add_history` added (routing columns are categorical)."""
    prefixes = ("hist_", "open_total", "open_group")
    return [c for c in frame.columns if c.startswith(prefixes)]


def routing_columns(frame: pd.DataFrame) -> list[str]:
    """The categorical routing columns (groups): the latest and the most frequent earlier group per key."""
    return [c for c in frame.columns if c.startswith(("last_group_", "top_group_"))]


def routing_share_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric routing column per key: the most frequent earlier group's share."""
    return [c for c in frame.columns if c.startswith("top_share_")]
