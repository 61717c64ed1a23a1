"""Data-quality gate: our pandera schemas plus Evidently tests of a current file against a reference file.

    python -m ml.monitoring.quality --reference FILE|DIR --current FILE|DIR --out DIR
                         [--domain incidents|sensors] [--params params.yaml]

A directory as --current means its newest batch; a directory as --reference means every batch in it older
than the current one (typed and de-duplicated as the upsert into silver does): the data as it was before
the batch arrived. Silver after ingest is no reference: it already holds the batch, so nothing in the
batch would look new.

Checks, each with a threshold from the `quality:` section of params.yaml (a domain sub-section overrides):
- required columns present and values parseable (CSV/JSON are typed like ingestion types them);
- the pandera schema of the silver table (`ml.data.schemas`): share of rows failing each check;
- Evidently 0.7 tests on the monitored columns (`ml.monitoring.drift`): row count, missing share per column
  (against the reference's own share), new categories, numbers outside the reference range, and the
  share of drifted columns (a warning unless `drift_critical`: a real shift is not bad data).
Writes DIR/quality.json, DIR/quality.html (and Evidently's DIR/evidently.html), prints a verdict naming
each failed test with the measured value and the threshold. Exit 0 pass, 1 a gate failed, 2 an input
could not be read (the file is named).
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ml import config
from ml.data import landing, schemas
from ml.monitoring import alerts
from ml.monitoring.drift import incident_monitor_frame
from ml.monitoring.evidently import evidently_dataset, save_snapshot_json, split_columns

NOT_THRESHOLDS = ("out",)  # keys of the `quality:` section that are not thresholds (besides the domains)
SCHEMAS = {"sensors": schemas.sensor_readings, "incidents": schemas.incidents}
# Columns a file must have: what ingestion requires (the others it fills with missing values).
REQUIRED = {
    domain: [c for c in landing.COLUMN_TYPES[table] if c not in landing.OPTIONAL_COLUMNS[table]]
    for domain, table in landing.TABLES.items()
}


class InputError(Exception):
    """An input file that cannot be read or understood (exit code 2)."""


@dataclass
class Check:
    """One gate test: what was measured, against which threshold, and whether it passed."""

    name: str
    source: str  # schema | pandera | evidently
    column: str | None
    measured: float
    threshold: float
    op: str  # the passing condition: measured <op> threshold
    passed: bool
    critical: bool = True
    detail: str = ""

    @property
    def status(self) -> str:
        return "PASS" if self.passed else ("FAIL" if self.critical else "WARN")

    def line(self) -> str:
        what = f"{self.name} [{self.column}]" if self.column else self.name
        fail_op = {"<=": ">", ">=": "<", "==": "!="}.get(self.op, "vs")
        shown = self.op if self.passed else fail_op
        extra = f"  ({self.detail})" if self.detail else ""
        return f"  {self.status}  {self.source:9} {what}: {_fmt(self.measured)} {shown} {_fmt(self.threshold)}{extra}"


@dataclass
class GateResult:
    domain: str
    reference: str
    current: str
    rows_reference: int
    rows_current: int
    thresholds: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.critical]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and not c.critical]

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        checks = [{**asdict(c), "status": c.status} for c in self.checks]
        return {
            "verdict": "PASS" if self.passed else "FAIL",
            "domain": self.domain,
            "reference": self.reference,
            "current": self.current,
            "rows_reference": self.rows_reference,
            "rows_current": self.rows_current,
            "n_checks": len(self.checks),
            "n_failed": len(self.failed),
            "n_warnings": len(self.warnings),
            "failed": [c for c in checks if c["status"] == "FAIL"],
            "warnings": [c for c in checks if c["status"] == "WARN"],
            "thresholds": self.thresholds,
            "checks": checks,
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        head = (
            f"quality gate {'PASSED' if self.passed else 'FAILED'}: {self.current} ({self.rows_current:,} rows) "
            f"vs reference {self.reference} ({self.rows_reference:,} rows), domain {self.domain}"
        )
        lines = [head] + [c.line() for c in self.failed + self.warnings]
        lines.append(
            f"  {len(self.checks)} checks: {len(self.checks) - len(self.failed) - len(self.warnings)} passed, "
            f"{len(self.failed)} failed, {len(self.warnings)} warnings"
        )
        return "\n".join(lines)


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) >= 1 else f"{x:.4g}"


# --- inputs -----------------------------------------------------------------------------------


def infer_domain(frame: pd.DataFrame, path: Path) -> str:
    cols = set(frame.columns)
    if {"sensor_id", "value"} <= cols:
        return "sensors"
    if {"number", "opened_at"} <= cols:
        return "incidents"
    raise InputError(f"{path}: cannot tell the domain from columns {sorted(cols)[:8]}...; pass --domain")


def load(path: Path, domain: str | None) -> tuple[pd.DataFrame, dict[str, int], str]:
    """Read one input (exit-2 errors name the file) -> (frame, unparseable counts, domain)."""
    try:
        raw, _ = landing.read_records(path)
        domain = domain or infer_domain(raw, path)
        frame, bad = raw, {}
        if path.suffix.lower() in (".csv", ".json"):
            # typing needs every required column: a missing one is typed as empty, then dropped again,
            # so the gate reports it as a failed check instead of refusing the file
            missing = [c for c in REQUIRED[domain] if c not in raw.columns]
            typed, bad = landing.type_records(
                raw.assign(**{c: None for c in missing}), landing.TABLES[domain], str(path)
            )
            frame = typed.drop(columns=missing)
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from exc
    if frame.empty:
        raise InputError(f"{path}: no rows")
    return frame, bad, domain


def load_earlier(folder: Path, current: Path, domain: str) -> tuple[pd.DataFrame, str]:
    """Every batch of `domain` in `folder` older than `current` (all of them when `current` lies elsewhere)
    -> (frame, a name for the report)."""
    elsewhere = current.parent.resolve() != folder.resolve()
    earlier = sorted(
        p
        for p in folder.iterdir()
        if p.name.startswith(landing.BATCH_PREFIX[domain])
        and p.suffix.lower() in landing.RECORD_SUFFIXES
        and (elsewhere or p.name < current.name)
    )
    if not earlier:
        raise InputError(f"{folder}: no {domain} batch older than {current.name} to compare it with")
    try:
        frame = landing.read_batches(earlier, landing.TABLES[domain])
    except (OSError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    what = "batches" if elsewhere else f"batches before {current.name}"
    return frame, f"{folder} ({len(earlier)} {what})"


# --- checks -----------------------------------------------------------------------------------


def thresholds_from_params(params: Mapping[str, Any] | None, domain: str) -> dict[str, Any]:
    """The `quality:` section of `params` over the project's (`ml.config.section`), then its `<domain>:`
    sub-section; a key that is not a threshold is refused with a ValueError naming it."""
    given = dict((params or {}).get("quality") or {})
    overrides = {d: given.pop(d, None) or {} for d in SCHEMAS}  # any threshold, not only those declared
    section = config.section("quality", given)
    thresholds = {k: v for k, v in section.items() if k not in SCHEMAS and k not in NOT_THRESHOLDS}
    own = {**(section.get(domain) or {}), **overrides[domain]}
    unknown = sorted(set(own) - set(thresholds))
    if unknown:
        raise ValueError(f"quality.{domain} has unknown keys {unknown}; known: {sorted(thresholds)}")
    return {**thresholds, **own}


def schema_checks(
    frame: pd.DataFrame, domain: str, unparseable: Mapping[str, int], t: Mapping
) -> list[Check]:
    """Required columns, parseable values and the pandera schema, as gate checks."""
    n = len(frame)
    checks = []
    for col in REQUIRED[domain]:
        present = col in frame.columns
        checks.append(Check("required column present", "schema", col, float(present), 1.0, "==", present))
    for col, count in sorted(unparseable.items()):
        share = count / n
        limit = float(t["max_unparseable_share"])
        checks.append(
            Check(
                "unparseable values share",
                "schema",
                col,
                share,
                limit,
                "<=",
                share <= limit,
                detail=f"{count} rows",
            )
        )
    present = [c for c in REQUIRED[domain] if c in frame.columns]
    if len(present) < len(REQUIRED[domain]):
        return checks  # pandera would only repeat the missing column
    limit = float(t["max_invalid_row_share"])
    try:
        SCHEMAS[domain].validate(frame, lazy=True)
        checks.append(Check("pandera schema: invalid rows share", "pandera", None, 0.0, limit, "<=", True))
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases.copy()
        frame_level = fc["schema_context"].astype(str) == "DataFrameSchema"
        # a frame-level check lists each row once per column: name it by the column before its ':'
        fc["_column"] = np.where(
            frame_level, fc["check"].astype(str).str.split(":").str[0], fc["column"].astype(str)
        )
        for (col, check), g in fc.groupby(["_column", fc["check"].astype(str)], sort=True):
            rows = g["index"].dropna().unique()
            share = 1.0 if len(rows) == 0 else len(rows) / n
            cases = (
                g.loc[g["column"].astype(str) == col, "failure_case"]
                if col in frame.columns
                else g["failure_case"]
            )
            cases = cases if len(cases) else g["failure_case"]
            example = ["null" if pd.isna(v) else str(v) for v in cases.head(3)]
            detail = f"{len(rows)} rows, e.g. {example}" if len(rows) else f"column-level: {example}"
            column = col if col in frame.columns else None
            checks.append(
                Check(
                    f"pandera {check}", "pandera", column, share, limit, "<=", share <= limit, detail=detail
                )
            )
    return checks


def gate_frame(frame: pd.DataFrame, domain: str, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """The columns Evidently checks: the monitored features; for sensors, raw value and a per-sensor
    robust z-score against the reference (median and IQR), so a unit change in one sensor stands out."""
    if domain == "incidents":
        return incident_monitor_frame(frame)
    cols = [c for c in ("sensor_id", "kind") if c in frame.columns]
    out = (
        frame[cols].astype(object).where(frame[cols].notna(), None)
        if cols
        else pd.DataFrame(index=frame.index)
    )
    if "value" in frame.columns:
        value = pd.to_numeric(frame["value"], errors="coerce").astype(float)
        out["value"] = value
        base = reference if reference is not None else frame
        if {"sensor_id", "value"} <= set(base.columns) and "sensor_id" in frame.columns:
            g = pd.to_numeric(base["value"], errors="coerce").groupby(base["sensor_id"].astype(str))
            med, iqr = g.median(), (g.quantile(0.75) - g.quantile(0.25)).replace(0.0, 1.0)
            sid = frame["sensor_id"].astype(str)
            out["value_robust_z"] = (value - sid.map(med)) / sid.map(iqr)
    return out


def evidently_checks(
    reference: pd.DataFrame, current: pd.DataFrame, t: Mapping, snapshot_out: Path | None = None
) -> tuple[list[Check], dict[str, Any]]:
    """Evidently tests with our thresholds; measured values and pass/fail come from the Evidently run."""
    from evidently import Report  # slow import: only when the gate runs
    from evidently.metrics import (
        DriftedColumnsCount,
        MissingValueCount,
        OutListValueCount,
        OutRangeValueCount,
        RowCount,
        ValueDrift,
    )
    from evidently.tests import gte, lte

    cols = [c for c in reference.columns if c in current.columns and reference[c].notna().any()]
    numerical, categorical = split_columns(reference, cols)
    metrics: list[Any] = [RowCount(tests=[gte(int(t["min_rows"]))])]
    expect: dict[tuple[str, str | None], dict[str, Any]] = {("RowCount", None): {"name": "row count", "op": ">=",
                                                                                 "threshold": float(t["min_rows"])}}  # fmt: skip
    for col in cols:
        ref_missing = float(reference[col].isna().mean())
        limit = min(1.0, ref_missing + float(t["max_missing_share_increase"]))
        metrics.append(MissingValueCount(column=col, share_tests=[lte(limit)]))
        expect[("MissingValueCount", col)] = {"name": "missing share", "op": "<=", "threshold": limit,
                                              "detail": f"reference {ref_missing:.3f} + {t['max_missing_share_increase']}"}  # fmt: skip
    for col in categorical:
        seen = sorted(reference[col].dropna().astype(str).unique().tolist())
        metrics.append(
            OutListValueCount(column=col, values=seen, share_tests=[lte(float(t["max_new_category_share"]))])
        )
        expect[("OutListValueCount", col)] = {"name": "new categories share", "op": "<=",
                                              "threshold": float(t["max_new_category_share"]),
                                              "detail": f"{len(seen)} categories in reference"}  # fmt: skip
    for col in numerical:
        values = pd.to_numeric(reference[col], errors="coerce").dropna()
        lo, hi = float(values.min()), float(values.max())
        pad = float(t["range_margin"]) * (hi - lo if hi > lo else max(abs(hi), 1.0))
        left, right = lo - pad, hi + pad
        metrics.append(OutRangeValueCount(column=col, left=left, right=right,
                                          share_tests=[lte(float(t["max_out_of_range_share"]))]))  # fmt: skip
        expect[("OutRangeValueCount", col)] = {"name": "out-of-range share", "op": "<=",
                                               "threshold": float(t["max_out_of_range_share"]),
                                               "detail": f"range [{left:.4g}, {right:.4g}]"}  # fmt: skip
    critical = bool(t["drift_critical"])
    metrics.append(
        DriftedColumnsCount(
            columns=cols, share_tests=[lte(float(t["max_drifted_share"]), is_critical=critical)]
        )
    )
    expect[("DriftedColumnsCount", None)] = {"name": "drifted columns share", "op": "<=",
                                             "threshold": float(t["max_drifted_share"]), "critical": critical}  # fmt: skip
    metrics += [ValueDrift(column=c) for c in cols]  # which columns drifted, for the report (no test)
    report = Report(metrics, include_tests=False)
    ref_ds = evidently_dataset(reference, numerical, categorical)
    cur_ds = evidently_dataset(current, numerical, categorical)
    with warnings.catch_warnings():  # scipy's chi-square divides by a category's zero expected count
        warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
        snapshot = report.run(cur_ds, ref_ds)
    data = snapshot.dict()
    values: dict[tuple[str, str | None], Any] = {}
    drift_scores: dict[str, Any] = {}
    for m in data["metrics"]:
        cfg = m.get("config", {})
        kind = str(cfg.get("type", "")).rsplit(":", 1)[-1]
        values[(kind, cfg.get("column"))] = m["value"]
        if kind == "ValueDrift":
            drift_scores[cfg["column"]] = {"method": cfg.get("method"), "score": float(m["value"]),
                                           "threshold": cfg.get("threshold")}  # fmt: skip
    checks = []
    for test in data["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        key = (str(params.get("type", "")).rsplit(":", 1)[-1], params.get("column"))
        spec = expect.get(key)
        if spec is None:
            continue
        status = test.get("status")
        status = str(getattr(status, "value", status)).upper()
        value = values.get(key)
        measured = float(value["share"] if isinstance(value, dict) and key[0] != "RowCount" else
                         value["count"] if isinstance(value, dict) else value)  # fmt: skip
        detail = spec.get("detail", "")
        if key[0] == "DriftedColumnsCount":
            drifted = [c for c, s in drift_scores.items() if _is_drift(s)]
            detail = f"drifted: {drifted}" if drifted else "no column drifted"
        checks.append(
            Check(spec["name"], "evidently", key[1], measured, spec["threshold"], spec["op"], status == "SUCCESS",
                  critical=spec.get("critical", True), detail=detail)
        )  # fmt: skip
    if snapshot_out is not None:
        snapshot_out.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(snapshot_out / "evidently.html"))
        save_snapshot_json(snapshot, snapshot_out / "evidently.json")
    return checks, drift_scores


def _is_drift(score: Mapping[str, Any]) -> bool:
    """Evidently's drift rule for a ValueDrift result: p-value tests drift below, distances above."""
    method = str(score.get("method") or "").lower()
    p_value = any(k in method for k in ("p_value", "k-s", "chi-square", "z-test", "fisher", "anderson", "epps",
                                        "cramer", "t-test", "mann", "energy"))  # fmt: skip
    thr = score.get("threshold")
    if thr is None:
        return False
    return score["score"] < thr if p_value and "distance" not in method else score["score"] >= thr


