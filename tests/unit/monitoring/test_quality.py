"""The quality gate CLI: a corrupted file stops it with a non-zero exit naming the test, a good one passes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ml import config
from ml.config import ROOT
from ml.data.synth.common import TS_FORMAT
from ml.data.synth.sensors import make_sensors
from ml.monitoring import alerts, quality


@pytest.fixture(scope="module")
def readings(tmp_path_factory):
    """Three weeks of 4 sensors: the first two are the reference (parquet), the last a landing-style CSV."""
    frame, _ = make_sensors(n_sensors=4, days=21, seed=7, anomalies_per_sensor=0, recalibration=None)
    base = tmp_path_factory.mktemp("quality")
    reference = frame[frame["timestamp"] < "2024-01-15"].reset_index(drop=True)
    current = frame[frame["timestamp"] >= "2024-01-15"].reset_index(drop=True)
    reference.to_parquet(base / "reference.parquet", index=False)
    current.to_csv(base / "current.csv", index=False, date_format=TS_FORMAT)
    return base, current


def _gate(base, current_file, out):
    """Start the CLI as its own process (both gate runs overlap: each pays Evidently's slow import)."""
    cmd = [sys.executable, "-m", "ml.monitoring.quality", "--reference", str(base / "reference.parquet"),
           "--current", str(current_file), "--out", str(out), "--params", str(ROOT / "params.yaml")]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_gate_fails_on_a_corrupted_file_naming_the_test_and_passes_a_good_one(readings, tmp_path):
    base, current = readings
    bad = current.copy()
    rng = np.random.default_rng(0)
    bad.loc[rng.random(len(bad)) < 0.3, "value"] = np.nan  # 30% of readings lost
    cpu = bad["kind"] == "cpu_pct"
    bad.loc[cpu, "value"] = -bad.loc[cpu, "value"].abs()  # negative CPU: a broken reading
    bad.to_csv(tmp_path / "corrupted.csv", index=False, date_format=TS_FORMAT)

    runs = {"bad": _gate(base, tmp_path / "corrupted.csv", tmp_path / "bad"),
            "good": _gate(base, base / "current.csv", tmp_path / "good")}  # fmt: skip
    out = {k: p.communicate(timeout=300) for k, p in runs.items()}

    stdout, stderr = out["bad"]
    assert runs["bad"].returncode == 1, stdout + stderr
    assert "quality gate FAILED" in stdout
    assert "missing share [value]" in stdout and "negative reading" in stdout
    report = json.loads((tmp_path / "bad" / "quality.json").read_text())
    assert report["verdict"] == "FAIL"
    missing = next(c for c in report["failed"] if c["name"] == "missing share" and c["column"] == "value")
    assert 0.25 < missing["measured"] < 0.35 and missing["threshold"] == pytest.approx(0.05)
    assert "FAIL" in (tmp_path / "bad" / "quality.html").read_text()

    stdout, stderr = out["good"]
    assert runs["good"].returncode == 0, stdout + stderr
    assert "quality gate PASSED" in stdout
    assert json.loads((tmp_path / "good" / "quality.json").read_text())["n_failed"] == 0


def test_a_missing_column_fails_the_gate_in_process(readings, tmp_path, capsys):
    base, current = readings
    current.drop(columns="kind").to_csv(tmp_path / "nokind.csv", index=False, date_format=TS_FORMAT)
    code = quality.main(["--reference", str(base / "reference.parquet"), "--current", str(tmp_path / "nokind.csv"),
                         "--out", str(tmp_path / "out"), "--params", str(ROOT / "params.yaml")])  # fmt: skip
    assert code == 1
    assert "required column present [kind]" in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, b"not parquet at all"])
