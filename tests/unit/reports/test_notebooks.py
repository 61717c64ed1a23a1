"""Notebook records: synthetic results in metrics/<stage>.json, real-data results apart and never erased."""

from __future__ import annotations

import json

from ml.reports.notebooks import last_real_results, real_path, write_record


def test_real_results_go_to_their_own_file_and_a_run_without_them_keeps_it(tmp_path, capsys):
    metrics = tmp_path / "metrics" / "sla.json"
    printed = write_record(metrics, {"auc": 0.8}, real={"real_sample": {"model": {"auc": 0.6}}})
    assert json.loads(metrics.read_text()) == {"auc": 0.8}
    assert real_path(metrics) == tmp_path / "metrics" / "real" / "sla.json"
    assert json.loads(real_path(metrics).read_text()) == {"real_sample": {"model": {"auc": 0.6}}}
    assert (
        json.loads(capsys.readouterr().out)
        == printed
        == {"auc": 0.8, "real": {"real_sample": {"model": {"auc": 0.6}}}}
    )
    write_record(metrics, {"auc": 0.81}, real={})  # a run without ../shared/data
    assert json.loads(metrics.read_text()) == {"auc": 0.81}
    assert json.loads(real_path(metrics).read_text()) == {"real_sample": {"model": {"auc": 0.6}}}
    shown = last_real_results(metrics)
    assert shown.loc["real_sample | model | auc"].item() == 0.6


def test_no_real_results_recorded_shows_nothing(tmp_path):
    assert last_real_results(tmp_path / "metrics" / "ttr.json") is None
