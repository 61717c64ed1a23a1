"""The live monitoring job: the prediction log since the last run -> drift, live performance, alerts.

    python -m ml.monitoring.job [--params params.yaml] [--predictions DIR] [--state DIR] [--models DIR]
    make monitor-live

Each run reads the records the service logged (`ml.monitoring.predlog`) in the whole windows (params.yaml
`operations.window`, aligned to the epoch, processed once they ended `operations.settle` ago) after the last
processed one (`<state>/state.json`: `until`, per model the last record time and its recent windows). Per
model and version it measures input drift with the /check_drift code (`drift.check_drift`, PSI per feature,
`monitoring.psi_threshold` / `monitoring.bins`) against the version's saved reference, output drift of the
logged scores against the version's own scores on that reference, and live performance over the last
`operations.lookback` of predictions whose labels have arrived in silver. It writes `<state>/live.json`
(atomically), appends it to `<state>/runs.jsonl`, writes `<operations.report>/index.html`, then raises and
clears alerts (`ml.monitoring.alerts`). With no new window of predictions and no change in the silver label
tables it does nothing and says so (exit 0); so does a run that finds another one going (`<state>/.job.lock`).

live.json (stable: Prometheus gauges and the retrain policy read it; None where a value cannot be computed)::

    {
      "schema": 1,
      "run_at": "2024-03-04T00:10:00Z",   # when the job ran (UTC)
      "since": "2024-03-01T00:00:00",     # start of the records read this run (naive UTC, like the log)
      "until": "2024-03-04T00:00:00",     # end (exclusive); the next run starts here
      "window": "1D",
      "forecast_mape": {"sensor-forecast": {"3": 4.2}},   # = versions.<v>.performance.mape of forecasters (%)
      "<model name>": {                    # one entry per model with records this run or windows kept from
                                           # earlier runs (every top-level key whose value holds "versions")
        "n": 1200,                         # records read this run, all versions
        "last_record_time": "2024-03-03T23:59:58",
        "versions": {
          "<version>": {
            "n": 1200,                     # records of this version read this run (0: kept from earlier runs)
            "model_sha256": "…",           # as logged by the service
            "reference": "models/incident-sla/reference",   # the drift reference used, or why there is none
            "windows": [                   # the last operations.keep_windows windows, oldest first
              {"start": "…", "end": "…", "new": true,   # new: read this run (false: kept from an earlier run)
               "n": 400,                   # log records in the window
               "rows": 380,                # records compared (one per incident number / sensor reading)
               "judged": true,             # compared with a reference, rows >= operations.min_rows and the
                                           # noise floor below monitoring.psi_threshold; else "note" says why not
               "input_drift": {"category": 0.31, …},  # PSI per monitored feature (sensors: per sensor)
               "drifted_features": ["category"],      # PSI > monitoring.psi_threshold (as /check_drift)
               "noise_floor": 0.05,        # PSI expected from sampling alone at these sizes
               "output_drift": {"breach_probability": 0.02},   # PSI per monitored score ({} without a reference)
               "drifted_outputs": [],
               "note": "…",                # only when compared but not judged: why
               "error": "…"}               # only when the records could not be compared
            ],
            "input_drift": {…}, "drifted_features": […], "noise_floor": 0.01,   # over all records of this run
            "output_drift": {"available": true, "source": "v3 scored on its reference sample (5000 rows)",
                             "psi": {"breach_probability": 0.02}, "drifted_fields": [],
                             "live": {"breach_probability": {"n", "mean", "p10", "p50", "p90"}}},
                            # available false: "reason" says why (e.g. no training score distribution)
            "performance": {"available": true, "labels": "data/silver/incidents.parquet",
                            "lookback": "28D",             # predictions of the last operations.lookback
                            "n": 310, "n_labelled": 310,   # predictions whose label has arrived (n == n_labelled)
                            "n_predictions": 900,          # distinct predictions (incidents, forecast points)
                            # incident-sla: roc_auc, brier, mean_score, positive_rate, training_roc_auc (the
                            #   version's roc_auc metric: exported manifest or registry run), auc_drop (training - live)
                            # incident-ttr: mae (hours, of p50; mae_unit), coverage (P10-P90), mean_label,
                            #   nominal_coverage (max - min of ttr.quantiles)
                            # sensor-forecast: mape (%), mae, coverage80
                            # available false: "reason"
                            }
          }
        }
      }
    }
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from ml import config
from ml.monitoring import alerts as alerting
from ml.monitoring import live as measure
from ml.monitoring import predlog

STATE_FILE, LIVE_FILE, RUNS_FILE, JOB_LOCK = "state.json", "live.json", "runs.jsonl", ".job.lock"
SCHEMA = 1
NOT_PREDICTIONS = ("/check_drift",)  # endpoints logged as one record per request, not per prediction
LABEL_COLUMNS = {
    "incidents": ["number", "opened_at", "resolved_at", "made_sla"],
    "sensor_readings": ["sensor_id", "timestamp", "value"],
}


@dataclass(frozen=True)
class Settings:
    predictions: Path
    state: Path
    report: Path
    models: Path
    silver: Path
    window: str
    settle: str
    min_rows: int
    keep_windows: int
    lookback: str
    psi_threshold: float
    bins: int
    max_cells: int | None
    nominal_coverage: float
    rules: dict


def settings_from_params(params: Mapping[str, Any], **paths: str | os.PathLike | None) -> Settings:
    """The job's settings: params (`operations`, `monitoring`, `serving`, `ttr`, `features`) merged over the
    project's params.yaml; `paths` (predictions, state, report, models, silver) win when given."""
    sec = lambda name: config.section(name, params.get(name) or {})  # noqa: E731
    ops, mon = sec("operations"), sec("monitoring")
    quantiles = [float(q) for q in sec("ttr")["quantiles"]]
    defaults = {
        "predictions": ops["predictions"],
        "state": ops["state"],
        "report": ops["report"],
        "models": os.environ.get("OPSLAB_MODELS_DIR") or config.MODELS,
        "silver": sec("features")["silver"],
    }
    chosen = {k: config.resolve(paths.get(k) or v) for k, v in defaults.items()}
    for key in ("window", "settle", "lookback"):
        try:
            pd.Timedelta(ops[key])
        except ValueError as exc:
            raise ValueError(f"params operations.{key}: {ops[key]!r} is not a duration ({exc})") from exc
    return Settings(
        **chosen,
        window=str(ops["window"]),
        settle=str(ops["settle"]),
        min_rows=int(ops["min_rows"]),
        keep_windows=int(ops["keep_windows"]),
        lookback=str(ops["lookback"]),
        psi_threshold=float(mon["psi_threshold"]),
        bins=int(mon["bins"]),
        max_cells=sec("serving").get("max_drift_grid"),
        nominal_coverage=max(quantiles) - min(quantiles),
        rules=dict(ops["alerts"]),
    )


