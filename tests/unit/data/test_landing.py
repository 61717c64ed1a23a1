"""The landing zone: batch file names parsed in one place, batches listed oldest first, read typed and de-duplicated."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ml.data import landing

HEADER = "sensor_id,kind,unit,timestamp,value\n"


def write_sensor_batch(root, as_of: str, rows: list[tuple[str, str, str]]) -> str:
    """A sensors CSV batch named by its as_of, as the source sends it; returns its path under the landing root."""
    name = f"sensors/readings_{pd.Timestamp(as_of).strftime(landing.NAME_TIME_FORMAT)}.csv"
    (root / "sensors").mkdir(parents=True, exist_ok=True)
    (root / name).write_text(HEADER + "".join(f"{s},cpu_pct,pct,{t},{v}\n" for s, t, v in rows))
    return name


@pytest.fixture
def zone(tmp_path):
    """Two sensor batches (the second re-sends one reading with a corrected value), labels and an incident batch."""
    root = tmp_path / "landing"
    first = write_sensor_batch(root, "2024-01-08", [("cpu-01", "2024-01-07T23:00:00", "1.0"),
                                                    ("cpu-01", "2024-01-08T00:00:00", "2.0")])  # fmt: skip
    second = write_sensor_batch(root, "2024-01-15", [("cpu-01", "2024-01-08T00:00:00", "2.5"),
                                                     ("cpu-01", "2024-01-08T01:00:00", "x")])  # fmt: skip
    (root / "sensors" / landing.LABELS_FILE).write_text("sensor_id,start,end,anomaly_kind\n")
    (root / "incidents").mkdir()
    (root / "incidents" / "incidents_20240115T0000.json").write_text("[]")
    (root / "sensors" / "notes.txt").write_text("not a batch")
    return root, [first, second]


def test_a_batch_name_carries_its_as_of():
    assert landing.batch_time("sensors/readings_20240108T0630.csv") == pd.Timestamp("2024-01-08 06:30")
    with pytest.raises(ValueError):
        landing.batch_time("sensors/anomaly_windows.csv")


def test_batches_are_listed_oldest_first_from_the_names_or_the_manifest(zone):
    root, names = zone
    assert landing.batch_files(root, "sensors") == [root / n for n in names]
    from_names = landing.dated_batches(root, "sensors")
    assert from_names == [
        (pd.Timestamp("2024-01-08"), root / names[0]),
        (pd.Timestamp("2024-01-15"), root / names[1]),
    ]
    # the manifest's as_of is exact (the name keeps minutes only) and lists what was sent, in any order
    files = [
        {"path": names[1], "as_of": "2024-01-15T00:00:30"},
        {"path": names[0], "as_of": "2024-01-08T00:00:30"},
    ]
    (root / "manifest.json").write_text(json.dumps({"files": files}))
    from_manifest = landing.dated_batches(root, "sensors")
    assert [p for _, p in from_manifest] == [p for _, p in from_names]
    assert from_manifest[0][0] == pd.Timestamp("2024-01-08T00:00:30")
    with pytest.raises(FileNotFoundError, match="no incidents batches"):
        landing.dated_batches(root, "incidents")  # the manifest lists none


def test_ingestion_gets_each_file_with_the_table_it_feeds(zone):
    root, names = zone
    assert landing.ingest_files(root, "sensors") == [
        ("sensor_readings", root / names[0]),
        ("sensor_readings", root / names[1]),
        ("anomaly_windows", root / "sensors" / landing.LABELS_FILE),
    ]
    assert landing.ingest_files(root, "incidents") == [
        ("incidents", root / "incidents" / "incidents_20240115T0000.json")
    ]


def test_the_newest_batch_of_a_directory_is_picked(zone, tmp_path):
    root, names = zone
    assert landing.newest_file(root / "sensors", "sensors") == root / names[1]
    assert landing.newest_file(root / "sensors") == root / names[1]
    assert landing.newest_file(root / names[0], "sensors") == root / names[0]  # a file is taken as given
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.parquet").write_bytes(b"")
    (other / "b.csv").write_text(HEADER)
    assert landing.newest_file(other, "sensors") == other / "b.csv"  # no batch names: the last records file
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=str(empty)):
        landing.newest_file(empty)


def test_read_landing_types_and_keeps_the_latest_resend(zone):
    root, _ = zone
    readings, as_ofs = landing.read_landing(root, "sensors")
    assert as_ofs == [pd.Timestamp("2024-01-08"), pd.Timestamp("2024-01-15")]
    assert readings["timestamp"].dtype == "datetime64[ns]" and readings["value"].dtype == float
    assert readings["timestamp"].is_monotonic_increasing and len(readings) == 3
    assert (
        readings.loc[readings["timestamp"] == "2024-01-08T00:00", "value"].item() == 2.5
    )  # the re-send wins
    assert readings["value"].isna().sum() == 1  # "x" does not parse


def test_read_records_counts_unparseable_values_and_names_the_file(zone, tmp_path):
    root, names = zone
    typed, bad = landing.read_records(root / names[1], "sensor_readings")
    assert bad == {"value": 1} and typed["value"].isna().sum() == 1
    raw, none = landing.read_records(root / names[1])
    assert none == {} and raw["value"].tolist() == ["2.5", "x"]  # as received: strings
    extra, _ = landing.type_records(raw.assign(note="kept"), "sensor_readings")
    assert extra["note"].tolist() == ["kept", "kept"]
    with pytest.raises(landing.DataValidationError, match=r"missing required column\(s\) \['value'\]"):
        landing.type_records(raw.drop(columns="value"), "sensor_readings", "f.csv")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        landing.read_records(root / "sensors" / "notes.txt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        landing.read_records(tmp_path / "absent.csv")
