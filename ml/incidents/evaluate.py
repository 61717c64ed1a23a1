"""Train and evaluate the incident models on any ServiceNow event-log file, with a time-ordered split.

    python -m ml.incidents evaluate --event-log FILE --out metrics.json [--cutoff 2016-05-11]

The file is read and collapsed by `ml.incidents.datasets.load_event_log` (one row per incident: open-time
fields from the first event, outcomes from the last). The split is **by incident count** in opening
order: the earliest (1 - `test_fraction`) of the incidents train, the latest test (a split by time span
leaves few test incidents on a log whose openings bunch up); `--cutoff` splits at a date instead.

Every section (sla, ttr, group) scores on the same holdout:
- `model`: gradient boosting with native categoricals on the open-time fields plus causal history and
  workload features (`ml.incidents.history`, `ml.incidents.hgb`; settings `<section>.history_model`),
  for sla and group blended with a sparse logistic model on one-hot fields and field `crosses`, and for
  group a second stage that re-ranks each ticket's best groups (`ml.incidents.rerank`);
- `hgb`: the plain baseline, the same trees on the plain open-time fields only (no history, no calendar);
- the older baselines (logistic / majority, per-priority quantiles, majority / lookup rule) and, with
  `--registered`, `registered`: the setup the notebooks register (`ml.incidents.sla` / `ttr` / `triage`).
The real log has no free text, so every model runs with `use_text: false`.

**Holdout honesty.** The holdout keeps incidents still open at the end of the data (the latest event
time in the log). Their time to resolution is right-censored: the truth is at least their age at the end
of the data. TTR scores them as such: the P50 error is the least one consistent with the truth,
max(0, age - P50), and the P10-P90 band counts as covering when P90 >= age. An open incident older than
its SLA target has breached (scored); a younger one has no verdict yet (left out and counted). Closed
incidents without a resolution time have no TTR (left out and counted).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ml import config
from ml.config import load_params
from ml.features import limit_threads
from ml.incidents import datasets, hgb, history, sla, triage, ttr
from ml.incidents.targets import breach_target, count_cutoff, time_split, ttr_hours_target
from ml.reports.notebooks import jsonable


# --- targets on the holdout, censoring included ---------------------------------------------------------
def data_end(incidents: pd.DataFrame) -> pd.Timestamp:
    """The end of the data: the latest time any column of the log records."""
    cols = [c for c in ("opened_at", "sys_updated_at", "resolved_at", "closed_at") if c in incidents]
    return max(pd.to_datetime(incidents[c]).max() for c in cols)


def holdout_targets(test: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """Per test incident: breach (1/0/NaN), hours (NaN when unknown) and `censored_hours` (its age at `end`
    when still open, else NaN)."""
    breach = breach_target(test)
    hours = ttr_hours_target(test)
    still_open = history.done_time(test).isna().to_numpy()
    age = (end - pd.to_datetime(test["opened_at"])).dt.total_seconds().to_numpy() / 3600.0
    late = still_open & (age > pd.to_numeric(test["sla_target_hours"], errors="coerce").to_numpy())
    breach = breach.where(~(late & breach.isna().to_numpy()), 1.0)
    return pd.DataFrame(
        {"breach": breach, "hours": hours, "censored_hours": np.where(still_open, age, np.nan)},
        index=test.index,
    )


# --- SLA --------------------------------------------------------------------------------------------------
def _sla_scores(probs, y) -> dict[str, float]:
    probs, y = np.asarray(probs, dtype=float), np.asarray(y, dtype=int)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, probs)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, probs)) if both else float("nan"),
        "brier": float(brier_score_loss(y, probs)),
        "breach_rate": float(y.mean()),
        "n_test": int(len(y)),
    }


def _sla(train, test, target, params, registered: bool = False) -> dict[str, Any]:
    p = config.section("sla", params.get("sla"))
    hm = p["history_model"]
    ytr = breach_target(train)
    rows, y = train[ytr.notna()], ytr[ytr.notna()].to_numpy(dtype=int)
    keep = target["breach"].notna().to_numpy()
    test_rows, y_test = test[keep], target["breach"][keep].to_numpy(dtype=int)
    out: dict[str, Any] = {}
    models = {
        "model": lambda: hgb.BreachClassifier(**hm["model"], **_cats(hm["columns"]), crosses=_crosses(hm)),
        "hgb": lambda: hgb.BreachClassifier(**hm["plain"], **_cats(hm["plain_columns"]), history=False, calendar=False),
    }  # fmt: skip
    for name, make in models.items():
        m = make().fit(rows, y)
        out[name] = _sla_scores(m.predict_proba(test_rows)[:, 1], y_test)
    base = {**p, "use_text": False}
    fitters = [("logistic", sla.fit_logistic)] + ([("registered", sla.fit_sla)] if registered else [])
    for name, fit in fitters:
        out[name] = _sla_scores(sla.breach_probability(fit(train, base), test_rows), y_test)
    out["majority"] = _sla_scores(np.full(len(y_test), y.mean()), y_test)
    out["model"]["no_verdict_yet"] = int((~keep).sum())
    return out


# --- TTR --------------------------------------------------------------------------------------------------
def censored_ttr_metrics(pred: np.ndarray, hours: np.ndarray, censored: np.ndarray) -> dict[str, float]:
    """`ttr.ttr_metrics`-style numbers where `censored` rows (truth >= censored) count with the least error
    consistent with the truth, and as covered when P90 >= the censoring age."""
    pred = np.asarray(pred, dtype=float)
    known = ~np.isnan(hours)
    cens = ~known & ~np.isnan(censored)
    p50 = pred[:, 1]
    err = np.where(known, np.abs(hours - p50), np.maximum(0.0, censored - p50))[known | cens]
    truth = np.where(known, hours, censored)
    covered = np.where(known, (truth >= pred[:, 0]) & (truth <= pred[:, -1]), pred[:, -1] >= truth)[
        known | cens
    ]
    log_err = np.abs(np.log1p(hours[known]) - np.log1p(p50[known]))
    return {
        "median_ae_p50_hours": float(np.median(err)),
        "mae_p50_hours": float(err.mean()),
        "mae_p50_log1p": float(log_err.mean()),
        "coverage": float(covered.mean()),
        "nominal_coverage": 0.8,
        "median_width_hours": float(np.median(pred[known | cens, -1] - pred[known | cens, 0])),
        "n": int(known.sum() + cens.sum()),
        "n_censored": int(cens.sum()),
    }


def _ttr(train, test, target, params, registered: bool = False) -> dict[str, Any]:
    p = config.section("ttr", params.get("ttr"))
    hm = p["history_model"]
    ytr = ttr_hours_target(train)
    rows, y = train[ytr.notna()], ytr[ytr.notna()].to_numpy(dtype=float)
    hours, cens = target["hours"].to_numpy(dtype=float), target["censored_hours"].to_numpy(dtype=float)
    keep = ~np.isnan(hours) | ~np.isnan(cens)
    test_rows, hours, cens = test[keep], hours[keep], cens[keep]
    q = tuple(float(x) for x in p["quantiles"])
    out: dict[str, Any] = {}
    models = {
        "model": lambda: hgb.QuantileHours(**hm["model"], **_cats(hm["columns"]), quantiles=q),
        "hgb": lambda: hgb.QuantileHours(**hm["plain"], **_cats(hm["plain_columns"]), quantiles=q,
                                         history=False, calendar=False),
    }  # fmt: skip
    for name, make in models.items():
        out[name] = censored_ttr_metrics(make().fit(rows, y).predict(test_rows), hours, cens)
    table = ttr.fit_priority_baseline(train, q)
    out["priority_baseline"] = censored_ttr_metrics(
        ttr.predict_priority_baseline(table, test_rows), hours, cens
    )
    if registered:
        reg = ttr.fit_ttr(train, {**p, "use_text": False})
        out["registered"] = censored_ttr_metrics(ttr.predict_ttr(reg, test_rows).to_numpy(), hours, cens)
    out["model"]["no_resolution_time"] = int((~keep).sum())
    return out


# --- initial assignment group ---------------------------------------------------------------------------
def _group(train, test, target, params, registered: bool = False) -> dict[str, Any]:
    """The initial assignment group (the group at the first event, not the resolving team)."""
    p = config.section("triage", params.get("triage"))
    hm = p["history_model"]
    tr, te = train[train["assignment_group"].notna()], test[test["assignment_group"].notna()]
    y, y_test = tr["assignment_group"].to_numpy(dtype=object), te["assignment_group"].to_numpy(dtype=object)
    out: dict[str, Any] = {}
    no_group = {"exclude": ("assignment_group",)}
    models = {
        "model": lambda: hgb.GroupClassifier(**hm["model"], **_cats(hm["columns"], **no_group),
                                             crosses=_crosses(hm)),
        "hgb": lambda: hgb.GroupClassifier(**hm["plain"], **_cats(hm["plain_columns"], **no_group),
                                           history=False, calendar=False),
    }  # fmt: skip
    X_test = _no_group_history(te)
    for name, make in models.items():
        fitted = make().fit(_no_group_history(tr), y)
        out[name] = triage.baseline_metrics(y_test, fitted.ranked(X_test))
        if getattr(fitted, "reranker_", None) is not None:  # what the second stage changes, on the same fit
            first = triage.baseline_metrics(y_test, fitted.ranked(X_test, second_stage=False))
            out[name]["first_stage"] = {k: first[k] for k in ("accuracy", "top3_accuracy", "macro_f1")}
    out["majority"] = triage.baseline_metrics(y_test, triage.MajorityBaseline().fit(tr, y).ranked(te, 3))
    rule = triage.LookupRuleBaseline(("subcategory", "category"), p["rule_min_count"]).fit(tr, y)
    out["lookup_rule"] = triage.baseline_metrics(y_test, rule.ranked(te, 3))
    if not registered:
        return out
    cfg = {**p, **p["real"], "use_text": False, "targets": ["assignment_group"]}
    reg = triage.compare_triage(train, test, cfg).table.loc[("assignment_group", "model")]
    keys = ("accuracy", "top3_accuracy", "macro_f1", "coverage", "accuracy_when_covered", "n")
    out["registered"] = {k: (float(reg[k]) if pd.notna(reg[k]) else None) for k in keys}
    return out


def _no_group_history(frame: pd.DataFrame) -> pd.DataFrame:
    """Without the columns that read the incident's own group (its group's history and workload)."""
    return frame.drop(columns=[c for c in frame.columns if "assignment_group" in c or c == "open_group"])


def _crosses(hm: Mapping[str, Any]) -> tuple[str, ...]:
    """The field pairs of a section's sparse logistic model (`crosses`; none when not configured)."""
    return tuple(hm.get("crosses") or ())