# --- state ---------------------------------------------------------------------------------------------
def iso(t: Any) -> str | None:
    return None if t is None or pd.isna(t) else pd.Timestamp(t).isoformat()


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_state(state_dir: Path) -> dict[str, Any]:
    """`<state>/state.json` ({} before the first run); a malformed file is refused naming the field."""
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); fix it or remove it to start over") from exc
    if not isinstance(state, dict) or not isinstance(state.get("models", {}), dict):
        raise ValueError(f"{path}: field 'models' must be an object of models by name")
    try:
        pd.Timestamp(state["until"]) if state.get("until") else None
    except ValueError as exc:
        raise ValueError(f"{path}: field 'until' is not a time: {state.get('until')!r}") from exc
    return state


def label_fingerprint(silver: Path) -> dict[str, list[int] | None]:
    """(mtime, size) of each silver label table: a change means labels may have arrived."""
    out: dict[str, list[int] | None] = {}
    for table in LABEL_COLUMNS:
        p = Path(silver) / f"{table}.parquet"
        out[table] = [p.stat().st_mtime_ns, p.stat().st_size] if p.is_file() else None
    return out


def label_loader(silver: Path):
    """`labels(table)` -> (the silver table's label columns or None, its path or why not), read once."""
    cache: dict[str, tuple[pd.DataFrame | None, str]] = {}

    def labels(table: str) -> tuple[pd.DataFrame | None, str]:
        if table not in cache:
            path = Path(silver) / f"{table}.parquet"
            if not path.is_file():
                cache[table] = (None, f"{path} does not exist")
            else:
                frame = pd.read_parquet(path)
                missing = [c for c in LABEL_COLUMNS[table] if c not in frame.columns]
                if missing:
                    raise ValueError(f"{path}: lacks label column(s) {missing}")
                cache[table] = (frame[LABEL_COLUMNS[table]], str(path))
        return cache[table]

    return labels


