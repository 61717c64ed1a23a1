"""The live monitoring job: drift against the served version's reference, incremental runs, live performance
once labels arrive, the report and the alerts it raises."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml.monitoring import alerts, job, live, reference
from ml.serving.schemas import incident_payload

CATEGORIES = ["Network", "Software", "Hardware", "Database", "Access"]
USUAL, SHIFTED = (0.3, 0.3, 0.2, 0.1, 0.1), (0.05, 0.05, 0.1, 0.4, 0.4)
SHA = "ab" * 32
NOW = "2024-03-04T00:10"  # three whole days of predictions (2024-03-01 .. 03) have ended


def incidents(n: int, day: str, seed: int, mix=USUAL, text: int = 60) -> pd.DataFrame:
    """Open-time incident records opened over one day (`mix`: category shares, `text`: mean characters)."""
    rng = np.random.default_rng(seed)
    opened = pd.Timestamp(day) + pd.to_timedelta(np.sort(rng.uniform(0, 86_000, n)), unit="s")
    return pd.DataFrame({
        "number": [f"INC{seed}-{i}" for i in range(n)],
        "opened_at": opened.astype("datetime64[ns]"),
        "caller_id": [f"user{i % 40}" for i in range(n)],
        "contact_type": rng.choice(["email", "phone", "self-service"], n),
        "location": rng.choice(["Paris", "Lyon", "Nice"], n),
        "impact": pd.array(rng.integers(1, 4, n), dtype="Int64"),
        "urgency": pd.array(rng.integers(1, 4, n), dtype="Int64"),
        "priority": pd.array(rng.integers(1, 5, n), dtype="Int64"),
        "category": rng.choice(CATEGORIES, n, p=mix),
        "subcategory": rng.choice(["vpn", "email", "laptop"], n),
        "cmdb_ci": rng.choice(["ci-1", "ci-2", "ci-3"], n),
        "assignment_group": rng.choice(["Service Desk", "Network Ops", "DBA"], n),
        "short_description": ["cannot connect"] * n,
        "description": ["x" * int(k) for k in rng.poisson(text, n)],
        "sla_target_hours": rng.choice([4.0, 8.0, 24.0], n),
    })  # fmt: skip


def export_model(models, name: str, version: str, ref: pd.DataFrame | None, metrics: dict) -> None:
    """An exported champion as ml.registry.export_model leaves it (manifest + reference/), without model bytes."""
    folder = models / name
    if ref is not None:
        reference.save_reference(
            ref.drop(columns="number", errors="ignore"), folder / reference.REFERENCE_DIR
        )
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"name": name, "version": version, "model_sha256": SHA, "metrics": metrics}
    (folder / live.MANIFEST).write_text(json.dumps(manifest))


def sla_answer(r: dict) -> dict:
    p = float(1 / (1 + np.exp(-(int(r["priority"]) - 2.5))))  # riskier with priority
    return {"number": r["number"], "breach_probability": p, "breach_predicted": p > 0.5}


def ttr_answer(r: dict) -> dict:
    p50 = 2.0 * int(r["priority"])
    return {"number": r["number"], "expected_hours": p50, "p10": p50 / 2, "p50": p50, "p90": p50 * 2}


def write_log(root, frame: pd.DataFrame, model: str = "incident-sla", version: str = "3", answer=sla_answer,
              endpoint: str = "/predict_sla", key: str = "incident") -> None:  # fmt: skip
    """Prediction-log parquet files as PredictionLog writes them, one record per incident at its opening time."""
    rows = [
        {"request_id": f"req-{r['number']}", "time": r["opened_at"], "endpoint": endpoint, "model_name": model,
         "model_version": version, "model_sha256": SHA, "item": 0,
         "input": json.dumps({key: incident_payload(r)}), "output": json.dumps(answer(r))}
        for r in frame.to_dict("records")
    ]  # fmt: skip
    log = pd.DataFrame(rows)
    for day, part in log.groupby(log["time"].dt.date):
        folder = root / model / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        part.to_parquet(folder / f"{len(list(folder.iterdir()))}.parquet", index=False)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """Folders, an exported incident-sla v3 with its reference, settings; no model is ever loaded."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'no-registry.db'}")

    def no_model(info, scorer):
        raise FileNotFoundError(f"no model bytes in this test ({info.name})")

    monkeypatch.setattr(live, "score_reference", no_model)
    models = tmp_path / "models"
    export_model(models, "incident-sla", "3", incidents(2000, "2024-01-01", seed=1), {"roc_auc": 0.8})
    cfg = job.settings_from_params(
        {"operations": {"min_rows": 100}},
        predictions=tmp_path / "predictions", state=tmp_path / "state", models=models,
        silver=tmp_path / "silver", report=tmp_path / "report",
    )  # fmt: skip
    return cfg