def _cats(columns, exclude=()) -> dict:
    return {"categorical_columns": hgb.categorical_columns(columns, exclude)}


EVALUATORS = {"sla": _sla, "ttr": _ttr, "group": _group}


def evaluate_incidents(
    incidents: pd.DataFrame,
    params: Mapping[str, Any],
    test_fraction: float | None = None,
    cutoff: str | pd.Timestamp | None = None,
    registered: bool = False,
) -> dict[str, Any]:
    """Every evaluator on one time split of collapsed incidents (by count unless `cutoff` is given); with
    `registered`, also the setups the notebooks register (slower: a few minutes more on the whole log)."""
    fraction = test_fraction or config.section("sla", params.get("sla"))["real"]["test_fraction"]
    start = time.perf_counter()
    hcfg = history.HistoryConfig.from_params(
        config.section("sla", params.get("sla"))["history_model"]["history"]
    )
    with_history = history.add_history(incidents, hcfg)  # causal: each row reads only its past
    seconds = {"history": round(time.perf_counter() - start, 2)}
    cut = pd.Timestamp(cutoff) if cutoff is not None else count_cutoff(incidents, fraction)
    train, test = time_split(with_history, cutoff=cut, closed_only=False)
    end = data_end(incidents)
    target = holdout_targets(test, end)
    out: dict[str, Any] = {
        "split": {
            "by": "date" if cutoff is not None else "incident count",
            "test_fraction": None if cutoff is not None else float(fraction),
            "train_incidents": int(len(train)),
            "test_incidents": int(len(test)),
            "cutoff": str(cut),
            "data_end": str(end),
            "test_still_open": int(target["censored_hours"].notna().sum()),
        },
        "seconds": seconds,
    }
    sla_cfg = config.section("sla", params.get("sla"))
    threads, n_jobs = sla_cfg["n_threads"], int(sla_cfg["real"].get("n_jobs", 1))
    # the sections are independent: with n_jobs > 1 they fit side by side in processes (the longest first),
    # each single-threaded, which uses the cores better than OpenMP threads inside one small fit
    order = sorted(EVALUATORS, key=lambda n: SECTION_COST.get(n, 0), reverse=True)
    parts = joblib.Parallel(n_jobs=min(n_jobs, len(order)), backend="loky")(
        joblib.delayed(_section)(name, train, test, target, params, registered, threads) for name in order
    )
    for name, result, took in sorted(parts, key=lambda part: list(EVALUATORS).index(part[0])):
        out[name] = result
        out["seconds"][name] = took
    out["losses"] = losses_to_baselines(out)
    return out