def predictions(root: Path, model: str, since: Any, until: pd.Timestamp) -> pd.DataFrame:
    """One model's logged predictions in [since, until), without per-request records (/check_drift)."""
    frame = predlog.read_log(root, model, since=since)
    keep = (frame["time"] < until) & ~frame["endpoint"].isin(NOT_PREDICTIONS)
    frame = frame[keep].copy()
    frame["model_version"] = frame["model_version"].astype(str)
    return frame.reset_index(drop=True)


# --- one version ------------------------------------------------------------------------------------------
def window_report(
    name: str,
    part: pd.DataFrame,
    info: measure.VersionInfo | None,
    ref_out: pd.DataFrame | None,
    cfg: Settings,
) -> dict[str, Any]:
    """Input and output drift of one window's (or one run's) records of a version."""
    out: dict[str, Any] = {"n": int(len(part)), "rows": 0, "judged": False}
    if name not in measure.MODELS:
        return {
            **out,
            "input_drift": {},
            "drifted_features": [],
            "error": f"{name}: not a model the job knows",
        }
    records = measure.input_records(name, part)
    out["rows"] = int(len(records))
    if info is None or info.reference is None:
        out.update(
            input_drift={},
            drifted_features=[],
            error=f"no drift reference: {info.reference_note if info else '?'}",
        )
    elif records.empty:
        out.update(input_drift={}, drifted_features=[], error="no input records in the logged requests")
    else:
        domain = measure.MODELS[name].domain
        out.update(measure.input_drift(domain, info.reference, records, threshold=cfg.psi_threshold,
                                       bins=cfg.bins, max_cells=cfg.max_cells))  # fmt: skip
        floor = out.get("noise_floor")
        if "error" in out:
            pass
        elif len(records) < cfg.min_rows:
            out["note"] = f"{len(records)} records, fewer than operations.min_rows {cfg.min_rows}: not judged"
        elif floor is not None and floor >= cfg.psi_threshold:
            out["note"] = (f"PSI noise floor {floor:.3f} >= threshold {cfg.psi_threshold:g} at these sizes (too few "
                           "records per feature, e.g. per sensor): not judged; a longer operations.window helps")  # fmt: skip
        else:
            out["judged"] = True
    out["output_drift"], out["drifted_outputs"] = {}, []
    if ref_out is not None:
        got = measure.output_drift(
            ref_out, measure.output_values(name, part), threshold=cfg.psi_threshold, bins=cfg.bins
        )
        out["output_drift"], out["drifted_outputs"] = got["psi"], got["drifted_fields"]
    return out