def test_unreadable_input_exits_2_naming_the_file(readings, tmp_path, capsys, content):
    base, _ = readings
    path = tmp_path / "broken.parquet"
    if content is not None:
        path.write_bytes(content)
    code = quality.main(["--reference", str(base / "reference.parquet"), "--current", str(path),
                         "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert str(path) in capsys.readouterr().err


def test_thresholds_come_from_params_with_domain_overrides():
    project = config.section("quality")
    params = {"quality": {"max_missing_share_increase": 0.1, "sensors": {"min_rows": 5}, "out": "x"}}
    t = quality.thresholds_from_params(params, "sensors")
    assert t["max_missing_share_increase"] == 0.1 and t["min_rows"] == 5
    assert "out" not in t and "sensors" not in t and "incidents" not in t
    incidents = quality.thresholds_from_params(params, "incidents")  # the project's incidents sub-section
    assert (
        incidents["min_rows"] == project["incidents"]["min_rows"]
        and incidents["max_missing_share_increase"] == 0.1
    )
    assert quality.thresholds_from_params({}, "sensors")["range_margin"] == project["range_margin"]
    # a domain may override any threshold, not only those params.yaml sets for it
    override = {"quality": {"sensors": {"max_drifted_share": 0.9}}}
    assert quality.thresholds_from_params(override, "sensors")["max_drifted_share"] == 0.9
    with pytest.raises(ValueError, match=r"quality.sensors has unknown keys \['max_nans'\]"):
        quality.thresholds_from_params({"quality": {"sensors": {"max_nans": 1}}}, "sensors")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['max_nans'\]"):
        quality.thresholds_from_params({"quality": {"max_nans": 1}}, "sensors")


def test_pandera_failures_are_counted_per_check():
    frame, _ = make_sensors(n_sensors=4, days=3, seed=0, anomalies_per_sensor=0, recalibration=None)
    frame = frame.copy()
    frame.loc[frame["kind"] == "memory_pct", "value"] = -1.0
    checks = quality.schema_checks(frame, "sensors", {}, quality.thresholds_from_params({}, "sensors"))
    failed = [c for c in checks if not c.passed]
    assert len(failed) == 1 and "negative reading" in failed[0].name
    assert failed[0].measured == pytest.approx((frame["kind"] == "memory_pct").mean())
    assert pd.notna(failed[0].column)


def test_a_batch_with_unseen_systems_fails_against_the_batches_before_it(tmp_path, capsys, alert_state):
    """The reference is the landing batches older than the checked one, never silver that already holds it."""
    from ml.data.synth.incidents import make_incidents  # only this test needs incidents

    final = make_incidents(n_incidents=900, months=3, seed=3)
    final = final.sort_values("opened_at", kind="stable").reset_index(drop=True)
    landing_dir = tmp_path / "incidents"
    landing_dir.mkdir()
    parts = [final.iloc[i * 300 : (i + 1) * 300] for i in range(3)]
    rng = np.random.default_rng(0)
    newest = parts[2].copy()
    unseen = rng.random(len(newest)) < 0.13
    newest.loc[unseen, "cmdb_ci"] = [f"new system {i % 7}" for i in range(int(unseen.sum()))]
    for name, part in zip(["20240201", "20240301", "20240401"], [*parts[:2], newest], strict=True):
        (landing_dir / f"incidents_{name}T0000.json").write_text(
            part.to_json(orient="records", date_format="iso")
        )
    code = quality.main(["--domain", "incidents", "--reference", str(landing_dir), "--current", str(landing_dir),
                         "--out", str(tmp_path / "out"), "--params", str(ROOT / "params.yaml")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert (
        "new categories share [cmdb_ci]" in printed
        and "2 batches before incidents_20240401T0000.json" in printed
    )
    failed = json.loads((tmp_path / "out" / "quality.json").read_text())["failed"]
    assert [c["column"] for c in failed if c["name"] == "new categories share"] == ["cmdb_ci"]
    assert failed[0]["measured"] == pytest.approx(unseen.mean(), abs=0.01)
    alert = alerts.AlertManager(alert_state).active()["quality_gate_failed:incidents"]  # fired by the gate
    assert "new categories share cmdb_ci" in alert["details"]["failed"]

    (landing_dir / "incidents_20240401T0000.json").write_text(
        parts[2].to_json(orient="records", date_format="iso")
    )
    assert quality.main(["--domain", "incidents", "--reference", str(landing_dir), "--current", str(landing_dir),
                         "--out", str(tmp_path / "ok"), "--params", str(ROOT / "params.yaml")]) == 0  # fmt: skip
    assert alerts.AlertManager(alert_state).active() == {}  # a pass clears it


def test_the_quality_gate_raises_its_alert_and_keeps_its_exit_code(tmp_path, monkeypatch, alert_state):
    args = ["--domain", "incidents", "--reference", str(tmp_path), "--current", str(tmp_path / "none"),
            "--out", str(tmp_path / "out"), "--params", str(ROOT / "params.yaml")]  # fmt: skip
    assert quality.main(args) == 2  # cannot read its input
    assert "quality_gate_failed:incidents" in alerts.AlertManager(alert_state).active()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(alerts.ENV_STATE, str(blocker / "state"))
    assert quality.main(args) == 2  # alerting fails: the gate's verdict stands