def run_gate(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    domain: str,
    thresholds: Mapping[str, Any],
    *,
    unparseable: Mapping[str, int] | None = None,
    names: tuple[str, str] = ("reference", "current"),
    out_dir: Path | None = None,
) -> GateResult:
    """Every check of `current` against `reference` (frames already read and typed)."""
    started = time.perf_counter()
    result = GateResult(domain, names[0], names[1], len(reference), len(current), dict(thresholds))
    result.checks += schema_checks(current, domain, unparseable or {}, thresholds)
    ref_cols = gate_frame(reference, domain)
    cur_cols = gate_frame(current, domain, reference)
    ev_checks, drift = evidently_checks(ref_cols, cur_cols, thresholds, out_dir)
    result.checks += ev_checks
    result.seconds = round(time.perf_counter() - started, 2)
    result.drift = drift  # type: ignore[attr-defined]
    return result


# --- outputs ----------------------------------------------------------------------------------


def write_outputs(result: GateResult, out_dir: Path) -> dict[str, Path]:
    """DIR/quality.json and a self-contained DIR/quality.html table (failed and warned tests first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    data["drift"] = getattr(result, "drift", {})
    (out_dir / "quality.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    order = {"FAIL": 0, "WARN": 1, "PASS": 2}
    rows = sorted(data["checks"], key=lambda c: order[c["status"]])
    colour = {"FAIL": "#f8d7da", "WARN": "#fff3cd", "PASS": "#ffffff"}
    body = "\n".join(
        f'<tr style="background:{colour[c["status"]]}"><td><b>{c["status"]}</b></td><td>{html.escape(c["source"])}</td>'
        f"<td>{html.escape(c['name'])}</td><td>{html.escape(str(c['column'] or ''))}</td>"
        f"<td>{_fmt(c['measured'])}</td><td>{html.escape(c['op'])} {_fmt(c['threshold'])}</td>"
        f"<td>{html.escape(c['detail'])}</td></tr>"
        for c in rows
    )
    verdict = data["verdict"]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Quality gate: {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}</style>
</head><body><h1>Quality gate: {verdict}</h1>
<p>Current <code>{html.escape(result.current)}</code> ({result.rows_current:,} rows) against reference
<code>{html.escape(result.reference)}</code> ({result.rows_reference:,} rows), domain <b>{result.domain}</b>.
{data["n_failed"]} failed, {data["n_warnings"]} warnings, {data["n_checks"]} checks.
A check passes when <i>measured</i> satisfies the condition; thresholds come from <code>params.yaml</code>
(<code>quality:</code>). Evidently's own report: <a href="evidently.html">evidently.html</a>.</p>
<table><tr><th>status</th><th>source</th><th>test</th><th>column</th><th>measured</th><th>passes if</th><th>detail</th></tr>
{body}
</table></body></html>
"""
    (out_dir / "quality.html").write_text(page)
    return {"json": out_dir / "quality.json", "html": out_dir / "quality.html"}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: exit 0 when every critical check passes, 1 when one fails, 2 when an input cannot be read."""
    ap = argparse.ArgumentParser(prog="python -m ml.monitoring.quality", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--reference", required=True,
        help="reference file (.parquet, .csv or .json records), or a directory: its batches before the current one",
    )  # fmt: skip
    ap.add_argument("--current", required=True, help="file to check, or a directory: its newest batch file")
    ap.add_argument("--out", required=True, help="directory for quality.json and quality.html")
    ap.add_argument(
        "--domain", choices=sorted(SCHEMAS), default=None, help="default: inferred from the columns"
    )
    ap.add_argument("--params", default="params.yaml", help="params file with a `quality:` section")
    args = ap.parse_args(argv)
    params: dict = {}
    try:
        params = config.load_params(args.params) if Path(args.params).exists() else {}
        current_path = landing.newest_file(Path(args.current), args.domain)
        current, bad, domain = load(current_path, args.domain)
        if Path(args.reference).is_dir():
            reference, ref_name = load_earlier(Path(args.reference), current_path, domain)
        else:
            reference, _, _ = load(Path(args.reference), domain)
            ref_name = str(args.reference)
        thresholds = thresholds_from_params(params, domain)
    except (InputError, FileNotFoundError) as exc:  # FileNotFoundError: a directory without records files
        print(f"quality gate: cannot read input: {exc}", file=sys.stderr)
        alerts.report_outcome(params, "quality_gate_failed", args.domain or "unknown", False,
                              f"quality gate cannot read its input: {exc}", {"current": args.current})  # fmt: skip
        return 2
    out_dir = Path(args.out)
    result = run_gate(reference, current, domain, thresholds, unparseable=bad,
                      names=(ref_name, str(current_path)), out_dir=out_dir)  # fmt: skip
    paths = write_outputs(result, out_dir)
    print(result.summary())
    print(f"  -> {paths['json']}, {paths['html']}")
    details = {
        "failed": [f"{c.name} {c.column or ''}".strip() for c in result.failed],
        "report": str(paths["html"]),
    }
    head = result.summary().splitlines()[0]
    alerts.report_outcome(params, "quality_gate_failed", domain, result.passed, head, details)  # never raises
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
