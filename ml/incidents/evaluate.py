"""Train and evaluate the incident models on any ServiceNow event-log file, with the time-ordered split.

    python -m ml.incidents evaluate --event-log FILE --out metrics.json [--params params.yaml]

The file is read and collapsed by `ml.data.sources` (one row per incident: open-time fields from the first
event, outcomes from the last), split by opening time (train on the past, test on the latest
`test_fraction`), and each model is fitted and scored next to its baseline by the same functions the
notebooks use. The real log has no free text, so every model runs with `use_text: false`. One JSON of
metrics is printed and written to `--out`, with wall times per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ml.config import load_params
from ml.incidents import datasets, sla, triage, ttr
from ml.incidents.targets import time_split
from ml.reports.notebooks import jsonable


def _sla(train, test, cfg) -> dict[str, Any]:
    table, _ = sla.compare_sla(train, test, cfg)
    h = sla.headline(table)
    keys = ("roc_auc", "pr_auc", "brier", "ece", "breach_rate", "threshold", "precision", "recall", "n_test")
    return {
        "model": {k: h[k] for k in keys if k in h},
        "logistic": {k: h[f"logistic_{k}"] for k in ("roc_auc", "pr_auc", "brier")},
        "majority": {k: h[f"majority_{k}"] for k in ("roc_auc", "pr_auc", "brier")},
    }


def _ttr(train, test, cfg) -> dict[str, Any]:
    table, _ = ttr.compare_ttr(train, test, cfg)
    keys = ("mae_p50_hours", "median_ae_p50_hours", "mae_p50_log1p", "pinball_p50_log1p", "coverage",
            "nominal_coverage", "median_width_hours", "n")  # fmt: skip
    return {m: {k: float(table.loc[m, k]) for k in keys} for m in ("model", "priority_baseline")}


def _group(train, test, cfg) -> dict[str, Any]:
    """The assignment-group head of the triage model on the categorical fields (the log has no text)."""
    cfg = {**cfg, **cfg.get("real", {}), "use_text": False, "targets": ["assignment_group"]}
    table = triage.compare_triage(train, test, cfg).table
    keys = ("accuracy", "top3_accuracy", "macro_f1", "coverage", "accuracy_when_covered", "n")
    out = {}
    for (_target, model), row in table.iterrows():
        out[model] = {k: (float(row[k]) if pd.notna(row[k]) else None) for k in keys if k in row}
    return out


# section -> (params section, evaluator(train, test, cfg) -> metrics); `use_text` is forced off
EVALUATORS: dict[str, tuple[str, Callable]] = {
    "sla": ("sla", _sla),
    "ttr": ("ttr", _ttr),
    "group": ("triage", _group),
}


def evaluate_incidents(
    incidents: pd.DataFrame, params: Mapping[str, Any], test_fraction: float | None = None
) -> dict[str, Any]:
    """Every evaluator on one time split of collapsed incidents (with `group_load_24h`)."""
    fraction = test_fraction or params.get("sla", {}).get("real", {}).get("test_fraction", 0.2)
    train, test = time_split(incidents, fraction, closed_only=False)
    out: dict[str, Any] = {
        "split": {
            "test_fraction": float(fraction),
            "train_incidents": int(len(train)),
            "test_incidents": int(len(test)),
            "cutoff": str(test["opened_at"].min()),
        },
        "seconds": {},
    }
    for name, (section, evaluator) in EVALUATORS.items():
        cfg = {**params.get(section, {}), "use_text": False}
        start = time.perf_counter()
        out[name] = evaluator(train, test, cfg)
        out["seconds"][name] = round(time.perf_counter() - start, 2)
    return out


def evaluate_event_log(
    path: str | Path, params: Mapping[str, Any], test_fraction: float | None = None
) -> dict:
    start = time.perf_counter()
    incidents = datasets.load_event_log(path)
    load_seconds = time.perf_counter() - start
    out = {"event_log": str(path), "incidents": int(len(incidents))}
    out |= evaluate_incidents(incidents, params, test_fraction)
    out["seconds"] = {"load": round(load_seconds, 2), **out["seconds"]}
    out["seconds"]["total"] = round(time.perf_counter() - start, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.incidents", description="Incident model tools.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("evaluate", help="train + evaluate on an event-log CSV with the time split")
    ev.add_argument("--event-log", required=True, help="ServiceNow event-log CSV (UCI format)")
    ev.add_argument("--out", required=True, help="where to write the metrics JSON")
    ev.add_argument("--params", default="params.yaml", help="hyperparameters (sections sla, ttr, ...)")
    ev.add_argument("--test-fraction", type=float, default=None, help="latest share of time held out")
    args = ap.parse_args(argv)
    path = Path(args.event_log)
    if not path.exists():
        print(f"event log {path} does not exist", file=sys.stderr)
        return 2
    try:
        result = evaluate_event_log(path, load_params(args.params), args.test_fraction)
    except ValueError as exc:  # bad file or unusable split: one readable line
        print(f"cannot evaluate {path}: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(jsonable(result), indent=2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    return 0
