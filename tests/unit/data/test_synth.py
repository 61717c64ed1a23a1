"""Tests of the synthetic generator: contracts, promised properties, determinism and the landing files."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.data import schemas
from ml.data.synth import export
from ml.data.synth.catalogues import CONTACT_TYPES, ONE_OFF, ROOT_CAUSES, WAIT_HINTS
from ml.data.synth.common import DEFAULT_SLA_HOURS, itil_priorities, itil_priority, sla_target_hours
from ml.data.synth.incidents import incident_batches, incident_export_time, make_incidents, snapshot_incidents
from ml.data.synth.sensors import ANOMALY_KINDS, CLEAN_FRACTION, make_sensors, sensor_batches, sensor_shifts

SENSOR_ARGS = dict(n_sensors=8, days=21, seed=7, missing_rate=0.02, anomalies_per_sensor=2)
RECAL = {"at": "2024-01-15", "sensors": 2, "offset_pct": 0.08}
ROLLOUT = {"at": "2024-10-01", "system": "ServiceNow HR portal", "share": 0.15}
INCIDENT_ARGS = dict(n_incidents=1500, seed=7, rollout=ROLLOUT)
EXPORT = incident_export_time("2024-01-01", 12)
HYPO = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def sensors():
    return make_sensors(**SENSOR_ARGS, recalibration=RECAL)


@pytest.fixture(scope="module")
def readings(sensors):
    return sensors[0]


@pytest.fixture(scope="module")
def windows(sensors):
    return sensors[1]


@pytest.fixture(scope="module")
def incidents():
    return make_incidents(**INCIDENT_ARGS)


# --- ITIL priority and SLA ---------------------------------------------------------------------
def test_itil_priority_is_the_servicenow_matrix_on_all_of_1_to_3_squared():
    expected = {
        (1, 1): 1,
        (1, 2): 2,
        (2, 1): 2,
        (1, 3): 3,
        (2, 2): 3,
        (3, 1): 3,
        (2, 3): 4,
        (3, 2): 4,
        (3, 3): 5,
    }
    assert {(i, u): itil_priority(i, u) for i in (1, 2, 3) for u in (1, 2, 3)} == expected


def test_itil_priority_is_monotone_more_impact_or_urgency_is_never_less_urgent():
    for i in (1, 2, 3):
        for u in (1, 2, 3):
            p = itil_priority(i, u)
            if i < 3:
                assert p <= itil_priority(i + 1, u)
            if u < 3:
                assert p <= itil_priority(i, u + 1)


@given(bad=st.integers().filter(lambda x: x not in (1, 2, 3)), ok=st.sampled_from([1, 2, 3]))
@settings(max_examples=20, deadline=None)
def test_itil_priority_rejects_out_of_range_naming_the_argument(bad, ok):
    with pytest.raises(ValueError, match="impact"):
        itil_priority(bad, ok)
    with pytest.raises(ValueError, match="urgency"):
        itil_priority(ok, bad)


@pytest.mark.parametrize("bad", [2.0, "2", True, None])
def test_itil_priority_rejects_non_integers(bad):
    with pytest.raises(ValueError, match="impact"):
        itil_priority(bad, 2)


def test_vectorised_priorities_agree_with_scalar_and_reject_bad_values():
    imp, urg = np.meshgrid([1, 2, 3], [1, 2, 3])
    got = itil_priorities(imp.ravel(), urg.ravel())
    assert got.tolist() == [itil_priority(i, u) for i, u in zip(imp.ravel(), urg.ravel(), strict=True)]
    with pytest.raises(ValueError, match="urgency"):
        itil_priorities([1, 2], [3, 4])


def test_sla_target_hours_defaults_override_and_errors():
    assert [sla_target_hours(p) for p in range(1, 6)] == [4.0, 8.0, 24.0, 72.0, 120.0]
    assert sla_target_hours(2, {2: 6}) == 6.0
    with pytest.raises(ValueError, match="priority"):
        sla_target_hours(6)
    with pytest.raises(ValueError, match="priority"):
        sla_target_hours(1, {2: 6})


# --- Sensors -----------------------------------------------------------------------------------
def test_sensor_frames_meet_the_silver_contract(readings, windows):
    assert list(readings.columns) == schemas.READING_COLUMNS
    assert list(windows.columns) == schemas.WINDOW_COLUMNS
    schemas.sensor_readings.validate(readings)
    schemas.anomaly_windows.validate(windows)
    assert readings["timestamp"].dtype == "datetime64[ns]" and readings["value"].notna().all()


def test_every_sensor_has_the_promised_length_minus_missing_with_some_gaps(readings):
    n = 21 * 24
    counts = readings.groupby("sensor_id").size()
    assert len(counts) == 8
    assert (counts == n - round(0.02 * n)).all()
    steps = readings.groupby("sensor_id")["timestamp"].diff().dropna()
    assert (steps > pd.Timedelta("2h")).any(), "missing rows include gaps of several steps"
    assert steps.min() == pd.Timedelta("1h")


def test_kinds_are_evenly_spread_with_ids_and_units(readings):
    per_kind = readings.groupby("kind")["sensor_id"].nunique()
    assert len(per_kind) >= 3 and per_kind.max() - per_kind.min() <= 1
    assert {"temperature", "cpu_pct", "request_rate"} <= set(per_kind.index)
    assert readings["sensor_id"].str.fullmatch(r"[a-z]+-\d{2}").all()
    assert readings["unit"].notna().all()
    assert readings.groupby("sensor_id")[["kind", "unit"]].nunique().eq(1).all().all()


def test_values_stay_in_physical_ranges(readings):
    by_kind = readings.groupby("kind")["value"]
    assert by_kind.min()["temperature"] > 0 and by_kind.max()["temperature"] < 60
    for pct in ("cpu_pct", "memory_pct"):
        assert 0 <= by_kind.min()[pct] and by_kind.max()[pct] <= 100
    assert by_kind.min()["request_rate"] >= 0


def test_daily_and_weekly_seasonality_is_visible(readings):
    for _, g in readings.loc[readings["kind"] == "request_rate"].groupby("sensor_id"):
        s = g.set_index("timestamp")["value"]
        weekday = s[s.index.dayofweek < 5]
        profile = weekday.groupby(weekday.index.hour).mean()
        wiggle = (s - s.rolling(3, center=True).mean()).dropna()
        noise = 1.4826 * (wiggle - wiggle.median()).abs().median()
        assert profile.max() - profile.min() > 10 * noise
        assert profile.loc[2:4].mean() < 0.6 * profile.loc[11:15].mean()  # quiet nights
        assert s[s.index.dayofweek >= 5].mean() < 0.8 * weekday.mean()  # quiet weekends
    cpu = readings.loc[readings["kind"] == "cpu_pct"]
    hours = cpu["timestamp"].dt.hour
    assert cpu.loc[hours.between(2, 4), "value"].mean() < cpu.loc[hours.between(11, 15), "value"].mean() - 10


def test_anomaly_windows_cover_every_kind_inside_the_series_without_overlap(readings, windows):
    assert set(windows["anomaly_kind"]) == set(ANOMALY_KINDS)
    assert (windows.groupby("anomaly_kind")["sensor_id"].nunique() >= 2).all()
    assert (windows.groupby("sensor_id").size() == 2).all()
    first, last = readings["timestamp"].min(), readings["timestamp"].max()
    clean_until = first + CLEAN_FRACTION * (last - first)
    assert (windows["start"] > clean_until).all() and (windows["end"] <= last).all()
    present = set(zip(readings["sensor_id"], readings["timestamp"], strict=True))
    for w in windows.itertuples():
        assert (w.sensor_id, w.start) in present and (w.sensor_id, w.end) in present
    for _, g in windows.groupby("sensor_id"):
        g = g.sort_values("start")
        assert (g["start"].iloc[1:].to_numpy() > g["end"].iloc[:-1].to_numpy()).all()


def test_spikes_stand_out_and_stuck_sensors_freeze(readings, windows):
    for w in windows.itertuples():
        g = readings.loc[readings["sensor_id"] == w.sensor_id]
        s = g.set_index("timestamp")["value"]
        inside = s[w.start : w.end]
        if w.anomaly_kind == "spike":
            x = np.log1p(s) if g["kind"].iloc[0] == "request_rate" else s  # request rates vary by ratio
            jump = (x - (x.shift(1) + x.shift(-1)) / 2).abs()  # distance from the neighbours' midpoint
            assert jump[w.start : w.end].max() > 6 * jump.median()
        elif w.anomaly_kind == "stuck":
            runs = (inside != inside.shift()).cumsum()
            assert runs.value_counts().max() >= 4


def test_recalibration_is_a_persistent_level_change_not_an_anomaly():
    base = dict(SENSOR_ARGS, missing_rate=0.0, anomalies_per_sensor=0)
    plain, _ = make_sensors(**base)
    shifted, windows = make_sensors(**base, recalibration=RECAL)
    log = sensor_shifts(**base, recalibration=RECAL)
    assert windows.empty and len(log) == 2
    assert list(log.columns) == ["sensor_id", "at", "offset_pct"] and (log["offset_pct"].abs() == 0.08).all()
    at = pd.Timestamp(RECAL["at"])
    before = plain["timestamp"] < at
    pd.testing.assert_frame_equal(plain[before], shifted[before])
    for row in log.itertuples():
        mask = (plain["sensor_id"] == row.sensor_id) & ~before & plain["value"].between(1, 99)
        ratio = shifted.loc[mask, "value"] / plain.loc[mask, "value"]
        assert np.allclose(ratio, 1 + row.offset_pct, atol=2e-3)
    untouched = ~plain["sensor_id"].isin(log["sensor_id"])
    pd.testing.assert_frame_equal(plain[untouched], shifted[untouched])


def test_recalibration_outside_the_series_is_refused():
    with pytest.raises(ValueError, match="recalibration.at"):
        make_sensors(**SENSOR_ARGS, recalibration={"at": "2025-01-01"})


def test_sensors_are_deterministic_by_seed(sensors):
    again = make_sensors(**SENSOR_ARGS, recalibration=RECAL)
    pd.testing.assert_frame_equal(sensors[0], again[0])
    pd.testing.assert_frame_equal(sensors[1], again[1])
    other = make_sensors(**dict(SENSOR_ARGS, seed=8), recalibration=RECAL)
    assert not sensors[0]["value"].equals(other[0]["value"])


def test_sensor_batches_resend_overlap_and_dedupe_back_to_readings(readings):
    batches = sensor_batches(readings, every="7D", resend_overlap="6h")
    assert len(batches) == 3
    as_ofs = [a for a, _ in batches]
    assert as_ofs == sorted(as_ofs) and all(b["timestamp"].max() == a for a, b in batches)
    keys = ["sensor_id", "timestamp"]
    for (_, prev), (_, cur) in zip(batches, batches[1:], strict=False):
        resent = cur.merge(prev, on=keys, suffixes=("", "_prev"))
        assert len(resent) > 0 and (resent["value"] == resent["value_prev"]).all()
        assert resent["timestamp"].min() >= prev["timestamp"].max() - pd.Timedelta("6h")
    allrows = pd.concat([b for _, b in batches], ignore_index=True)
    assert allrows.duplicated(keys).any()
    assert allrows.drop_duplicates().shape[0] == allrows.drop_duplicates(keys).shape[0]
    deduped = allrows.drop_duplicates(keys).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(deduped, readings.sort_values(keys).reset_index(drop=True))


# --- Incidents ---------------------------------------------------------------------------------
def test_incidents_meet_the_silver_contract(incidents):
    assert list(incidents.columns) == schemas.INCIDENT_COLUMNS
    schemas.incidents.validate(incidents)
    for col in ("impact", "urgency", "priority", "reassignment_count"):
        assert incidents[col].dtype == "Int64"
    assert incidents["made_sla"].dtype == "boolean"
    assert incidents["number"].iloc[0] == "INC0010001" and incidents["number"].is_unique
    assert (incidents["source"] == "synthetic").all()
    assert incidents["opened_at"].is_monotonic_increasing
    assert (
        incidents["opened_at"].min() >= pd.Timestamp("2024-01-01") and incidents["opened_at"].max() < EXPORT
    )


def test_catalogue_has_the_promised_variety(incidents):
    assert 8 <= incidents["cmdb_ci"].nunique() <= 13
    assert 8 <= incidents["assignment_group"].nunique() <= 11
    assert 6 <= incidents["category"].nunique() <= 8
    assert incidents[["category", "subcategory"]].drop_duplicates().shape[0] >= 18
    assert set(incidents["contact_type"]) == set(CONTACT_TYPES)
    assert incidents["location"].nunique() == 10
    callers = incidents["caller_id"].value_counts()
    assert 200 <= len(callers) <= 400 and callers.iloc[0] > 5 * callers.median()
    assert (
        incidents["impact"].value_counts().idxmax() == 3 and incidents["urgency"].value_counts().idxmax() == 2
    )


def test_priority_sla_and_outcome_are_consistent(incidents):
    expected = itil_priorities(incidents["impact"].to_numpy(int), incidents["urgency"].to_numpy(int))
    assert (incidents["priority"].to_numpy(int) == expected).all()
    assert (incidents["sla_target_hours"] == incidents["priority"].map(DEFAULT_SLA_HOURS)).all()
    done = incidents["resolved_at"].notna()
    ttr = (incidents["resolved_at"] - incidents["opened_at"]).dt.total_seconds() / 3600
    assert (incidents.loc[done, "made_sla"] == (ttr[done] <= incidents.loc[done, "sla_target_hours"])).all()
    assert incidents.loc[~done, "made_sla"].isna().all()


def test_states_match_timestamps_at_export(incidents):
    state, resolved, closed = incidents["state"], incidents["resolved_at"], incidents["closed_at"]
    is_open = state.isin(["New", "In Progress", "On Hold"])
    assert (is_open == resolved.isna()).all()
    assert ((state == "Closed") == closed.notna()).all()
    assert (closed[closed.notna()] >= resolved[closed.notna()]).all()
    assert ((closed - resolved).dropna() <= pd.Timedelta(days=3)).all()
    assert (incidents["sys_updated_at"] <= EXPORT).all()
    assert (incidents.loc[state == "Closed", "sys_updated_at"] == closed[state == "Closed"]).all()
    assert (incidents.loc[state == "Resolved", "sys_updated_at"] == resolved[state == "Resolved"]).all()


def test_breach_rate_and_open_backlog_are_realistic(incidents):
    done = incidents["made_sla"].notna()
    breach = 1 - incidents.loc[done, "made_sla"].astype(bool).mean()
    assert 0.15 <= breach <= 0.40
    assert 5 <= (~done).sum() <= 100
    # Learnable from open-time information: off-hours P3-P5 tickets wait for the next business day.
    hour, dow = incidents["opened_at"].dt.hour, incidents["opened_at"].dt.dayofweek
    off = (dow >= 5) | (hour < 7) | (hour >= 19)
    low = done & (incidents["priority"] >= 3)
    assert (~incidents.loc[low & off, "made_sla"].astype(bool)).mean() > (
        ~incidents.loc[low & ~off, "made_sla"].astype(bool)
    ).mean()


def test_arrivals_follow_the_working_week(incidents):
    opened = incidents["opened_at"]
    assert (opened.dt.dayofweek < 5).mean() > 0.8
    assert opened.dt.hour.between(8, 17).mean() > 0.6
    assert (opened.dt.hour < 6).mean() > 0.0  # but some at night
    halves = opened.dt.month.le(6).value_counts()
    assert halves[False] > halves[True]  # slight growth


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z][a-z0-9/_.-]{2,}", text.lower()))


def test_text_predicts_the_assignment_group_but_not_perfectly(incidents):
    train, test = incidents.iloc[::2], incidents.iloc[1::2]
    by_word: dict[str, Counter] = defaultdict(Counter)
    for text, group in zip(train["short_description"], train["assignment_group"], strict=True):
        for w in _words(text):
            by_word[w][group] += 1
    majority = train["assignment_group"].value_counts().idxmax()
    hits = 0
    for text, group in zip(test["short_description"], test["assignment_group"], strict=True):
        best = max(
            ((c.most_common(1)[0][1] / c.total(), c.most_common(1)[0][0]) for w in _words(text)
             if (c := by_word.get(w)) and c.total() >= 5),
            default=(0, majority),
        )  # fmt: skip
        hits += best[1] == group
    accuracy = hits / len(test)
    baseline = (test["assignment_group"] == majority).mean()
    assert accuracy > baseline + 0.3
    assert accuracy < 0.97


def test_text_is_noisy_vague_and_varied(incidents):
    short = incidents["short_description"]
    assert short.str.contains("please help|not working|urgent", case=False).mean() > 0.05
    sentences = incidents["description"].str.count(r"[.!?](\s|$)")
    assert sentences.min() == 1 and sentences.max() == 5  # 1-4 sentences plus, sometimes, a wait hint
    assert incidents["description"].str.len().std() > 20


def test_waiting_on_others_is_partly_said_at_open_time():
    """Long waits (vendor, part, user) are likelier for hardware and mostly hinted in the text, so an
    open-time model can see some of them; the hint is not a label (a few other tickets carry it too)."""
    final = make_incidents(n_incidents=6000, seed=5)
    hint = final["description"].str.contains("|".join(map(re.escape, WAIT_HINTS)))
    hours = (final["resolved_at"] - final["opened_at"]).dt.total_seconds() / 3600
    assert 0.03 < hint.mean() < 0.15
    assert hours[hint].median() > 4 * hours[~hint].median()
    hw = final["category"] == "Hardware"
    assert hint[hw].mean() > 2 * hint[~hw].mean()


def test_recurring_root_causes_have_distinctive_vocabulary(incidents):
    recurring = incidents.loc[incidents["root_cause"] != ONE_OFF]
    assert recurring["root_cause"].nunique() == len(ROOT_CAUSES)
    one_off_words = Counter(w for t in incidents.loc[incidents["root_cause"] == ONE_OFF, "short_description"]
                            for w in _words(t))  # fmt: skip
    n_one_off = (incidents["root_cause"] == ONE_OFF).sum()
    for cause, g in recurring.groupby("root_cause"):
        texts = [_words(a + " " + b) for a, b in zip(g["short_description"], g["description"], strict=True)]
        counts = Counter(w for t in texts for w in t)
        # the most characteristic word: frequent in this cause, rare in the one-off tickets
        word = max(counts, key=lambda w: counts[w] / len(texts) - 5 * one_off_words[w] / n_one_off)
        assert counts[word] / len(texts) > 0.4, cause
        assert one_off_words[word] / n_one_off < 0.05, cause
        t = g["opened_at"].sort_values().to_numpy()
        in_two_weeks = np.searchsorted(t, t + np.timedelta64(14, "D"), side="right") - np.arange(len(t))
        assert in_two_weeks.max() >= 0.2 * len(t), f"{cause} comes in bursts"  # uniform would be ~4%


def test_rollout_system_appears_only_after_its_date(incidents):
    at = pd.Timestamp(ROLLOUT["at"])
    new = incidents["cmdb_ci"] == ROLLOUT["system"]
    assert not new[incidents["opened_at"] < at].any()
    share_after = new[incidents["opened_at"] >= at].mean()
    assert 0.07 <= share_after <= 0.25
    before = incidents["opened_at"] < at
    assert set(incidents.loc[new, "owning_team"]).isdisjoint(incidents.loc[before, "owning_team"])
    assert set(incidents.loc[new, "assignment_group"]) - set(incidents.loc[before, "assignment_group"])


def test_rollout_leaves_what_was_known_before_it_unchanged(incidents):
    plain = make_incidents(**dict(INCIDENT_ARGS, rollout=None))
    cols = ["number", *schemas.OPEN_TIME_COLUMNS, "root_cause"]
    before = plain["opened_at"] < pd.Timestamp(ROLLOUT["at"])
    pd.testing.assert_frame_equal(plain.loc[before, cols], incidents.loc[before, cols])


def test_rollout_is_validated():
    with pytest.raises(ValueError, match="rollout.at"):
        make_incidents(n_incidents=50, rollout={"at": "2026-01-01", "system": "X"})
    with pytest.raises(ValueError, match="already exists"):
        make_incidents(n_incidents=50, rollout={"at": "2024-06-01", "system": "Jira"})
    with pytest.raises(ValueError, match="n_incidents"):
        make_incidents(n_incidents=0)


def test_incidents_are_deterministic_by_seed(incidents):
    pd.testing.assert_frame_equal(incidents, make_incidents(**INCIDENT_ARGS))
    other = make_incidents(**dict(INCIDENT_ARGS, seed=8))
    assert not incidents["short_description"].equals(other["short_description"])


def test_snapshot_at_export_is_the_final_frame(incidents):
    pd.testing.assert_frame_equal(snapshot_incidents(incidents, EXPORT), incidents)


_AS_OF = st.datetimes(min_value=pd.Timestamp("2023-12-30").to_pydatetime(),
                      max_value=pd.Timestamp("2025-01-03").to_pydatetime())  # fmt: skip


@given(as_of=_AS_OF)
@HYPO
def test_snapshot_never_leaks_the_future(incidents, as_of):
    as_of = pd.Timestamp(as_of)
    snap = snapshot_incidents(incidents, as_of)
    schemas.incidents.validate(snap)
    for col in ("opened_at", "sys_updated_at", "resolved_at", "closed_at"):
        assert (snap[col].dropna() <= as_of).all(), col
    assert len(snap) == (incidents["opened_at"] <= as_of).sum()
    is_open = snap["state"].isin(["New", "In Progress", "On Hold"])
    assert (is_open == snap["resolved_at"].isna()).all() and snap.loc[is_open, "made_sla"].isna().all()
    assert ((snap["state"] == "Closed") == snap["closed_at"].notna()).all()


@given(a=_AS_OF, delta=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=120)))
@HYPO
def test_snapshot_of_a_snapshot_is_the_earlier_snapshot(incidents, a, delta):
    later, earlier = pd.Timestamp(a), pd.Timestamp(a) - delta
    pd.testing.assert_frame_equal(
        snapshot_incidents(snapshot_incidents(incidents, later), earlier),
        snapshot_incidents(incidents, earlier),
    )


def test_incident_batches_upsert_back_to_the_final_snapshot(incidents):
    batches = incident_batches(incidents, every="14D", export_at=EXPORT)
    as_ofs = [a for a, _ in batches]
    assert as_ofs == sorted(as_ofs) and as_ofs[-1] == EXPORT and as_ofs[0] == pd.Timestamp("2024-01-15")
    previous = pd.Timestamp.min
    for as_of, batch in batches:
        assert ((batch["sys_updated_at"] > previous) & (batch["sys_updated_at"] <= as_of)).all()
        previous = as_of
    allrows = pd.concat([b for _, b in batches], ignore_index=True)
    assert allrows["number"].duplicated().any(), "incidents change between exports"
    upserted = (
        allrows.sort_values("sys_updated_at", kind="stable")
        .drop_duplicates("number", keep="last")
        .sort_values("number")
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(upserted, incidents.reset_index(drop=True))


# --- Landing files and CLI ---------------------------------------------------------------------
SMALL_PARAMS = {
    "seed": 3,
    "sensors": {"n_sensors": 6, "days": 21, "freq": "1h", "start": "2024-01-01", "missing_rate": 0.01,
                "anomalies_per_sensor": 2, "batch_every": "7D", "resend_overlap": "6h",
                "recalibration": {"at": "2024-01-15", "sensors": 2, "offset_pct": 0.08}},
    "incidents": {"n_incidents": 400, "start": "2024-01-01", "months": 3, "batch_every": "14D",
                  "rollout": {"at": "2024-03-01", "system": "ServiceNow HR portal", "share": 0.15}},
}  # fmt: skip


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_landing_is_deterministic_and_self_describing(tmp_path):
    first = export.write_landing(SMALL_PARAMS, tmp_path / "a")
    export.write_landing(SMALL_PARAMS, tmp_path / "b")
    tree = _tree(tmp_path / "a")
    assert tree == _tree(tmp_path / "b")
    assert not [p for p in tree if p.endswith(".tmp")]
    assert first["seed"] == 3 and first["injected_shifts"]["incident_rollout_at"] == "2024-03-01T00:00:00"
    assert first["injected_shifts"]["sensor_recalibration_at"] == "2024-01-15T00:00:00"
    listed = {f["path"] for f in first["files"]} | {"manifest.json"}
    assert listed == set(tree)
    assert {"sensors/anomaly_windows.csv", "sensors/shifts.csv"} <= listed

    readings = pd.concat(
        [pd.read_csv(tmp_path / "a" / f["path"], parse_dates=["timestamp"]) for f in first["files"]
         if f["path"].startswith("sensors/readings_")]
    ).drop_duplicates(["sensor_id", "timestamp"])  # fmt: skip
    assert len(readings) == first["rows"]["sensor_readings"]
    assert list(readings.columns) == schemas.READING_COLUMNS
    windows = pd.read_csv(tmp_path / "a" / "sensors/anomaly_windows.csv")
    assert list(windows.columns) == schemas.WINDOW_COLUMNS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", windows["start"].iloc[0])

    for f in first["files"]:
        if f["path"].startswith("incidents/"):
            records = json.loads((tmp_path / "a" / f["path"]).read_text())
            assert len(records) == f["rows"]
    last = json.loads((tmp_path / "a" / first["files"][-1]["path"]).read_text())
    assert len(last) > 0 and set(last[0]) == set(schemas.INCIDENT_COLUMNS)
    assert {type(r["made_sla"]) for r in last} <= {bool, type(None)}
    assert all(isinstance(r["priority"], int) for r in last)
    assert any(r["resolved_at"] is None for r in last)


def test_write_landing_removes_batches_of_an_earlier_run(tmp_path):
    stale = tmp_path / "sensors" / "readings_20000101T0000.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    export.write_landing(SMALL_PARAMS, tmp_path)
    assert not stale.exists()


def test_smoke_params_shrink_the_run_and_keep_shift_dates_inside():
    params = {"seed": 1, "sensors": {"days": 60, "start": "2024-01-01", "recalibration": {"at": "2024-02-20"}},
              "incidents": {"n_incidents": 20000}}  # fmt: skip
    smoke = export.smoke_params(params)
    assert smoke["sensors"]["days"] == 21 and smoke["incidents"]["n_incidents"] == 2000
    assert (
        pd.Timestamp("2024-01-01")
        < pd.Timestamp(smoke["sensors"]["recalibration"]["at"])
        < pd.Timestamp("2024-01-22")
    )
    assert params["sensors"]["days"] == 60, "input not changed"


def test_cli_writes_the_landing_zone(tmp_path, capsys):
    import yaml

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"generate": SMALL_PARAMS, "other": {"x": 1}}))
    assert export.main(["--params", str(params_file), "--out", str(tmp_path / "landing"), "--smoke"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("sensors:") and out[1].startswith("incidents:")
    assert (tmp_path / "landing" / "manifest.json").exists()
    (tmp_path / "bad.yaml").write_text("other: 1\n")
    with pytest.raises(SystemExit):
        export.main(["--params", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "x")])
