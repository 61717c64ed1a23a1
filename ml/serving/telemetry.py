"""opslab's Prometheus series on `/metrics`, besides BentoML's own request metrics.

Counted by the workers (prometheus_client in BentoML's multiprocess mode, so every worker's counts add up):
- `opslab_predictions_total{endpoint, model, version}`: items answered (readings, incidents, sources, ...);
- `opslab_prediction_latency_seconds{endpoint, model, version}`: time in the model call, per request.

Read at scrape time from what the operations jobs leave on disk (every worker reads the same files, so any
worker answers the same):
- `opslab_drift_psi{model, version, feature}` and `opslab_drifted_features{model, version}`: input drift of
  the last monitoring run (`<operations.state>/live.json`, `ml.monitoring.job`);
- `opslab_forecast_mape_percent{model, version}`: MAPE of served forecasts once the actuals arrived;
- `opslab_monitoring_last_run_timestamp_seconds`;
- `opslab_alert_active{alert, severity}` (1 per firing alert) and `opslab_alerts_active`
  (`<operations.state>/alert_state.json`, `ml.monitoring.alerts`);
- `opslab_ingest_rows_total{domain, kind}` (kind: in, loaded, quarantined, duplicate),
  `opslab_ingest_files_total{domain}` and `opslab_ingest_files_refused_total{domain}`
  (`<ingest.root>/ingest_counts.jsonl`, `ml.data.ingest`).
A missing or unreadable file gives no series of its own (and `opslab_telemetry_read_errors` counts it);
it never fails the scrape. Paths: params.yaml `operations.state` (env OPSLAB_ALERT_STATE) and `ingest.root`
(env OPSLAB_INGEST_ROOT).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ml import config

ENV_STATE = "OPSLAB_ALERT_STATE"  # = ml.monitoring.alerts.ENV_STATE (not imported: the job's deps stay out)
ENV_INGEST_ROOT = "OPSLAB_INGEST_ROOT"
LIVE_FILE, ALERT_FILE = "live.json", "alert_state.json"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
INGEST_KINDS = {"in": "rows_in", "loaded": "rows_loaded", "quarantined": "rows_quarantined",
                "duplicate": "rows_duplicate"}  # fmt: skip

_lock = threading.Lock()
_series: tuple[Any, Any] | None = None


def _counters():
    """The two worker-side series, created on first use: inside a BentoML worker that is after BentoML set
    up prometheus_client's multiprocess directory, so the counts of all workers are summed on /metrics."""
    global _series
    if _series is None:
        with _lock:
            if _series is None:
                from prometheus_client import Counter, Histogram  # after BentoML set multiprocess mode

                labels = ("endpoint", "model", "version")
                _series = (
                    Counter("opslab_predictions", "items answered, by endpoint and model version", labels),
                    Histogram(
                        "opslab_prediction_latency_seconds",
                        "time in the model call per request, by endpoint and model version",
                        labels,
                        buckets=LATENCY_BUCKETS,
                    ),
                )
    return _series


def observe(endpoint: str, model: str, version: str, items: int, seconds: float) -> None:
    """Count one answered request (`items` predictions) and its model-call time. Never raises."""
    try:
        predictions, latency = _counters()
        predictions.labels(endpoint, model, version).inc(items)
        latency.labels(endpoint, model, version).observe(seconds)
    except Exception:  # noqa: BLE001 - telemetry must not fail a request
        pass


# --- series read from the operations jobs' files ------------------------------------------------------
def _paths() -> tuple[Path, Path]:
    params = config.load_params() if (config.ROOT / "params.yaml").exists() else {}
    state = os.environ.get(ENV_STATE) or (params.get("operations") or {}).get("state", "data/monitoring")
    ingest_root = os.environ.get(ENV_INGEST_ROOT) or (params.get("ingest") or {}).get("root", "data")
    return config.resolve(state), config.resolve(ingest_root)


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _line(name: str, labels: Mapping[str, Any], value: float) -> str:
    inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
    number = repr(float(value))  # the shortest exact form (`:g` would round a timestamp to 6 digits)
    return f"{name}{{{inner}}} {number}" if inner else f"{name} {number}"