SECTION_COST = {"ttr": 3, "group": 2, "sla": 1}  # their relative fitting time on the whole UCI log


def _section(name: str, train, test, target, params, registered: bool, threads: int):
    """One evaluator, timed (in a worker process when the sections run in parallel)."""
    start = time.perf_counter()
    with limit_threads(threads):  # OpenMP threads of the trees: more fit slower on a busy 2-core box
        result = EVALUATORS[name](train, test, target, params, registered)
    return name, result, round(time.perf_counter() - start, 2)


# headline metric per section: (key, higher is better); losses are also told on the SECONDARY ones
HEADLINES = {"sla": ("roc_auc", True), "ttr": ("median_ae_p50_hours", False), "group": ("accuracy", True)}
SECONDARY = {"group": (("top3_accuracy", True),)}


def losses_to_baselines(result: Mapping[str, Any]) -> list[str]:
    """One generated sentence per section and metric where `model` loses to a baseline."""
    out = []
    checks = [(s, m) for s, head in HEADLINES.items() for m in (head, *SECONDARY.get(s, ()))]
    for section, (key, higher) in checks:
        rows = result.get(section) or {}
        if "model" not in rows or rows["model"].get(key) is None:
            continue
        mine = rows["model"].get(key)
        better = [(n, r[key]) for n, r in rows.items() if n != "model" and r.get(key) is not None
                  and (r[key] > mine if higher else r[key] < mine)]  # fmt: skip
        if better:
            names = ", ".join(f"{n} ({v:.3f})" for n, v in better)
            out.append(f"{section}: the model's {key} {mine:.3f} loses to {names}.")
    return out


