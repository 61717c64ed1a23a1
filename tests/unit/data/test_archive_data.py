"""The archive domain's data layer: the generator's promised properties, its landing batches, the silver schema's
business rules (bad rows quarantined and named), the real-log CSV contract, and the gold daily grid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.config import load_params
from ml.data import ingest, schemas, sources
from ml.data.gold import archive_grid, build_gold
from ml.data.synth import export
from ml.data.synth.archive import SAVINGS_RATIO, archive_batches, calendar_factor, make_archive

HERE = Path(__file__).parent
SAMPLE = HERE / "archive_log_sample.csv"
HYPO = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SMALL = dict(n_sources=4, days=60, start="2024-11-15", policy_changes=2)


@HYPO
@given(
    seed=st.integers(0, 2**16),
    n_sources=st.integers(1, 5),
    days=st.integers(1, 90),
    changes=st.integers(0, 1),
)
def test_generator_shares_sum_to_one_and_nothing_is_negative(seed, n_sources, days, changes):
    activity, log = make_archive(
        seed=seed, n_sources=n_sources, days=days, policy_changes=min(changes, n_sources)
    )
    shares = activity[schemas.ARCHIVE_SHARE_COLUMNS]
    assert ((shares >= 0) & (shares <= 1)).all().all()
    assert np.allclose(shares.sum(axis=1), 1.0, atol=schemas.SHARE_SUM_TOLERANCE)
    numbers = [
        "total_files",
        "avg_file_size_mb",
        "files_archived",
        "archived_gb",
        "saved_gb",
        "archive_frequency_per_day",
    ]
    assert (activity[numbers] >= 0).all().all() and (activity["retention_days"] > 0).all()
    assert (activity["saved_gb"] <= activity["archived_gb"]).all()
    assert len(activity) == n_sources * days and not activity.duplicated(schemas.ARCHIVE_KEY).any()
    assert len(log) == min(changes, n_sources)


@HYPO
@given(seed=st.integers(0, 2**16))
def test_generator_is_deterministic_per_seed(seed):
    a, log_a = make_archive(seed=seed, n_sources=3, days=40, policy_changes=1)
    b, log_b = make_archive(seed=seed, n_sources=3, days=40, policy_changes=1)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(log_a, log_b)
    other, _ = make_archive(seed=seed + 1, n_sources=3, days=40, policy_changes=1)
    assert not np.allclose(a["archived_gb"], other["archived_gb"])


def test_generator_meets_the_silver_schema_and_its_calendar_effects_show():
    activity, log = make_archive(seed=3, n_sources=6, days=400, policy_changes=3)
    typed = activity.astype({"total_files": "Int64", "retention_days": "Int64", "files_archived": "Int64"})
    schemas.archive_activity.validate(typed)
    day = activity.groupby("date")["archived_gb"].sum()
    weekend = day[day.index.dayofweek >= 5].mean()
    assert weekend < 0.6 * day[day.index.dayofweek < 5].mean()
    assert day[pd.Timestamp("2024-12-25")] < 0.3 * day["2024-12-02":"2024-12-20"].mean()
    factor = calendar_factor(pd.date_range("2024-03-01", "2024-03-31"), weekend=0.3)
    assert factor.argmax() in (27, 28)  # the last business days of a quarter's month: 28 and 29 March 2024
    assert set(log["policy"]) <= {"retention", "frequency", "migration"}
    ratio = activity["saved_gb"].sum() / activity["archived_gb"].sum()
    assert min(SAVINGS_RATIO.values()) < ratio < max(SAVINGS_RATIO.values())


def test_batches_cover_every_day_once_after_the_resend_overlap():
    activity, _ = make_archive(seed=1, **SMALL)
    batches = archive_batches(activity, every="14D", resend_overlap="1D")
    assert [a for a, _ in batches] == sorted(a for a, _ in batches)
    joined = pd.concat([b for _, b in batches]).drop_duplicates(schemas.ARCHIVE_KEY)
    assert len(joined) == len(activity)
    assert sum(len(b) for _, b in batches) == len(activity) + (len(batches) - 1) * SMALL["n_sources"]
    with pytest.raises(ValueError, match="resend_overlap"):
        archive_batches(activity, every="7D", resend_overlap="7D")


def test_write_landing_sends_archive_batches_that_ingest_and_gold_take(tmp_path):
    params = {
        "seed": 5,
        "sensors": {"n_sensors": 2, "days": 3},
        "incidents": {"n_incidents": 200, "months": 1},
        "archive": {**SMALL, "batch_every": "28D", "resend_overlap": "1D"},
    }
    manifest = export.write_landing(params, tmp_path / "landing")
    files = [f for f in manifest["files"] if f["path"].startswith("archive/archive_")]
    assert len(files) == 3 and manifest["rows"]["archive_activity"] == 4 * 60
    assert len(manifest["injected_shifts"]["archive_policy_changes"]) == 2
    cfg = load_params()
    cfg["ingest"].update(landing=str(tmp_path / "landing"), root=str(tmp_path))
    cfg["ingest"]["sources"] = {"archive": {"kind": "synthetic"}}
    counts = ingest.run(cfg)
    assert counts["silver_rows"]["archive_activity"] == 4 * 60 and counts["silver_rows"]["quarantine"] == 0
    silver = {t: ingest.read_silver(tmp_path / "silver", t) for t in ingest.SILVER_TABLES}
    gold = build_gold(silver, cfg["features"])
    assert len(gold["archive_daily"]) == 4 * 60 and not gold["archive_daily"]["is_filled"].any()


def test_a_real_archive_log_loads_and_its_bad_rows_are_quarantined_by_name(tmp_path):
    cfg = load_params()
    cfg["ingest"].update(landing=str(tmp_path / "landing"), root=str(tmp_path), max_bad_row_fraction=0.5)
    cfg["ingest"]["sources"] = {"archive": {"kind": "archive_csv", "path": str(SAMPLE)}}
    counts = ingest.run(cfg)
    silver = ingest.read_silver(tmp_path / "silver", "archive_activity")
    quarantine = ingest.read_silver(tmp_path / "silver", "quarantine").set_index("row")
    assert counts["silver_rows"]["archive_activity"] == 9 == len(silver)
    assert set(silver["source"]) == {sources.ARCHIVE_LOG_SOURCE}  # filled: the log has no `source` column
    assert "exported_by" not in silver.columns  # columns outside the contract are dropped
    named = quarantine["column"].to_dict()
    assert named == {
        5: "share_documents",
        6: "archived_gb",
        11: "share_video",
        12: "saved_gb",
        13: "date",
        15: "retention_days",
    }
    assert "sum to 1" in quarantine.loc[5, "reason"] and "unparseable date" in quarantine.loc[13, "reason"]
    assert json.loads(quarantine.loc[13, "record"])["date"] == "03/06/2025"


def test_a_log_missing_a_required_column_is_refused_naming_it(tmp_path):
    raw = pd.read_csv(SAMPLE, dtype=str).drop(columns=["archived_gb"])
    bad = tmp_path / "log.csv"
    raw.to_csv(bad, index=False)
    cfg = load_params()
    cfg["ingest"].update(landing=str(tmp_path / "landing"), root=str(tmp_path))
    cfg["ingest"]["sources"] = {"archive": {"kind": "archive_csv", "path": str(tmp_path)}}
    with pytest.raises(ingest.DataValidationError, match="archived_gb"):
        ingest.run(cfg)


def test_gold_grid_fills_a_missing_day_as_no_activity_with_the_state_kept():
    activity, _ = make_archive(seed=2, n_sources=2, days=10, policy_changes=0)
    gap = activity.drop(index=activity.index[(activity["date"] == "2024-01-05")])
    grid = archive_grid(gap)
    assert len(grid) == len(activity) and grid["is_filled"].sum() == 2
    filled = grid[grid["is_filled"]]
    assert (filled[["archived_gb", "saved_gb", "files_archived"]] == 0).all().all()
    before = grid[grid["date"] == "2024-01-04"].set_index("source_id")["total_files"]
    assert filled.set_index("source_id")["total_files"].equals(before)


def test_every_received_file_is_counted_per_domain_refused_ones_too(tmp_path):
    """`ingest_counts.jsonl` (the service's ingest counters): rows in / loaded / quarantined per domain, a
    refused file counted with its reason, a re-sent file counted as received but adding no rows."""
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(SAMPLE, logs / "a.csv")
    cfg = load_params()
    cfg["ingest"].update(landing=str(tmp_path / "landing"), root=str(tmp_path), max_bad_row_fraction=0.5)
    cfg["ingest"]["sources"] = {"archive": {"kind": "archive_csv", "path": str(logs)}}
    ingest.run(cfg)
    first = ingest.read_counts(tmp_path)["archive"]
    assert first == {"rows_in": 15, "rows_loaded": 9, "rows_quarantined": 6, "rows_duplicate": 0,
                     "files": 1, "files_refused": 0}  # fmt: skip
    pd.read_csv(SAMPLE, dtype=str).drop(columns=["archived_gb"]).to_csv(logs / "b.csv", index=False)
    with pytest.raises(ingest.DataValidationError, match="archived_gb"):
        ingest.run(cfg)  # a.csv again (already in silver), then b.csv refused
    again = ingest.read_counts(tmp_path)["archive"]
    assert again == {**first, "files": 3, "files_refused": 1}
    lines = [json.loads(x) for x in (tmp_path / ingest.COUNTS).read_text().splitlines()]
    assert [x["status"] for x in lines] == ["loaded", "skipped", "refused"]
    assert "archived_gb" in lines[-1]["reason"] and lines[-1]["file"] == "b.csv"