def _head(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _models(live: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for name, entry in live.items():
        if isinstance(entry, Mapping) and isinstance(entry.get("versions"), Mapping):
            yield name, entry


def live_lines(live: Mapping[str, Any]) -> list[str]:
    """Drift PSI per model, version and feature; drifted-feature counts; forecast MAPE; last run time."""
    psi, drifted, mape = [], [], []
    for model, entry in _models(live):
        for version, v in entry["versions"].items():
            if not isinstance(v, Mapping):
                continue
            for feature, value in (v.get("input_drift") or {}).items():
                if _finite(value):
                    psi.append(
                        _line(
                            "opslab_drift_psi",
                            {"model": model, "version": version, "feature": feature},
                            value,
                        )
                    )
            if isinstance(v.get("drifted_features"), list):
                labels = {"model": model, "version": version}
                drifted.append(_line("opslab_drifted_features", labels, len(v["drifted_features"])))
    for model, versions in (live.get("forecast_mape") or {}).items():
        for version, value in (versions or {}).items():
            if _finite(value):
                mape.append(
                    _line("opslab_forecast_mape_percent", {"model": model, "version": version}, value)
                )
    out = []
    if psi:
        out += (
            _head("opslab_drift_psi", "gauge", "PSI of a monitored input feature in the last monitoring run")
            + psi
        )
    if drifted:
        out += (
            _head("opslab_drifted_features", "gauge", "input features above the PSI threshold, last run")
            + drifted
        )
    out += _head("opslab_forecast_mape_percent", "gauge", "MAPE (%) of served forecasts against the actuals")
    out += mape
    try:
        ran = datetime.fromisoformat(str(live["run_at"]).replace("Z", "+00:00")).timestamp()
        out += _head(
            "opslab_monitoring_last_run_timestamp_seconds", "gauge", "when the monitoring job last ran"
        )
        out.append(_line("opslab_monitoring_last_run_timestamp_seconds", {}, ran))
    except (KeyError, ValueError, TypeError):
        pass
    return out


def alert_lines(state: Mapping[str, Any]) -> list[str]:
    """One `opslab_alert_active` series per firing alert, and their count."""
    active = state.get("active") if isinstance(state.get("active"), Mapping) else {}
    out = _head("opslab_alert_active", "gauge", "1 for each alert that is firing (ml.monitoring.alerts)")
    for key, alert in sorted(active.items()):
        severity = alert.get("severity", "") if isinstance(alert, Mapping) else ""
        out.append(_line("opslab_alert_active", {"alert": key, "severity": severity}, 1))
    out += _head("opslab_alerts_active", "gauge", "alerts firing now")
    out.append(_line("opslab_alerts_active", {}, len(active)))
    return out


def ingest_lines(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Rows received / loaded / quarantined / duplicate, files received and refused, per domain."""
    rows = _head("opslab_ingest_rows_total", "counter", "rows in received files, by domain and outcome")
    files = _head("opslab_ingest_files_total", "counter", "files received by the ingest, by domain")
    refused = _head("opslab_ingest_files_refused_total", "counter", "files refused whole, by domain")
    for domain, c in sorted(counts.items()):
        for kind, key in INGEST_KINDS.items():
            rows.append(_line("opslab_ingest_rows_total", {"domain": domain, "kind": kind}, c.get(key, 0)))
        files.append(_line("opslab_ingest_files_total", {"domain": domain}, c.get("files", 0)))
        refused.append(
            _line("opslab_ingest_files_refused_total", {"domain": domain}, c.get("files_refused", 0))
        )
    return rows + files + refused


class FileSeries:
    """The file-backed series, re-read only when a file changed (mtime and size)."""

    def __init__(self, state_dir: Path | None = None, ingest_root: Path | None = None):
        if state_dir is None or ingest_root is None:
            default_state, default_root = _paths()
            state_dir, ingest_root = state_dir or default_state, ingest_root or default_root
        self.state_dir, self.ingest_root = Path(state_dir), Path(ingest_root)
        self._cache: dict[Path, tuple[tuple[int, int], list[str]]] = {}
        self.errors = 0

    def _cached(self, path: Path, render) -> list[str]:
        try:
            st = path.stat()
        except OSError:
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit and hit[0] == stamp:
            return hit[1]
        try:
            lines = render(path)
        except Exception:  # noqa: BLE001 - a half-written or foreign file: no series, never a failed scrape
            self.errors += 1
            return hit[1] if hit else []
        self._cache[path] = (stamp, lines)
        return lines

    def text(self) -> str:
        from ml.data.ingest import COUNTS, read_counts  # pandera & co load only when /metrics is first read

        lines = self._cached(self.state_dir / LIVE_FILE, lambda p: live_lines(json.loads(p.read_text())))
        alerts = self._cached(self.state_dir / ALERT_FILE, lambda p: alert_lines(json.loads(p.read_text())))
        lines += alerts or alert_lines({})  # no alert state yet: none firing
        lines += self._cached(self.ingest_root / COUNTS, lambda p: ingest_lines(read_counts(p.parent)))
        lines += _head("opslab_telemetry_read_errors", "counter", "operations files that could not be read")
        lines.append(_line("opslab_telemetry_read_errors", {}, self.errors))
        return "\n".join(lines) + "\n"