def alert_log(cfg) -> list[dict]:
    path = cfg.state / alerts.LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- drift ----------------------------------------------------------------------------------------------
def test_a_shifted_ticket_mix_raises_the_drift_alert(setup):
    for k, day in enumerate(["2024-03-01", "2024-03-02", "2024-03-03"]):
        write_log(setup.predictions, incidents(400, day, seed=10 + k, mix=SHIFTED, text=150))
    out = job.run(setup, now=NOW)
    assert out.ran and [(e["event"], e["key"]) for e in out.events] == [("fired", "drift:incident-sla")]
    v3 = out.live["incident-sla"]["versions"]["3"]
    assert v3["n"] == 1200 and len(v3["windows"]) == 3
    assert all(w["judged"] and w["new"] and w["rows"] == 400 for w in v3["windows"])
    assert {"category", "text_chars"} <= set(v3["drifted_features"])
    assert v3["input_drift"]["category"] > 0.25 and v3["reference"].endswith("reference")
    assert (
        v3["output_drift"]["available"] is False
        and "no training score distribution" in v3["output_drift"]["reason"]
    )
    assert v3["output_drift"]["live"]["breach_probability"]["n"] == 1200
    on_disk = json.loads((setup.state / job.LIVE_FILE).read_text())
    assert (
        on_disk == out.live
        and on_disk["until"] == "2024-03-04T00:00:00"
        and on_disk["since"] == "2024-03-01T00:00:00"
    )
    assert "drift:incident-sla" in alerts.AlertManager(setup.state).active()
    page = (setup.report / "index.html").read_text()
    assert "drift:incident-sla" in page and "<table>" in page


def test_an_unshifted_ticket_mix_raises_nothing(setup):
    for k, day in enumerate(["2024-03-01", "2024-03-02", "2024-03-03"]):
        write_log(setup.predictions, incidents(400, day, seed=20 + k))
    out = job.run(setup, now=NOW)
    v3 = out.live["incident-sla"]["versions"]["3"]
    assert all(w["judged"] for w in v3["windows"]) and v3["drifted_features"] == []
    assert max(v3["input_drift"].values()) < setup.psi_threshold
    assert out.events == [] and alerts.AlertManager(setup.state).active() == {}


def test_too_few_records_in_a_window_are_reported_not_judged(setup):
    write_log(setup.predictions, incidents(30, "2024-03-02", seed=5, mix=SHIFTED))
    write_log(setup.predictions, incidents(30, "2024-03-03", seed=6, mix=SHIFTED))
    out = job.run(setup, now=NOW)
    windows = out.live["incident-sla"]["versions"]["3"]["windows"]
    assert [w["judged"] for w in windows] == [False, False] and [w["n"] for w in windows] == [30, 30]
    assert "fewer than operations.min_rows" in windows[0]["note"] and out.events == []


def test_a_window_below_the_psi_noise_floor_is_not_judged(setup):
    """Enough records in all, but so few per feature that sampling alone would exceed the threshold."""
    cfg = job.settings_from_params({"operations": {"min_rows": 10}}, predictions=setup.predictions,
                                   state=setup.state, models=setup.models, silver=setup.silver, report=setup.report)  # fmt: skip
    write_log(cfg.predictions, incidents(40, "2024-03-03", seed=8, mix=SHIFTED))
    (w,) = job.run(cfg, now=NOW).live["incident-sla"]["versions"]["3"]["windows"]
    assert w["noise_floor"] >= cfg.psi_threshold and not w["judged"] and "noise floor" in w["note"]


# --- incremental ----------------------------------------------------------------------------------------
def test_a_second_run_without_new_records_does_nothing_and_says_why(setup, capsys):
    write_log(setup.predictions, incidents(200, "2024-03-02", seed=3))
    args = ["--predictions", str(setup.predictions), "--state", str(setup.state), "--models", str(setup.models),
            "--silver", str(setup.silver), "--report", str(setup.report), "--now", NOW]  # fmt: skip
    assert job.main(args) == 0
    before = {p.name: p.read_bytes() for p in setup.state.iterdir() if p.is_file()}
    capsys.readouterr()
    assert job.main(args) == 0
    assert "no new predictions since 2024-03-04T00:00:00" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in setup.state.iterdir() if p.is_file()} == before
    assert len((setup.state / job.RUNS_FILE).read_text().splitlines()) == 1


