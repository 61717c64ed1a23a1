"""Ingestion under faults: crashes between writes, two ingests at once, files that do not decode or are too
big, and what the written files look like on disk."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ml.config import ROOT
from ml.data import ingest
from ml.data.ingest import LEDGER, ingest_batch, read_silver
from ml.data.landing import DataValidationError, read_received
from tests.unit.data.test_ingest import good_rows, readings_csv


def crash_on(name: str, monkeypatch):
    """Make the atomic rename onto `name` fail, letting every other rename through."""
    real = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == name:
            raise OSError(f"disk died writing {name}")
        return real(src, dst)

    monkeypatch.setattr(ingest.os, "replace", replace)


def ledger(root) -> list[str]:
    path = root / "silver" / LEDGER
    return [e["file"] for e in json.loads(path.read_text())] if path.exists() else []


def test_crash_while_writing_silver_leaves_previous_silver_intact(tmp_path, monkeypatch):
    ingest_batch(readings_csv(good_rows(30)), "good.csv", "sensor_readings", tmp_path)
    path = tmp_path / "silver" / "sensor_readings.parquet"
    before = path.read_bytes()
    crash_on(path.name, monkeypatch)
    nxt = readings_csv(good_rows(30, start="2024-02-01"))
    with pytest.raises(OSError, match="disk died writing sensor_readings.parquet"):
        ingest_batch(nxt, "next.csv", "sensor_readings", tmp_path)
    assert path.read_bytes() == before
    assert ledger(tmp_path) == ["good.csv"]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    again = ingest_batch(nxt, "next.csv", "sensor_readings", tmp_path)  # the batch is not lost
    assert not again.skipped and len(read_silver(tmp_path / "silver", "sensor_readings")) == 60


def test_crash_between_silver_and_ledger_is_repaired_by_reingesting(tmp_path, monkeypatch):
    ingest_batch(readings_csv(good_rows(30)), "good.csv", "sensor_readings", tmp_path)
    crash_on(LEDGER, monkeypatch)
    nxt = readings_csv(good_rows(30, start="2024-02-01"))
    with pytest.raises(OSError, match="disk died"):
        ingest_batch(nxt, "next.csv", "sensor_readings", tmp_path)
    assert ledger(tmp_path) == ["good.csv"]  # silver holds the rows, the ledger does not know yet
    monkeypatch.undo()
    again = ingest_batch(nxt, "next.csv", "sensor_readings", tmp_path)
    assert not again.skipped and again.silver_rows == 60  # upsert by key: no duplicates
    assert ledger(tmp_path) == ["good.csv", "next.csv"]


# Each child waits for the go file, then ingests one batch with a slow silver read: without a lock both
# read the same old silver and the second rename drops the first batch.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ml.data import ingest
    from tests.unit.data.test_ingest import good_rows, readings_csv

    root, start, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    real = ingest.read_silver

    def slow(silver, table):
        frame = real(silver, table)
        time.sleep(1.0)
        return frame

    ingest.read_silver = slow
    while not go.exists():
        time.sleep(0.01)
    ingest.ingest_batch(readings_csv(good_rows(30, start=start)), start + ".csv", "sensor_readings", root)
    """
)


def test_two_ingest_processes_at_once_lose_no_batch(tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    starts = ["2024-01-01", "2024-03-01"]
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), s, str(go)], cwd=ROOT, env=env)
        for s in starts
    ]
    time.sleep(0.2)
    go.touch()  # children still importing simply start when they get there
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(read_silver(tmp_path / "silver", "sensor_readings")) == 60
    assert sorted(ledger(tmp_path)) == [s + ".csv" for s in starts]


def test_a_file_that_is_not_utf8_is_refused_naming_file_and_line(tmp_path):
    data = readings_csv(good_rows(5)).replace(
        b"cpu-01,cpu_pct,pct,2024-01-01T02", b"cpu-\xe9,cpu_pct,pct,2024-01-01T02"
    )
    with pytest.raises(DataValidationError, match=r"latin\.csv.*not UTF-8.*0xe9 on line 4"):
        ingest_batch(data, "latin.csv", "sensor_readings", tmp_path)
    assert read_silver(tmp_path / "silver", "sensor_readings").empty


def test_deeply_nested_json_is_refused_like_any_bad_file(tmp_path):
    data = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(DataValidationError, match=r"deep\.json.*nested too deeply"):
        read_received(data, "deep.json")
    with pytest.raises(DataValidationError, match="nested too deeply"):
        ingest_batch(data, "deep.json", "incidents", tmp_path)


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    big = tmp_path / "big.csv"
    big.write_bytes(readings_csv(good_rows(2000)))
    monkeypatch.setattr(ingest.Path, "read_bytes", lambda self: pytest.fail("read an oversized file"))
    with pytest.raises(DataValidationError, match=r"big\.csv.*above the 0\.01 MB cap"):
        ingest.ingest_file(big, "sensor_readings", tmp_path, max_file_mb=0.01)


def test_written_files_get_the_usual_mode_and_the_folder_is_synced(tmp_path, monkeypatch):
    synced = []
    real = ingest._fsync_dir
    monkeypatch.setattr(ingest, "_fsync_dir", lambda folder: (synced.append(folder), real(folder)))
    ingest_batch(readings_csv(good_rows(10)), "good.csv", "sensor_readings", tmp_path)
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (tmp_path / "silver" / "sensor_readings.parquet", tmp_path / "silver" / LEDGER):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
        assert path.parent in synced
