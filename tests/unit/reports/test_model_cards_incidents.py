"""The incident model cards quote the whole-log results from the evaluation CLI's metrics file."""

from __future__ import annotations

import json

from ml.reports import model_cards

RESULT = {
    "event_log": "/x/incident_event_log.csv.gz",
    "incidents": 100,
    "split": {"by": "incident count", "cutoff": "2016-05-11 00:29:00"},
    "sla": {"model": {"roc_auc": 0.80}, "hgb": {"roc_auc": 0.82}},
}


def test_cards_quote_the_whole_log_and_say_where_the_model_loses(tmp_path):
    (tmp_path / "uci_full.json").write_text(json.dumps(RESULT))
    sentences = model_cards.incident_result_sentences("sla", tmp_path)
    assert "incident_event_log.csv.gz" in sentences[0] and "hgb 0.820" in sentences[0]
    assert "loses to hgb (0.820)" in sentences[1]
    assert model_cards.incident_result_sentences("ttr", tmp_path) == []
    assert model_cards.incident_result_sentences("sla", tmp_path / "absent") == []


def test_the_triage_card_says_what_the_second_stage_changes(tmp_path):
    group = {"model": {"accuracy": 0.88, "top3_accuracy": 0.95, "macro_f1": 0.68,
                       "first_stage": {"accuracy": 0.87, "top3_accuracy": 0.95, "macro_f1": 0.62}},
             "hgb": {"accuracy": 0.85, "top3_accuracy": 0.93, "macro_f1": 0.56}}  # fmt: skip
    (tmp_path / "uci_full.json").write_text(json.dumps({**RESULT, "group": group}))
    said = model_cards.incident_result_sentences("group", tmp_path)
    assert (
        len(said) == 3
        and "raises top-1 from 0.870 to 0.880, keeps top-3 at 0.950, raises macro-F1" in said[2]
    )
    assert len(model_cards.incident_result_sentences("sla", tmp_path)) == 2  # not on the other cards
