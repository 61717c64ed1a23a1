"""The index's first table: each model's headline on synthetic and real data beside the best baseline."""

from __future__ import annotations

import json

from ml.reports import summary


def test_the_table_reads_cards_and_metrics_and_says_who_wins(tmp_path):
    cards, metrics = tmp_path / "cards", tmp_path / "metrics"
    cards.mkdir()
    metrics.mkdir()
    (cards / "incident-sla.json").write_text(json.dumps({
        "name": "incident-sla", "notebook": "04_sla_breach", "version": "3", "gates_passed": True,
        "primary_metrics": {"roc_auc": 0.80}, "baseline_metrics": {"logistic_roc_auc": 0.77, "majority_roc_auc": 0.5,
                                                                   "roc_auc_margin_vs_logistic": 0.03}}))  # fmt: skip
    (cards / "incident-clusters.json").write_text(json.dumps({
        "name": "incident-clusters", "version": "1", "gates_passed": False, "primary_metrics": {"purity": 0.9}}))  # fmt: skip
    (metrics / "uci_full.json").write_text(json.dumps({"incidents": 24918, "sla": {
        "model": {"roc_auc": 0.70}, "hgb": {"roc_auc": 0.79}, "logistic": {"roc_auc": 0.78}}}))  # fmt: skip
    rows = {r["name"]: r for r in summary.summary_rows(cards, metrics)}
    sla = rows["incident-sla"]
    assert (sla["synthetic"], sla["baseline"], sla["baseline_name"]) == (0.80, 0.77, "logistic")
    assert (sla["real"], sla["real_baseline"], sla["real_baseline_name"]) == (0.70, 0.79, "hgb")
    page = summary.summary_html(list(rows.values()), lambda n: f"{n}.html", lambda nb: f"{nb}.html")
    assert "0.8 ✅" in page and "0.7 ❌" in page  # wins on synthetic, loses on the real log
    assert "incident-clusters.html" in page and "FAILED" in page and "–" in page  # no real data: a dash
