"""Ingestion: bad files are refused with the file/column/rows named, bad rows are quarantined, silver is never lost."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.data import ingest
from ml.data.ingest import clean_batch, ingest_batch, read_silver, upsert
from ml.data.landing import COLUMN_TYPES, DataValidationError

HEADER = "sensor_id,kind,unit,timestamp,value\n"


def readings_csv(rows: list[tuple]) -> bytes:
    return (HEADER + "".join(f"{s},cpu_pct,pct,{t},{v}\n" for s, t, v in rows)).encode()


def good_rows(n: int = 40, sensor: str = "cpu-01", start: str = "2024-01-01") -> list[tuple]:
    ts = pd.date_range(start, periods=n, freq="1h")
    return [(sensor, t.strftime("%Y-%m-%dT%H:%M:%S"), float(i % 7 + 1)) for i, t in enumerate(ts)]


def incident(number: str, updated: str, state: str = "In Progress", **kw) -> dict:
    rec = {
        "number": number,
        "opened_at": "2024-01-01T08:00:00",
        "sys_updated_at": updated,
        "state": state,
        "caller_id": "Caller 1",
        "contact_type": "email",
        "location": "Site 1",
        "impact": 2,
        "urgency": 2,
        "priority": 3,
        "category": "Software",
        "subcategory": "Application error",
        "cmdb_ci": "Jira",
        "owning_team": "Dev Tools",
        "assignment_group": "Service Desk",
        "short_description": "jira slow",
        "description": "Jira is slow for everyone",
        "sla_target_hours": 24.0,
        "reassignment_count": 0,
        "resolved_at": None,
        "closed_at": None,
        "made_sla": None,
        "root_cause": None,
        "source": "synthetic",
    }
    rec.update(kw)
    return rec


def incidents_json(records: list[dict]) -> bytes:
    return json.dumps(records).encode()


# --- refused files: file, column and rows named -------------------------------------------------------
def test_missing_column_names_file_and_column(tmp_path):
    data = b"sensor_id,kind,timestamp\ncpu-01,cpu_pct,2024-01-01T00:00:00\n"
    with pytest.raises(DataValidationError) as err:
        ingest_batch(data, "feed/readings_1.csv", "sensor_readings", tmp_path)
    assert "feed/readings_1.csv" in str(err.value) and "value" in str(err.value)
    assert err.value.column == "value"


def test_empty_file_is_refused(tmp_path):
    for data in (b"", b"   \n", HEADER.encode()):
        with pytest.raises(DataValidationError, match="empty"):
            ingest_batch(data, "empty.csv", "sensor_readings", tmp_path)


def test_wrong_delimiter_is_named(tmp_path):
    data = HEADER.replace(",", ";").encode() + b"cpu-01;cpu_pct;pct;2024-01-01T00:00:00;3.0\n"
    with pytest.raises(DataValidationError, match="semicolon-separated"):
        ingest_batch(data, "semi.csv", "sensor_readings", tmp_path)


def test_wrong_type_throughout_refuses_file_and_names_rows(tmp_path):
    rows = [(s, t, "high") for s, t, _ in good_rows(10)]
    with pytest.raises(DataValidationError) as err:
        ingest_batch(readings_csv(rows), "words.csv", "sensor_readings", tmp_path)
    assert err.value.column == "value" and err.value.rows == [1, 2, 3, 4, 5]
    assert "not a number" in str(err.value)
    assert not (tmp_path / "silver" / "sensor_readings.parquet").exists()


def test_unparseable_dates_throughout_refuse_file(tmp_path):
    rows = [(s, "31/31/2024 25:00", v) for s, _, v in good_rows(10)]
    with pytest.raises(DataValidationError, match="unparseable date") as err:
        ingest_batch(readings_csv(rows), "dates.csv", "sensor_readings", tmp_path)
    assert err.value.column == "timestamp"


def test_invalid_json_is_named(tmp_path):
    with pytest.raises(DataValidationError, match="not valid JSON"):
        ingest_batch(b"[{", "inc.json", "incidents", tmp_path)


# --- quarantined rows: the good rows still load -----------------------------------------------------
def test_bad_rows_are_quarantined_with_reason_and_good_rows_load(tmp_path):
    rows = good_rows(60)
    rows[3] = (rows[3][0], rows[3][1], -5.0)  # negative reading
    rows[10] = (rows[10][0], "not-a-date", 1.0)  # unparseable date
    rows[20] = (rows[20][0], rows[20][1], "abc")  # wrong type
    res = ingest_batch(readings_csv(rows), "mixed.csv", "sensor_readings", tmp_path)
    assert (res.rows_loaded, res.rows_quarantined) == (57, 3)
    q = read_silver(tmp_path / "silver", "quarantine")
    assert sorted(q["row"]) == [4, 11, 21]
    reasons = dict(zip(q["row"], q["reason"], strict=True))
    assert "negative reading" in reasons[4]
    assert "unparseable date" in reasons[11]
    assert "not a number" in reasons[21]
    assert set(q["file"]) == {"mixed.csv"} and set(q["table"]) == {"sensor_readings"}
    assert json.loads(q.loc[q["row"] == 4, "record"].iloc[0])["value"] == "-5.0"


def test_conflicting_duplicate_key_quarantined_exact_duplicate_dropped(tmp_path):
    rows = good_rows(50)
    rows.append(rows[5])  # exact re-send: silently dropped
    rows.append((rows[7][0], rows[7][1], 99.0))  # same key, other value: both quarantined
    res = ingest_batch(readings_csv(rows), "dups.csv", "sensor_readings", tmp_path)
    assert res.rows_duplicate == 1
    q = read_silver(tmp_path / "silver", "quarantine")
    assert sorted(q["row"]) == [8, 52] and q["reason"].str.contains("duplicate key").all()
    silver = read_silver(tmp_path / "silver", "sensor_readings")
    assert len(silver) == 49 and not silver.duplicated(["sensor_id", "timestamp"]).any()


def test_a_bad_file_loses_nothing_already_in_silver(tmp_path):
    ingest_batch(readings_csv(good_rows(30)), "good.csv", "sensor_readings", tmp_path)
    before = read_silver(tmp_path / "silver", "sensor_readings")
    with pytest.raises(DataValidationError):
        ingest_batch(b"sensor_id;kind\n", "bad.csv", "sensor_readings", tmp_path)
    pd.testing.assert_frame_equal(read_silver(tmp_path / "silver", "sensor_readings"), before)


# --- bronze, idempotence, upsert ----------------------------------------------------------------------
def test_bronze_keeps_the_batch_as_received_and_reingest_is_a_noop(tmp_path):
    data = readings_csv(good_rows(30))
    first = ingest_batch(data, "b1.csv", "sensor_readings", tmp_path)
    silver = (tmp_path / "silver" / "sensor_readings.parquet").read_bytes()
    again = ingest_batch(data, "b1.csv", "sensor_readings", tmp_path)
    assert not first.skipped and again.skipped
    assert (tmp_path / "silver" / "sensor_readings.parquet").read_bytes() == silver
    bronze = list((tmp_path / "bronze" / "sensor_readings").iterdir())
    assert len(bronze) == 1 and bronze[0].read_bytes() == data


def test_later_batch_refreshes_an_open_incident(tmp_path):
    ingest_batch(
        incidents_json([incident("INC1", "2024-01-01T09:00:00"), incident("INC2", "2024-01-01T10:00:00")]),
        "i1.json",
        "incidents",
        tmp_path,
    )
    closed = incident(
        "INC1",
        "2024-01-03T09:00:00",
        state="Closed",
        resolved_at="2024-01-02T09:00:00",
        closed_at="2024-01-03T09:00:00",
        made_sla=False,
    )
    ingest_batch(incidents_json([closed]), "i2.json", "incidents", tmp_path)
    silver = read_silver(tmp_path / "silver", "incidents").set_index("number")
    assert silver.loc["INC1", "state"] == "Closed" and not silver.loc["INC1", "made_sla"]
    assert silver.loc["INC2", "state"] == "In Progress"
    # a stale re-delivery of the old open row does not roll the incident back
    ingest_batch(
        incidents_json([incident("INC1", "2024-01-01T09:00:00", reassignment_count=1)]),
        "i0.json",
        "incidents",
        tmp_path,
    )
    assert read_silver(tmp_path / "silver", "incidents").set_index("number").loc["INC1", "state"] == "Closed"


def test_incident_row_errors_name_the_column(tmp_path):
    recs = [incident(f"INC{i}", "2024-01-01T09:00:00") for i in range(40)]
    recs[2]["priority"] = 9
    recs[5]["sys_updated_at"] = "2023-12-31T00:00:00"  # before opened_at
    res = ingest_batch(incidents_json(recs), "i.json", "incidents", tmp_path)
    q = read_silver(tmp_path / "silver", "quarantine").set_index("row")
    assert res.rows_quarantined == 2
    assert "priority" in q.loc[3, "reason"]
    assert "sys_updated_at before opened_at" in q.loc[6, "reason"]


def _incident_versions() -> st.SearchStrategy:
    numbers = st.sampled_from([f"INC{i}" for i in range(6)])
    hours = st.integers(min_value=1, max_value=200)
    return st.lists(st.tuples(numbers, hours), min_size=1, max_size=25, unique=True)


def _as_frame(versions) -> pd.DataFrame:
    recs = [
        incident(
            n, (pd.Timestamp("2024-01-01T08:00") + pd.Timedelta(hours=h)).isoformat(), reassignment_count=h
        )
        for n, h in versions
    ]
    good, _, _ = clean_batch(pd.DataFrame(recs).astype(object), "incidents", "x.json")
    return good


@settings(max_examples=30, deadline=None)
@given(_incident_versions(), st.randoms(use_true_random=False))
def test_upsert_is_order_independent_idempotent_and_keeps_every_key(versions, rnd):
    rows = _as_frame(versions)  # one version per (number, hour); batches below are slices of it
    by_version = {(n, h): i for i, (n, h) in enumerate(versions)}
    rows = rows.set_index(
        pd.Index(
            [by_version[(n, int(h))] for n, h in zip(rows["number"], rows["reassignment_count"], strict=True)]
        )
    ).sort_index()
    batches = [rows.loc[[i for i in range(s, s + 4) if i in rows.index]] for s in range(0, len(versions), 4)]
    empty = pd.DataFrame(columns=list(COLUMN_TYPES["incidents"]))
    state = empty
    for b in batches:
        state = upsert(state, b.reset_index(drop=True), "incidents")
    shuffled = list(batches)
    rnd.shuffle(shuffled)
    other = empty
    for b in shuffled:
        other = upsert(other, b.reset_index(drop=True), "incidents")
    pd.testing.assert_frame_equal(state, other)
    assert set(state["number"]) == {n for n, _ in versions}  # upsert never loses a key
    latest = {}
    for n, h in versions:
        latest[n] = max(latest.get(n, 0), h)
    assert dict(zip(state["number"], state["reassignment_count"], strict=True)) == latest
    again = upsert(state, rows.reset_index(drop=True), "incidents")  # re-ingesting everything changes nothing
    pd.testing.assert_frame_equal(state, again)


def test_a_batch_with_two_versions_of_an_incident_keeps_the_latest(tmp_path):
    recs = [incident("INC1", "2024-01-01T09:00:00"), incident("INC1", "2024-01-01T12:00:00", state="On Hold")]
    recs += [incident(f"INC{i}", "2024-01-01T09:00:00") for i in range(2, 30)]
    res = ingest_batch(incidents_json(recs), "i.json", "incidents", tmp_path)
    assert res.rows_quarantined == 0 and res.rows_duplicate == 1
    silver = read_silver(tmp_path / "silver", "incidents").set_index("number")
    assert silver.loc["INC1", "state"] == "On Hold"


@pytest.mark.realdata
def test_real_sources_ingest_through_the_same_path(shared_data, tmp_path):
    """params switch to the real NAB sample and the UCI event log: bronze, silver and quarantine all work."""
    params = {
        "ingest": {
            "root": str(tmp_path),
            "landing": str(tmp_path / "none"),
            "sources": {
                "sensors": {"kind": "nab", "path": str(shared_data / "nab_sample")},
                "incidents": {
                    "kind": "servicenow_eventlog",
                    "path": str(shared_data / "incidents_uci_sample" / "incident_event_log_sample.csv"),
                },
            },
        }
    }
    counts = ingest.run(params)
    rows = counts["silver_rows"]
    assert rows["incidents"] == 3000 and rows["anomaly_windows"] == 12
    # machine_temperature repeats 12 timestamps with other values: those 24 rows are quarantined, named
    q = read_silver(tmp_path / "silver", "quarantine")
    assert len(q) == 24 and q["reason"].str.contains("duplicate key").all()
    assert set(q["file"].map(lambda f: f.rsplit("/", 1)[-1])) == {"machine_temperature_system_failure.csv"}
    assert rows["sensor_readings"] == 7267 + 18050 + 22695 + 10320 - 24
    assert len(list((tmp_path / "bronze").rglob("*.*"))) == 6  # 4 csv + labels + event log, as received
    again = ingest.run(params)
    assert all(b["skipped"] for b in again["batches"])