def test_the_next_run_reads_only_the_new_window_and_keeps_the_earlier_ones(setup):
    for k, day in enumerate(["2024-03-01", "2024-03-02"]):
        write_log(setup.predictions, incidents(300, day, seed=30 + k))
    first = job.run(setup, now="2024-03-03T00:10")
    assert first.live["incident-sla"]["versions"]["3"]["n"] == 600
    write_log(setup.predictions, incidents(300, "2024-03-03", seed=40))
    second = job.run(setup, now=NOW)
    v3 = second.live["incident-sla"]["versions"]["3"]
    assert second.live["since"] == "2024-03-03T00:00:00" and v3["n"] == 300
    assert [(w["start"][:10], w["new"]) for w in v3["windows"]] == [
        ("2024-03-01", False), ("2024-03-02", False), ("2024-03-03", True)
    ]  # fmt: skip
    state = json.loads((setup.state / job.STATE_FILE).read_text())
    assert state["until"] == "2024-03-04T00:00:00"
    assert state["models"]["incident-sla"]["last_record_time"].startswith("2024-03-03")
    assert len((setup.state / job.RUNS_FILE).read_text().splitlines()) == 2


def test_one_run_at_a_time(setup):
    from filelock import FileLock  # the job's own lock, held as another run would

    write_log(setup.predictions, incidents(50, "2024-03-02", seed=9))
    setup.state.mkdir(parents=True)
    with FileLock(str(setup.state / job.JOB_LOCK)):
        out = job.run(setup, now=NOW)
    assert (
        not out.ran and "another monitoring job" in out.message and not (setup.state / job.LIVE_FILE).exists()
    )
    assert job.run(setup, now=NOW).ran


def test_a_malformed_state_file_is_refused_naming_it(setup):
    setup.state.mkdir(parents=True)
    (setup.state / job.STATE_FILE).write_text('{"until": "yesterday-ish"}')
    with pytest.raises(ValueError, match="state.json: field 'until'"):
        job.run(setup, now=NOW)