def version_report(
    name: str,
    version: str,
    new: pd.DataFrame,
    recent: pd.DataFrame,
    carried: list[dict],
    cfg: Settings,
    labels,
    until: pd.Timestamp,
) -> dict[str, Any] | None:
    """live.json's entry of one version: this run's windows after the kept ones, drift over the run's
    records, live performance over `recent` (its predictions in the lookback). None once nothing is recent."""
    info = measure.version_info(cfg.models, name, version) if name in measure.MODELS else None
    ref_out, out_note = (None, "a model the monitoring job does not know")
    if info is not None:
        ref_out, out_note = measure.training_outputs(info, cfg.state / "output_reference")
    windows = []
    if len(new):
        starts = new["time"].dt.floor(pd.Timedelta(cfg.window))
        for start, part in new.groupby(starts, sort=True):
            end = start + pd.Timedelta(cfg.window)
            windows.append({"start": iso(start), "end": iso(end), "new": True,
                            **window_report(name, part, info, ref_out, cfg)})  # fmt: skip
    oldest = until - pd.Timedelta(cfg.lookback)
    kept = [{**w, "new": False} for w in carried if pd.Timestamp(w["end"]) > oldest]
    windows = (kept + windows)[-cfg.keep_windows :] if cfg.keep_windows > 0 else []
    if not windows and not len(new) and not len(recent):
        return None
    overall = window_report(name, new, info, ref_out, cfg) if len(new) else {}
    spec = measure.MODELS.get(name)
    output: dict[str, Any] = {"available": ref_out is not None}
    output.update({"source": out_note} if ref_out is not None else {"reason": out_note})
    if ref_out is not None and len(new):
        got = measure.output_drift(
            ref_out, measure.output_values(name, new), threshold=cfg.psi_threshold, bins=cfg.bins
        )
        output.update(psi=got["psi"], drifted_fields=got["drifted_fields"])
    if spec is not None and spec.outputs and len(new):
        values = measure.output_values(name, new)
        output["live"] = {f: measure.summary(values[f]) for f in spec.outputs}
    perf = (
        measure.performance(name, recent, labels, info.metrics if info else {}, cfg.nominal_coverage)
        if name in measure.MODELS and len(recent)
        else {"available": False, "reason": "no predictions in the lookback", "n": 0, "n_labelled": 0}
    )
    if perf.get("available"):
        perf["lookback"] = cfg.lookback
    logged_sha = str(new["model_sha256"].iloc[-1]) if len(new) else None
    return {
        "n": int(len(new)),
        "model_sha256": logged_sha,
        "reference": info.reference_note if info else None,
        "windows": windows,
        "input_drift": overall.get("input_drift", {}),
        "drifted_features": overall.get("drifted_features", []),
        "noise_floor": overall.get("noise_floor"),
        "output_drift": output,
        "performance": perf,
    }


# --- the run --------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    ran: bool
    message: str
    live: dict | None = None
    events: list | None = None


def run(cfg: Settings, now: Any = None, manager: alerting.AlertManager | None = None) -> Outcome:
    """One incremental run (see the module docstring); `now` (naive UTC) for backfills and tests. A run
    that finds another one going (its lock `<state>/.job.lock`) does nothing and says so."""
    cfg.state.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cfg.state / JOB_LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return Outcome(False, f"another monitoring job holds {lock.lock_file}: nothing to do")
    try:
        return _run(cfg, now, manager)
    finally:
        lock.release()


