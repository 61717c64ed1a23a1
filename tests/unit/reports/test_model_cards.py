"""Model cards and the runs page come from the registry: version, sha256, gates, training data, rollback."""

from __future__ import annotations

import json

from ml import registry
from ml.reports import model_cards, report
from ml.sensors import anomaly
from ml.testing.models import SMALL_ANOMALY_PARAMS as PARAMS
from ml.testing.models import small_series


def test_cards_carry_the_registered_version_sha256_gates_and_training_data(store):
    series = small_series()
    pipe = anomaly.fit_detector(series, PARAMS)
    gates = registry.gates_from_params([{"metric": "event_f1", "op": ">=", "threshold": 0.1}])
    training = registry.describe_training(series, "timestamp")
    first = registry.log_and_register("sensor-anomaly", pipe, params={"anomaly": PARAMS}, metrics={"event_f1": 0.5},
                                      gates=gates, export_dir=store / "models", training_data=training)  # fmt: skip
    second = registry.log_and_register("sensor-anomaly", pipe, params={"anomaly": {**PARAMS, "seed": 9}},
                                       metrics={"event_f1": 0.05}, gates=gates, export_dir=store / "models")  # fmt: skip
    assert first.promoted and not second.promoted

    written = model_cards.write_cards(store / "cards")
    card = json.loads((store / "cards" / "sensor-anomaly.json").read_text())
    md = written[0].read_text()
    assert card["version"] == first.version and card["alias"] == "champion"  # the champion, not the newest
    assert card["model_sha256"] == first.model_sha256 and first.model_sha256 in md
    assert card["training_data"]["rows"] == str(len(series)) and card["training_data"]["from"].startswith(
        "2024-01-01"
    )
    assert any("event_f1=0.5 >= 0.1 passed" in g for g in card["gates"])
    assert "make rollback MODEL=sensor-anomaly" in md and card["known_failure_cases"]

    runs = model_cards.runs_comparison()
    assert "## sensor-anomaly" in runs and "anomaly.seed" in runs  # the one param that differs
    page = report.markdown_page(
        written[0], store / "cards" / "sensor-anomaly.html", "card", store / "index.html"
    )
    assert first.model_sha256 in page.read_text() and "href='../index.html'" in page.read_text()


HOSTILE = "v` <img src=y onerror=alert(3)> | <script>alert(4)</script>"


def test_params_and_tags_cannot_inject_html_into_the_rendered_card(store):
    pipe = anomaly.fit_detector(small_series(), PARAMS)
    registry.log_and_register("sensor-anomaly", pipe, params={"anomaly": {**PARAMS, "note": HOSTILE}},
                              metrics={"event_f1": 0.5}, gates=[], export_dir=store / "models",
                              training_data={"rows": "10", "source": HOSTILE})  # fmt: skip
    md = model_cards.write_cards(store / "cards")[0]
    (store / "runs.md").write_text(model_cards.runs_comparison())
    for page in (md, store / "runs.md"):
        out = report.markdown_page(page, page.with_suffix(".html"), "card", store / "index.html")
        text = out.read_text()
        assert "<img" not in text and "<script" not in text
    card = md.with_suffix(".html").read_text()
    assert "&lt;img src=y onerror=alert(3)&gt;" in card  # shown, not run


def test_a_value_stays_one_code_span_whatever_backticks_it_holds():
    assert model_cards.md_code("a`b") == "``a`b``"
    assert model_cards.md_code("`x`") == "`` `x` ``"
    assert model_cards.md_code("a|b") == "`a\\|b`"
