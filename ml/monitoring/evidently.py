"""Evidently 0.7 wrappers: a drift report of a current frame against a reference, saved reproducibly and
summarised. `import evidently` takes seconds, so it is imported only where a report is built."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.monitoring.drift import is_categorical


def evidently_dataset(frame: pd.DataFrame, numerical: Sequence[str], categorical: Sequence[str]):
    """An Evidently Dataset of the given columns: categories as objects (None for missing), numbers as float."""
    from evidently import DataDefinition, Dataset  # slow import: only when a report is built

    cols = [*numerical, *categorical]
    data = frame[cols].copy()
    for c in categorical:
        data[c] = data[c].astype(object).where(data[c].notna(), None)
    for c in numerical:
        data[c] = pd.to_numeric(data[c], errors="coerce").astype(float)
    definition = DataDefinition(numerical_columns=list(numerical), categorical_columns=list(categorical))
    return Dataset.from_pandas(data, data_definition=definition)


def split_columns(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(numerical, categorical) columns by dtype, as PSI and Evidently should treat them."""
    cols = list(frame.columns if columns is None else columns)
    cat = [c for c in cols if is_categorical(frame[c])]
    return [c for c in cols if c not in cat], cat


def _rounded(obj: Any, digits: int = 10) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if np.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj


def save_snapshot_json(snapshot, path: str | os.PathLike) -> Path:
    """Evidently's JSON (metrics and tests) with sorted keys and floats to 10 significant digits, so a
    rerun on the same data writes the same bytes (category order, hence float sums, follows str hashing)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = _rounded(json.loads(snapshot.json()))
    out.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")
    return out


def summarize_snapshot(snapshot) -> dict[str, Any]:
    """The small summary of an Evidently snapshot: share drifted, per-column drift, tests passed/failed."""
    data = snapshot.dict()
    columns: dict[str, dict[str, Any]] = {}
    share = n_drifted = None
    by_metric: dict[str, dict[str, Any]] = {}
    for m in data["metrics"]:
        cfg = m.get("config", {})
        kind = str(cfg.get("type", "")).rsplit(":", 1)[-1]
        by_metric[m.get("id")] = m
        if kind == "DriftedColumnsCount" and share is None:
            share, n_drifted = float(m["value"]["share"]), int(m["value"]["count"])
        elif kind == "ValueDrift":
            columns[cfg["column"]] = {
                "method": cfg.get("method"),
                "score": float(m["value"]),
                "threshold": cfg.get("threshold"),
            }
    counts = {"SUCCESS": 0, "FAIL": 0, "WARNING": 0, "ERROR": 0}
    failed = []
    for t in data["tests"]:
        status = t.get("status", "")
        status = str(getattr(status, "value", status)).upper()  # a TestStatus enum in dict(), a str in JSON
        counts[status] = counts.get(status, 0) + 1
        params = t.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and params.get("column") in columns:
            columns[params["column"]]["drifted"] = status != "SUCCESS"
        if status in ("FAIL", "ERROR"):
            failed.append({"name": t.get("name"), "description": t.get("description"), "status": status})
    drift_failed = sum(1 for f in failed if str(f["name"]).startswith(("Value Drift", "Share of Drifted")))
    return {
        "share_drifted": share,
        "n_drifted": n_drifted,
        "columns": columns,
        "tests": {
            "total": len(data["tests"]),
            "passed": counts.get("SUCCESS", 0),
            "failed": counts.get("FAIL", 0) + counts.get("ERROR", 0),
            "warning": counts.get("WARNING", 0),
            "failed_drift": drift_failed,
            "failed_summary": len(failed) - drift_failed,
        },
        "failed_tests": failed,
    }


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    out_html: str | os.PathLike | None = None,
    out_json: str | os.PathLike | None = None,
    drift_share: float = 0.5,
    method: str | None = None,
    threshold: float | None = None,
    summary_preset: bool = True,
    include_tests: bool = True,
) -> dict[str, Any]:
    """Evidently 0.7 `Report` (DataDriftPreset + DataSummaryPreset, tests on) of current vs reference.

    Saves the HTML and Evidently's JSON when paths are given; returns `summarize_snapshot` plus row
    counts, paths and the seconds it took. `method`/`threshold` override Evidently's per-column choice
    (e.g. method="psi", threshold=0.1); `drift_share` is the share of drifted columns that fails the
    dataset-level test.
    """
    from evidently import Report  # slow import: only when a report is built
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    if numerical is None and categorical is None:
        numerical, categorical = split_columns(reference)
    numerical, categorical = list(numerical or []), list(categorical or [])
    cols = [*numerical, *categorical]
    missing = [c for c in cols if c not in current.columns]
    if missing:
        raise ValueError(f"current lacks column(s) {missing} that the report compares")
    if len(current) == 0 or len(reference) == 0:
        raise ValueError("reference and current need at least one row each")
    started = time.perf_counter()
    presets: list[Any] = [DataDriftPreset(drift_share=drift_share, method=method, threshold=threshold)]
    if summary_preset:
        presets.append(DataSummaryPreset())
    report = Report(presets, include_tests=include_tests)
    with warnings.catch_warnings():  # scipy's chi-square divides by a category's zero expected count
        warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
        snapshot = report.run(
            evidently_dataset(current, numerical, categorical),
            evidently_dataset(reference, numerical, categorical),
        )
    out = summarize_snapshot(snapshot)
    if out_html:
        Path(out_html).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(out_html))
    if out_json:
        save_snapshot_json(snapshot, out_json)
    out.update(
        rows_reference=int(len(reference)),
        rows_current=int(len(current)),
        html=str(out_html) if out_html else None,
        json=str(out_json) if out_json else None,
        seconds=round(time.perf_counter() - started, 2),
    )
    return out


def verdicts_compared(
    report: Mapping[str, Any], ours: Iterable[str], expected: Iterable[str]
) -> dict[str, list]:
    """Evidently's drifted columns (`drift_report`'s `columns`) next to our PSI monitor's and the columns
    a known shift should move: which both flag, which only one does, which expected ones each misses."""
    theirs = {c for c, v in report["columns"].items() if v.get("drifted")}
    ours, expected = set(ours), set(expected)
    return {
        "evidently": sorted(theirs),
        "ours": sorted(ours),
        "both": sorted(theirs & ours),
        "only_evidently": sorted(theirs - ours),
        "only_ours": sorted(ours - theirs),
        "evidently_missed": sorted(expected - theirs),
        "ours_missed": sorted(expected - ours),
    }


def verdicts_sentence(what: str, compared: Mapping[str, list], shift: str) -> str:
    """One Markdown sentence stating `verdicts_compared`'s result (generated, so it cannot go stale)."""

    def names(cols) -> str:
        return ", ".join(f"`{c}`" for c in cols) or "nothing"

    agree = not compared["only_evidently"] and not compared["only_ours"]
    text = (
        f"**{what}:** Evidently flags {names(compared['evidently'])}; our PSI monitor flags "
        f"{names(compared['ours'])}: they {'agree' if agree else 'disagree'}"
    )
    if not agree:
        text += f" (only Evidently: {names(compared['only_evidently'])}; only ours: {names(compared['only_ours'])})"
    missed = {"Evidently": compared["evidently_missed"], "our monitor": compared["ours_missed"]}
    if missed["Evidently"] and missed["Evidently"] == missed["our monitor"]:
        missed = {"both": missed["Evidently"]}
    for who, cols in missed.items():
        if cols:
            text += f". Of the columns {shift} should move, {who} {'miss' if who == 'both' else 'misses'} {names(cols)}"
    return text + "."