def _run(cfg: Settings, now: Any, manager: alerting.AlertManager | None) -> Outcome:
    state = read_state(cfg.state)
    now = pd.Timestamp(now if now is not None else datetime.now(UTC))
    now = now.tz_convert("UTC").tz_localize(None) if now.tzinfo is not None else now  # the log's naive UTC
    until = (now - pd.Timedelta(cfg.settle)).floor(pd.Timedelta(cfg.window))
    since = pd.Timestamp(state["until"]) if state.get("until") else None
    fingerprint = label_fingerprint(cfg.silver)
    carried = state.get("models") or {}
    models = (
        sorted(p.name for p in cfg.predictions.glob("*") if p.is_dir()) if cfg.predictions.is_dir() else []
    )
    new = {}
    if since is None or until > since:
        for name in models:
            frame = predictions(cfg.predictions, name, since, until)
            if len(frame):
                new[name] = frame
    labels_changed = bool(carried) and fingerprint != state.get("labels")
    if not new and not labels_changed:
        if since is None:
            return Outcome(False, f"no predictions in {cfg.predictions} before {iso(until)}: nothing to do")
        return Outcome(False, f"no new predictions since {iso(since)} (windows end {iso(until)}) and no new "
                              f"labels in {cfg.silver}: nothing to do")  # fmt: skip
    labels = label_loader(cfg.silver)
    first = min((f["time"].min() for f in new.values()), default=until)
    live: dict[str, Any] = {
        "schema": SCHEMA,
        "run_at": alerting.now_iso(),
        "since": iso(since if since is not None else first.floor(pd.Timedelta(cfg.window))),
        "until": iso(until),
        "window": cfg.window,
        "forecast_mape": {},
    }
    next_models: dict[str, Any] = {}
    for name in sorted(set(new) | set(carried)):
        frame = new.get(name, pd.DataFrame(columns=[*predlog.COLUMNS]))
        recent = predictions(cfg.predictions, name, until - pd.Timedelta(cfg.lookback), until)
        old = (carried.get(name) or {}).get("versions") or {}
        versions = sorted(set(frame["model_version"].astype(str)) | set(old), key=_version_order)
        entry_versions = {}
        for v in versions:
            rep = version_report(name, v, frame[frame["model_version"].astype(str) == v],
                                 recent[recent["model_version"] == v], (old.get(v) or {}).get("windows") or [],
                                 cfg, labels, until)  # fmt: skip
            if rep is not None:
                entry_versions[v] = rep
                mape = rep["performance"].get("mape") if rep["performance"].get("available") else None
                if mape is not None:  # only forecasts are judged by MAPE
                    live["forecast_mape"].setdefault(name, {})[v] = mape
        if not entry_versions:
            continue
        last = iso(frame["time"].max()) if len(frame) else (carried.get(name) or {}).get("last_record_time")
        live[name] = {"n": int(len(frame)), "last_record_time": last, "versions": entry_versions}
        next_models[name] = {
            "last_record_time": last,
            "versions": {
                v: {"windows": [{k: x for k, x in w.items() if k != "new"} for w in r["windows"]]}
                for v, r in entry_versions.items()
            },  # fmt: skip
        }
    live = measure.clean(live)
    atomic_write(cfg.state / LIVE_FILE, json.dumps(live, indent=2, allow_nan=False) + "\n")
    with open(cfg.state / RUNS_FILE, "a") as fh:
        fh.write(json.dumps(live, allow_nan=False) + "\n")
    manager = manager or alerting.AlertManager(
        cfg.state,
        os.environ.get(alerting.ENV_WEBHOOK) or None,
        webhook_timeout=cfg.rules["webhook_timeout"],
        lock_timeout=cfg.rules["lock_timeout"],
    )
    events = manager.update(alerting.evaluate(live, cfg.rules), scope=set(alerting.MONITORING_KINDS))
    write_report(cfg.report / "index.html", live, manager.active(), cfg)
    new_state = {
        "until": iso(until),
        "updated_at": live["run_at"],
        "labels": fingerprint,
        "models": next_models,
    }
    atomic_write(cfg.state / STATE_FILE, json.dumps(measure.clean(new_state), indent=2) + "\n")
    n = sum(len(f) for f in new.values())
    why = f"{n} new prediction(s)" if n else "new labels"
    return Outcome(
        True, f"{why}, {live['since']} .. {live['until']}: {len(next_models)} model(s)", live, events
    )


def _version_order(v: str) -> tuple[int, str]:
    return (int(v), v) if v.isdigit() else (10**9, v)


# --- the HTML report ---------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)


