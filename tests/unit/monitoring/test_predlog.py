"""The prediction log: one record per answered item, written in batches, never blocking, pruned by age."""

from __future__ import annotations

import json
from datetime import date

from ml.monitoring import predlog


def answer(n: int) -> tuple[dict, dict]:
    request = {
        "top_k": 3,
        "incidents": [{"number": f"INC{i}", "short_description": "vpn down"} for i in range(n)],
    }
    response = {"model_name": "incident-triage", "model_version": "4", "model_sha256": "ab" * 32,
                "model_source": "registry", "results": [{"number": f"INC{i}", "group": "Network"} for i in range(n)]}  # fmt: skip
    return request, response


def test_each_answered_item_becomes_one_record_with_its_model_and_request_id(tmp_path):
    plog = predlog.PredictionLog(tmp_path, flush_seconds=0.1)
    plog.record("/triage", *answer(3), request_id="req-1")
    plog.record("/check_drift", {"domain": "sensors", "readings": []},
                {"model_name": "sensor-anomaly", "model_version": "2", "model_sha256": "cd" * 32, "features": []},
                request_id="req-2")  # fmt: skip
    plog.flush()
    triage = predlog.read_log(tmp_path, "incident-triage")
    assert list(triage["item"]) == [0, 1, 2] and set(triage["request_id"]) == {"req-1"}
    assert (triage["model_version"] == "4").all() and (triage["endpoint"] == "/triage").all()
    first = predlog.parsed(triage, "input")[0]
    assert first == {"top_k": 3, "incident": {"number": "INC0", "short_description": "vpn down"}}
    assert predlog.parsed(triage, "output")[2] == {"number": "INC2", "group": "Network"}
    drift = predlog.read_log(tmp_path, "sensor-anomaly")
    assert len(drift) == 1 and json.loads(drift["output"][0]) == {"features": []}  # one record: no item list
    assert list((tmp_path / "incident-triage").glob("date=*/*.parquet"))
    assert plog.written == 4 and plog.dropped == 0


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    plog = predlog.PredictionLog(tmp_path, max_queue=2, start=False)
    for i in range(5):
        plog.record("/triage", *answer(1), request_id=f"r{i}")
    assert plog.dropped == 3


def test_off_records_nothing(tmp_path):
    plog = predlog.PredictionLog(None)
    plog.record("/triage", *answer(1), request_id="r")
    plog.flush()
    assert not plog.enabled and plog.dropped == 0 and not list(tmp_path.iterdir())


def test_folders_older_than_the_retention_are_pruned(tmp_path):
    for day in ("2026-10-01", "2026-11-25", "2026-11-30"):
        (tmp_path / "incident-sla" / f"date={day}").mkdir(parents=True)
    gone = predlog.prune(tmp_path, retention_days=30, today=date(2026, 11, 30))
    assert [p.name for p in gone] == ["date=2026-10-01"]
    assert sorted(p.name for p in (tmp_path / "incident-sla").iterdir()) == [
        "date=2026-11-25",
        "date=2026-11-30",
    ]
