"""The evaluation CLI (`python -m ml.incidents evaluate`): split by count, HGB beside every baseline; the
open-incident scorer's contract when a model is missing."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from ml.config import ROOT
from ml.data.synth.incidents import make_incidents
from ml.features import add_group_load
from ml.incidents import datasets, evaluate, scoring

_TREES = {"max_iter": 20, "learning_rate": 0.2}
FAST = {
    "sla": {"max_iter": 40, "history_model": {"model": _TREES, "plain": _TREES}},
    "ttr": {"max_iter": 40, "history_model": {"model": _TREES, "plain": _TREES}},
    "triage": {"history_model": {"model": {"max_iter": 10}, "plain": {"max_iter": 10}}},
}


def test_cli_refuses_a_missing_file_with_a_readable_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "ml.incidents", "evaluate", "--event-log", str(tmp_path / "nope.csv"),
         "--out", str(tmp_path / "m.json")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2 and "nope.csv" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "m.json").exists()


def test_cli_names_the_column_a_bad_event_log_lacks(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("number,incident_state\nINC1,New\n")
    run = subprocess.run(
        [sys.executable, "-m", "ml.incidents", "evaluate", "--event-log", str(bad), "--out", str(tmp_path / "m.json")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2 and "bad.csv" in run.stderr and "opened_at" in run.stderr


def test_evaluate_incidents_splits_by_count_and_reports_hgb_beside_the_baselines():
    incidents = add_group_load(make_incidents(n_incidents=1500, seed=4))
    out = evaluate.evaluate_incidents(incidents, FAST, test_fraction=0.25)
    cutoff = pd.Timestamp(out["split"]["cutoff"])
    assert out["split"]["by"] == "incident count"
    assert out["split"]["train_incidents"] + out["split"]["test_incidents"] == len(incidents)
    assert out["split"]["train_incidents"] == int(len(incidents) * 0.75)
    assert (incidents["opened_at"] >= cutoff).sum() == out["split"]["test_incidents"]
    assert out["split"]["test_still_open"] > 0 and out["ttr"]["model"]["n_censored"] > 0  # open ones stay
    assert out["sla"]["majority"]["roc_auc"] == 0.5 and 0 < out["sla"]["model"]["roc_auc"] <= 1
    assert set(out["sla"]) == {"model", "hgb", "logistic", "majority"}
    assert set(out["ttr"]) == {"model", "hgb", "priority_baseline"}
    assert 0 < out["ttr"]["model"]["coverage"] <= 1 and out["ttr"]["model"]["median_ae_p50_hours"] >= 0
    assert set(out["group"]) == {"model", "hgb", "majority", "lookup_rule"}
    assert out["group"]["model"]["top3_accuracy"] >= out["group"]["model"]["accuracy"]
    first = out["group"]["model"]["first_stage"]  # the same fit before re-ranking: what the second stage buys
    assert (
        set(first) == {"accuracy", "top3_accuracy", "macro_f1"} and "first_stage" not in out["group"]["hgb"]
    )
    said = evaluate.second_stage_sentence(out)
    assert f"from {first['top3_accuracy']:.3f} to {out['group']['model']['top3_accuracy']:.3f}" in said
    assert evaluate.second_stage_sentence({"group": {"model": {"accuracy": 0.5}}}) == ""
    assert isinstance(out["losses"], list)
    dated = evaluate.evaluate_incidents(incidents, FAST, cutoff=cutoff, registered=True)
    assert all("registered" in dated[s] for s in ("sla", "ttr", "group"))
    assert (
        dated["split"]["by"] == "date" and dated["split"]["test_incidents"] == out["split"]["test_incidents"]
    )


def test_scorer_leaves_a_missing_model_empty_and_says_why():
    incidents = make_incidents(n_incidents=800, seed=2)
    scores = scoring.score_open(incidents, {"incident-sla": "not scored: no champion"})
    is_open = incidents["resolved_at"].isna() & incidents["made_sla"].isna()
    assert len(scores) == is_open.sum() > 0
    assert (
        set(scores["sla_status"]) == {"not scored: no champion"} and scores["sla_model_version"].isna().all()
    )
    assert "p_breach" not in scores and scores["ttr_status"].str.startswith("not scored").all()


@pytest.mark.realdata
def test_cli_on_the_real_sample_writes_every_section(shared_data, tmp_path):
    log = shared_data / "incidents_uci_sample" / "incident_event_log_sample.csv"
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps(FAST))  # JSON is YAML
    out = tmp_path / "metrics.json"
    run = subprocess.run(
        [sys.executable, "-m", "ml.incidents", "evaluate", "--event-log", str(log), "--out", str(out),
         "--params", str(params)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["incidents"] == 3000
    assert 0.5 < result["sla"]["model"]["roc_auc"] <= 1
    assert result["ttr"]["model"]["n"] > 100 and result["seconds"]["total"] > 0
    assert set(result["group"]) == {"model", "hgb", "majority", "lookup_rule"}
    assert result["group"]["model"]["accuracy"] > result["group"]["majority"]["accuracy"]
    assert (
        result["split"]["by"] == "incident count" and result["split"]["train_incidents"] == 2399
    )  # 2,400 less a tie at the cut-off
    assert "cut-off" in run.stderr and "censored" in run.stderr
    assert len(datasets.load_event_log(log, max_incidents=100)) == 100
