"""Notebook records: synthetic results in metrics/<stage>.json, real-data results apart and never erased."""

from __future__ import annotations

import json

import pandas as pd

from ml.reports.notebooks import last_real_results, real_path, write_csv, write_record


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


def test_tables_written_for_spreadsheets_cannot_carry_formulas(tmp_path):
    frame = pd.DataFrame(
        {
            "text": ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "plain", None],
            "n": [-1.5, 2, 3, 4, 5, 6],
        },
        index=pd.Index(["=cmd", "a", "b", "c", "d", "e"], name="cluster"),
    )
    path = write_csv(frame, tmp_path / "out" / "t.csv")
    back = pd.read_csv(path, index_col=0)
    assert list(back["text"].iloc[:5]) == ['\'=HYPERLINK("http://x")', "'+1+1", "'-2+3", "'@SUM(A1)", "plain"]
    assert back.index[0] == "'=cmd" and list(back["n"]) == [-1.5, 2, 3, 4, 5, 6]  # numbers untouched
