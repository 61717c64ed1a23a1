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