def _psi_cell(values: Mapping[str, Any], n: int = 4) -> str:
    top = sorted(((k, v) for k, v in (values or {}).items() if v is not None), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{html.escape(k)} {v:.3f}" for k, v in top)


def write_report(path: Path, live: Mapping[str, Any], active: Mapping[str, dict], cfg: Settings) -> Path:
    """A plain HTML page of live.json: active alerts, then per model and version drift and performance."""
    e = lambda v: html.escape(_fmt(v))  # noqa: E731
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>opslab live monitoring</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-size:13px}.hot{background:#f8d7da}"
        "</style></head><body><h1>Live monitoring</h1>",
        f"<p>Predictions from <code>{e(live['since'])}</code> to <code>{e(live['until'])}</code> (UTC), "
        f"windows of {e(live['window'])}, run at {e(live['run_at'])}. PSI above {cfg.psi_threshold:g} marks a "
        f"drifted feature; a window is judged with at least {cfg.min_rows} records and a PSI noise floor "
        f"below that threshold. Built from "
        f"<code>{e(cfg.state / LIVE_FILE)}</code>: it reflects production traffic.</p>",
        "<h2>Active alerts</h2>",
    ]
    if active:
        parts.append("<table><tr><th>key</th><th>severity</th><th>since</th><th>message</th></tr>")
        parts += [f"<tr class='hot'><td>{e(k)}</td><td>{e(a.get('severity'))}</td><td>{e(a.get('since'))}</td>"
                  f"<td>{e(a.get('message'))}</td></tr>" for k, a in sorted(active.items())]  # fmt: skip
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    for name, entry in live.items():
        if not isinstance(entry, Mapping) or "versions" not in entry:
            continue
        parts.append(f"<h2>{e(name)}</h2>")
        for v, rep in entry["versions"].items():
            perf, out = rep.get("performance") or {}, rep.get("output_drift") or {}
            shown = {
                k: x for k, x in perf.items() if k not in ("available", "labels") and not isinstance(x, dict)
            }
            perf_text = ", ".join(f"{k} {_fmt(x)}" for k, x in shown.items())
            parts.append(
                f"<h3>v{e(v)}: {rep.get('n', 0)} new record(s)</h3><p>Reference: {e(rep.get('reference'))}<br>"
                f"Input drift this run: {_psi_cell(rep.get('input_drift'))}<br>Output drift: "
                + (_psi_cell(out.get("psi")) or "-" if out.get("available") else e(out.get("reason")))
                + f"<br>Performance: {html.escape(perf_text) if perf.get('available') else e(perf.get('reason'))}</p>"
            )
            parts.append("<table><tr><th>window start</th><th>end</th><th>records</th><th>compared</th>"
                         "<th>judged</th><th>drifted features</th><th>largest PSI</th><th>output PSI</th></tr>")  # fmt: skip
            for w in reversed(rep.get("windows") or []):
                hot = " class='hot'" if w.get("drifted_features") else ""
                note = e(w.get("error")) if w.get("error") else _psi_cell(w.get("input_drift"))
                note += f"<br><i>{e(w['note'])}</i>" if w.get("note") else ""
                parts.append(
                    f"<tr{hot}><td>{e(w.get('start'))}</td><td>{e(w.get('end'))}</td><td>{e(w.get('n'))}</td>"
                    f"<td>{e(w.get('rows'))}</td><td>{'yes' if w.get('judged') else 'no'}</td>"
                    f"<td>{e(', '.join(w.get('drifted_features') or []))}</td><td>{note}</td>"
                    f"<td>{_psi_cell(w.get('output_drift'))}</td></tr>"
                )
            parts.append("</table>")
    parts.append("</body></html>")
    atomic_write(path, "\n".join(parts) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.monitoring.job", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="params file (operations, monitoring sections)")
    ap.add_argument("--predictions", help="the prediction log (default: operations.predictions)")
    ap.add_argument("--state", help="state, live.json and alerts (default: operations.state)")
    ap.add_argument("--models", help="exported models (default: env OPSLAB_MODELS_DIR, else models/)")
    ap.add_argument("--silver", help="silver tables with the labels (default: features.silver)")
    ap.add_argument("--report", help="folder of the HTML report (default: operations.report)")
    ap.add_argument("--now", help="run as if it were this UTC time (backfills, tests)")
    args = ap.parse_args(argv)
    try:
        params = config.load_params(config.resolve(args.params))
        cfg = settings_from_params(params, predictions=args.predictions, state=args.state,
                                   models=args.models, silver=args.silver, report=args.report)  # fmt: skip
        outcome = run(cfg, now=args.now)
    except (ValueError, OSError) as exc:
        print(f"monitoring job: {exc}", file=sys.stderr)
        return 2
    print(outcome.message)
    if outcome.ran:
        print(f"  -> {cfg.state / LIVE_FILE}, {cfg.report / 'index.html'}")
        for ev in outcome.events or []:
            print(f"  alert {ev['event']}: {ev['key']}: {ev['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
