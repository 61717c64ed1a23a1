"""The file-backed Prometheus series: drift, forecast error and last run from live.json, alert state, ingest
counters; re-read when a file changes, and a broken file never fails the scrape."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from ml.data import ingest
from ml.serving import telemetry

LIVE = {
    "schema": 1,
    "run_at": "2024-03-04T00:10:00Z",
    "forecast_mape": {"sensor-forecast": {"3": 4.25}},
    "incident-sla": {
        "n": 10,
        "versions": {
            "2": {"input_drift": {"category": 0.31, "priority": 0.02}, "drifted_features": ["category"]},
            "1": {"input_drift": {"category": float("nan")}, "drifted_features": []},
        },
    },
}


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_series_come_from_the_jobs_files_and_follow_their_changes(tmp_path):
    state, root = tmp_path / "state", tmp_path / "data"
    state.mkdir()
    series = telemetry.FileSeries(state, root)
    got = samples(series.text())
    assert got[("opslab_alerts_active", ())] == 0  # nothing yet: no alert, no drift series
    assert not any(name == "opslab_drift_psi" for name, _ in got)
    (state / "live.json").write_text(json.dumps(LIVE))
    (state / "alert_state.json").write_text(
        json.dumps({"active": {"drift:incident-sla": {"severity": "warning", "message": "m"}}})
    )
    ingest.count_received(root, "incidents", "incidents", "b1.json", refused="bad file")
    got = samples(series.text())
    psi = ("opslab_drift_psi", (("feature", "category"), ("model", "incident-sla"), ("version", "2")))
    assert got[psi] == 0.31
    assert (
        "opslab_drift_psi",
        (("feature", "category"), ("model", "incident-sla"), ("version", "1")),
    ) not in got
    assert got[("opslab_drifted_features", (("model", "incident-sla"), ("version", "2")))] == 1
    assert got[("opslab_forecast_mape_percent", (("model", "sensor-forecast"), ("version", "3")))] == 4.25
    assert got[("opslab_monitoring_last_run_timestamp_seconds", ())] == 1709511000
    assert got[("opslab_alert_active", (("alert", "drift:incident-sla"), ("severity", "warning")))] == 1
    assert got[("opslab_alerts_active", ())] == 1
    assert got[("opslab_ingest_files_refused_total", (("domain", "incidents"),))] == 1
    (state / "alert_state.json").write_text(json.dumps({"active": {}}))  # cleared
    assert samples(series.text())[("opslab_alerts_active", ())] == 0


def test_a_broken_file_is_counted_and_never_fails_the_scrape(tmp_path):
    (tmp_path / "live.json").write_text('{"run_at": ')  # half written
    series = telemetry.FileSeries(tmp_path, tmp_path)
    got = samples(series.text())
    assert got[("opslab_telemetry_read_errors_total", ())] == 1 and got[("opslab_alerts_active", ())] == 0


def test_observe_counts_items_per_endpoint_and_version():
    from prometheus_client import REGISTRY

    before = (
        REGISTRY.get_sample_value(
            "opslab_predictions_total", {"endpoint": "/t", "model": "m", "version": "7"}
        )
        or 0.0
    )
    telemetry.observe("/t", "m", "7", 3, 0.002)
    telemetry.observe("/t", "m", "7", 2, 0.004)
    labels = {"endpoint": "/t", "model": "m", "version": "7"}
    assert REGISTRY.get_sample_value("opslab_predictions_total", labels) == before + 5
    assert REGISTRY.get_sample_value("opslab_prediction_latency_seconds_count", labels) >= 2