def evaluate_event_log(
    path: str | Path,
    params: Mapping[str, Any],
    test_fraction: float | None = None,
    cutoff=None,
    registered: bool = False,
) -> dict:
    start = time.perf_counter()
    incidents = datasets.load_event_log(path)
    load_seconds = time.perf_counter() - start
    out = {"event_log": str(path), "incidents": int(len(incidents))}
    out |= evaluate_incidents(incidents, params, test_fraction, cutoff, registered)
    out["seconds"] = {"load": round(load_seconds, 2), **out["seconds"]}
    out["seconds"]["total"] = round(time.perf_counter() - start, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.incidents", description="Incident model tools.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("evaluate", help="train + evaluate on an event-log CSV with a time-ordered split")
    ev.add_argument("--event-log", required=True, help="ServiceNow event-log CSV (UCI format)")
    ev.add_argument("--out", required=True, help="where to write the metrics JSON")
    ev.add_argument("--params", default="params.yaml", help="hyperparameters (sections sla, ttr, ...)")
    ev.add_argument("--test-fraction", type=float, default=None, help="latest share of incidents held out")
    ev.add_argument("--cutoff", default=None, help="split at this opening date instead of by count")
    ev.add_argument("--registered", action="store_true", help="also score the setups the notebooks register")
    args = ap.parse_args(argv)
    path = Path(args.event_log)
    if not path.exists():
        print(f"event log {path} does not exist", file=sys.stderr)
        return 2
    try:
        result = evaluate_event_log(
            path, load_params(args.params), args.test_fraction, args.cutoff, args.registered
        )
    except ValueError as exc:  # bad file or unusable split: one readable line
        print(f"cannot evaluate {path}: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(jsonable(result), indent=2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    s = result["split"]
    print(
        f"split by {s['by']}: {s['train_incidents']} train / {s['test_incidents']} test incidents, "
        f"cut-off {s['cutoff']}; {s['test_still_open']} test incidents still open at the end of the data "
        f"({s['data_end']}) are scored as censored",
        file=sys.stderr,
    )
    print(text)
    return 0


# --- for the notebooks and model cards: the committed whole-log results ------------------------------------
SECTION_KEYS = {
    "sla": ("roc_auc", "pr_auc", "brier", "breach_rate", "n_test"),
    "ttr": ("median_ae_p50_hours", "mae_p50_hours", "coverage", "median_width_hours", "n", "n_censored"),
    "group": ("accuracy", "top3_accuracy", "macro_f1", "n"),
}


def load_result(path: str | Path) -> dict | None:
    """A metrics JSON this CLI wrote (e.g. metrics/uci_full.json), or None when it is not there."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def section_table(result: Mapping[str, Any], section: str) -> pd.DataFrame:
    """One row per model of a section (model, hgb, baselines) with its headline metrics."""
    rows = {
        name: {k: m.get(k) for k in SECTION_KEYS[section] if k in m} for name, m in result[section].items()
    }
    return pd.DataFrame(rows).T.rename_axis("model")


def losses_sentence(result: Mapping[str, Any], section: str) -> str:
    """The generated sentence for one section: where the model loses to a baseline, or that it does not."""
    key, higher = HEADLINES[section]
    rows = result[section]
    lost = losses_to_baselines({section: rows})
    if lost:
        return (
            f"On {result.get('incidents', '?')} incidents of {Path(str(result.get('event_log', ''))).name}, "
            + " ".join(lost)
        )
    best = max(((n, r[key]) for n, r in rows.items() if n != "model" and r.get(key) is not None),
               key=lambda x: x[1] if higher else -x[1])  # fmt: skip
    return (
        f"On {result.get('incidents', '?')} incidents of {Path(str(result.get('event_log', ''))).name}, the "
        f"model's {key} {rows['model'][key]:.3f} beats every baseline (best: {best[0]}, {best[1]:.3f})."
    )


def second_stage_sentence(result: Mapping[str, Any]) -> str:
    """The generated sentence on what the group model's second stage (re-ranking) changes, or "" without one."""
    model = (result.get("group") or {}).get("model") or {}
    first = model.get("first_stage")
    if not first:
        return ""
    parts = []
    for key, label in (("accuracy", "top-1"), ("top3_accuracy", "top-3"), ("macro_f1", "macro-F1")):
        if model[key] == first[key]:
            parts.append(f"keeps {label} at {model[key]:.3f}")
            continue
        verb = "raises" if model[key] > first[key] else "lowers"
        parts.append(f"{verb} {label} from {first[key]:.3f} to {model[key]:.3f}")
    return (
        "Against the first stage alone (the same fit, before re-ranking), the second stage "
        + ", ".join(parts)
        + "."
    )


def table_losses(table: pd.DataFrame, metric: str, higher: bool, where: str, model: str = "model") -> str:
    """A generated sentence from a notebook's comparison table: which rows beat `model` on `metric`."""
    mine = float(table.loc[model, metric])
    others = table.drop(index=model)[metric].dropna().astype(float)
    better = others[others > mine] if higher else others[others < mine]
    if better.empty:
        return f"On {where}, the model's {metric} {mine:.3f} is not beaten by any baseline."
    names = ", ".join(f"{n} ({v:.3f})" for n, v in better.items())
    return f"On {where}, the model's {metric} {mine:.3f} loses to {names}."