# --- live performance -----------------------------------------------------------------------------------
def outcomes(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Silver rows with outcomes: breaches follow priority (the scores rank them), hours near 2 x priority."""
    rng = np.random.default_rng(seed)
    pri = frame["priority"].astype(int).to_numpy()
    hours = 2.0 * pri * np.exp(rng.normal(0, 0.4, len(frame)))
    return pd.DataFrame({
        "number": frame["number"], "opened_at": frame["opened_at"], "state": "Closed",
        "resolved_at": frame["opened_at"] + pd.to_timedelta(hours, unit="h"),
        "made_sla": pd.array(rng.uniform(size=len(frame)) > pri / 5, dtype="boolean"),
    })  # fmt: skip


def test_labels_arriving_produce_auc_mae_and_coverage(setup):
    export_model(setup.models, "incident-ttr", "2", None, {"coverage": 0.8})
    frame = pd.concat([incidents(200, d, seed=50 + k) for k, d in enumerate(["2024-03-02", "2024-03-03"])])
    write_log(setup.predictions, frame)
    write_log(
        setup.predictions,
        frame,
        model="incident-ttr",
        version="2",
        answer=ttr_answer,
        endpoint="/predict_ttr",
    )
    first = job.run(setup, now=NOW)
    perf = first.live["incident-sla"]["versions"]["3"]["performance"]
    assert perf["available"] is False and "no labels yet" in perf["reason"] and perf["n_labelled"] == 0
    setup.silver.mkdir(parents=True)
    labelled = frame.iloc[: len(frame) * 3 // 4]  # the rest is still open
    outcomes(labelled, seed=1).to_parquet(setup.silver / "incidents.parquet")
    second = job.run(setup, now=NOW)  # no new predictions, but labels arrived
    assert second.ran and "new labels" in second.message
    sla = second.live["incident-sla"]["versions"]["3"]
    perf = sla["performance"]
    assert (
        perf["available"]
        and perf["n_labelled"] == perf["n"] == len(labelled)
        and perf["n_predictions"] == 400
    )
    assert 0.6 < perf["roc_auc"] <= 1.0 and perf["training_roc_auc"] == 0.8
    assert perf["auc_drop"] == pytest.approx(0.8 - perf["roc_auc"])
    assert sla["n"] == 0 and [w["new"] for w in sla["windows"]] == [False, False]  # drift is kept from run 1
    ttr = second.live["incident-ttr"]["versions"]["2"]
    assert ttr["reference"].startswith("no reference/") and ttr["windows"][0]["judged"] is False
    tp = ttr["performance"]
    assert tp["n_labelled"] == len(labelled) and tp["nominal_coverage"] == pytest.approx(0.8)
    assert 0.5 < tp["coverage"] <= 1.0 and 0 < tp["mae"] < 5 and tp["mae_unit"] == "hours"
    assert job.run(setup, now=NOW).ran is False  # labels unchanged now: nothing to do


def test_forecast_mape_from_served_forecasts_and_actual_readings(setup):
    hourly = pd.date_range("2024-02-01", "2024-03-02", freq="1h", inclusive="left")
    level = 50 + 10 * np.sin(np.arange(len(hourly)) * 2 * np.pi / 24)
    readings = pd.DataFrame({"sensor_id": "cpu-01", "timestamp": hourly, "value": level})
    export_model(setup.models, "sensor-forecast", "5", readings.iloc[:-48], {})
    history = [
        {"timestamp": t.isoformat(), "value": v} for t, v in zip(hourly[-48:], level[-48:], strict=True)
    ]
    times = pd.date_range("2024-03-02T00:00", periods=24, freq="1h")
    actual = 50 + 10 * np.sin(np.arange(24) * 2 * np.pi / 24)
    answer = {"sensor_id": "cpu-01", "horizon": 24, "model": "ets", "forecast": [
        {"timestamp": t.isoformat(), "yhat": 1.1 * y, "lo80": 0.9 * y, "hi80": 1.05 * y, "lo95": None, "hi95": None}
        for t, y in zip(times, actual, strict=True)]}  # fmt: skip
    folder = setup.predictions / "sensor-forecast" / "date=2024-03-02"
    folder.mkdir(parents=True)
    pd.DataFrame([{"request_id": "r1", "time": pd.Timestamp("2024-03-02T00:30"), "endpoint": "/forecast",
                   "model_name": "sensor-forecast", "model_version": "5", "model_sha256": SHA, "item": 0,
                   "input": json.dumps({"item": {"sensor_id": "cpu-01", "horizon": 24, "history": history}}),
                   "output": json.dumps(answer)}]).to_parquet(folder / "a.parquet", index=False)  # fmt: skip
    setup.silver.mkdir(parents=True)
    pd.DataFrame(
        {"sensor_id": "cpu-01", "kind": "cpu_pct", "timestamp": times[:20], "value": actual[:20]}
    ).to_parquet(setup.silver / "sensor_readings.parquet")  # the last 4 hours have not been read yet
    out = job.run(setup, now=NOW)
    perf = out.live["sensor-forecast"]["versions"]["5"]["performance"]
    assert perf["n_labelled"] == 20 and perf["n_predictions"] == 24
    assert (
        perf["mape"] == pytest.approx(10.0) and perf["coverage80"] == 1.0
    )  # every reading inside [lo80, hi80]
    assert out.live["forecast_mape"] == {"sensor-forecast": {"5": pytest.approx(10.0)}}
    window = out.live["sensor-forecast"]["versions"]["5"]["windows"][0]
    assert window["rows"] == 48 and window["judged"] is False  # the history readings, fewer than min_rows
    assert set(window["input_drift"]) == {"cpu-01"} and "error" not in window


# --- output drift ---------------------------------------------------------------------------------------
def test_output_drift_against_the_versions_scores_on_its_reference(setup, monkeypatch):
    calls = []

    def scored(info, scorer):  # the model's scores on its reference: low risk mostly
        calls.append((info.name, info.version, scorer))
        return pd.DataFrame({"breach_probability": np.random.default_rng(0).beta(1, 8, len(info.reference))})

    monkeypatch.setattr(live, "score_reference", scored)
    for k, day in enumerate(["2024-03-01", "2024-03-02", "2024-03-03"]):
        write_log(
            setup.predictions, incidents(300, day, seed=60 + k)
        )  # live scores follow priority: much higher
    out = job.run(setup, now=NOW)
    v3 = out.live["incident-sla"]["versions"]["3"]
    assert (
        v3["output_drift"]["available"] and "scored on its reference sample" in v3["output_drift"]["source"]
    )
    assert v3["output_drift"]["psi"]["breach_probability"] > 1.0
    assert v3["output_drift"]["drifted_fields"] == ["breach_probability"]
    assert all(w["output_drift"]["breach_probability"] > 1.0 for w in v3["windows"])
    assert [e["key"] for e in out.events] == ["output_drift:incident-sla"]
    assert calls == [("incident-sla", "3", "sla")]
    assert list(
        (setup.state / "output_reference" / "incident-sla").glob("v3-*.parquet")
    )  # computed once per version


def test_the_report_escapes_what_the_log_holds(setup):
    write_log(setup.predictions, incidents(5, "2024-03-02", seed=7), model="x<script>alert(1)")
    out = job.run(setup, now=NOW)
    page = (setup.report / "index.html").read_text()
    assert "<script>" not in page and "x&lt;script&gt;" in page
    name = "x<script>alert(1)"
    assert "not a model the job knows" in out.live[name]["versions"]["3"]["windows"][0]["error"]
