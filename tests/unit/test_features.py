"""Shared transforms: causal sensor window features, open-time-only incident features, ticket-text cleaning."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from ml import features
from ml.data import schemas
from ml.data.gold import sensor_grid
from ml.data.synth.incidents import make_incidents
from ml.features import GROUP_LOAD, INPUT_COLUMNS, IncidentFeatures, clean_text
from ml.incidents.targets import time_split
from ml.testing.models import sine_readings


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """BLAS/OpenMP on one thread: the runner's cores are shared."""
    with threadpool_limits(1):
        yield


# --- sensors ----------------------------------------------------------------------------------------
def fitted(grid: pd.DataFrame) -> features.SensorWindowFeatures:
    return features.SensorWindowFeatures().fit(grid[grid["timestamp"] < "2024-01-02 06:00"])


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(min_value=30, max_value=70), bump=st.floats(min_value=-1e3, max_value=1e3))
def test_sensor_features_are_causal(cut, bump):
    """Changing readings after time t never changes the features at or before t."""
    grid = sensor_grid(sine_readings(drop=[40]))
    model = fitted(grid)
    base = model.transform(grid)
    changed = grid.copy()
    t_cut = changed["timestamp"].min() + pd.Timedelta(hours=cut)
    changed.loc[changed["timestamp"] > t_cut, "value"] += bump
    after = model.transform(changed)
    past = (grid["timestamp"] <= t_cut).to_numpy()
    pd.testing.assert_frame_equal(base[past], after[past])


def test_features_keep_input_row_order_and_are_finite():
    grid = sensor_grid(sine_readings())
    shuffled = grid.sample(frac=1.0, random_state=0)
    model = fitted(grid)
    f = model.transform(shuffled)
    assert list(f.index) == list(shuffled.index) and list(f.columns) == features.SENSOR_FEATURES
    assert np.isfinite(f.to_numpy()).all()
    pd.testing.assert_frame_equal(f.sort_index(), model.transform(grid).sort_index())


def test_window_features_flag_a_spike_and_a_stuck_value():
    grid = sensor_grid(sine_readings())
    model = fitted(grid)
    cpu1 = grid["sensor_id"] == "cpu-01"
    grid.loc[cpu1 & (grid["timestamp"] == "2024-01-02 12:00"), "value"] = 500.0
    stuck = cpu1 & grid["timestamp"].between("2024-01-03 00:00", "2024-01-03 10:00")
    grid.loc[stuck, "value"] = 42.0
    f = model.transform(grid).set_index([grid["sensor_id"], grid["timestamp"]])
    assert f.loc[("cpu-01", pd.Timestamp("2024-01-02 12:00")), "z_long"] > 10
    assert f.loc[("cpu-01", pd.Timestamp("2024-01-03 10:00")), "flat_run"] == 10
    assert f.loc["cpu-02", "z_long"].abs().max() < 5


def test_unknown_sensor_and_missing_column_are_named():
    grid = sensor_grid(sine_readings())
    model = fitted(grid)
    other = grid.assign(sensor_id="temp-99")
    with pytest.raises(ValueError, match="temp-99"):
        model.transform(other)
    with pytest.raises(ValueError, match="value"):
        model.transform(grid.drop(columns="value"))


# --- incidents --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    """1,500 synthetic incidents with the group load over the whole history, split in time."""
    return time_split(features.add_group_load(make_incidents(n_incidents=1500, seed=11)), test_fraction=0.2)


def test_input_columns_are_open_time_fields_only():
    allowed = set(schemas.OPEN_TIME_COLUMNS) | {GROUP_LOAD}
    assert set(INPUT_COLUMNS) <= allowed
    assert set(IncidentFeatures().input_columns()) <= allowed
    assert not set(INPUT_COLUMNS) & set(schemas.OUTCOME_COLUMNS)


@pytest.mark.parametrize("col", ["made_sla", "resolved_at", "reassignment_count", "owning_team"])
def test_asking_for_a_column_not_known_at_open_time_raises(col, split):
    with pytest.raises(ValueError, match=col):
        IncidentFeatures(categorical_columns=("category", col)).fit(split[0])


def test_features_are_finite_and_named(split):
    train, test = split
    f = IncidentFeatures(text_components=5).fit(train)
    X = f.transform(test)
    assert X.shape == (len(test), len(f.get_feature_names_out())) and np.isfinite(X).all()
    # unseen categories and a missing group load are handled, not errors
    odd = test.drop(columns=[GROUP_LOAD]).assign(assignment_group="A team nobody has seen", location=None)
    assert np.isfinite(f.transform(odd)).all()


def test_training_needs_group_load_and_text_needs_text(split):
    train, _ = split
    with pytest.raises(ValueError, match="add_group_load"):
        IncidentFeatures().fit(train.drop(columns=[GROUP_LOAD]))
    no_text = train.assign(short_description=None, description=None)
    with pytest.raises(ValueError, match="use_text"):
        IncidentFeatures().fit(no_text)
    assert IncidentFeatures(use_text=False).fit(no_text).transform(no_text).shape[0] == len(train)


def test_hours_to_business_counts_to_the_next_working_morning():
    opened = pd.to_datetime(["2024-01-01 10:00", "2024-01-01 07:00", "2024-01-05 19:00", "2024-01-06 12:00"])
    hours = features.hours_to_business(opened)  # Mon 10:00, Mon 07:00, Fri 19:00, Sat 12:00
    np.testing.assert_array_equal(hours, [0.0, 1.0, 61.0, 44.0])


def test_group_load_counts_only_earlier_incidents_of_the_same_group():
    t = pd.Series(
        pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-02 03:00"])
    )
    g = pd.Series(["A", "A", "B", "A"])
    assert list(features.group_load(t, g)) == [0, 1, 0, 0]


@pytest.mark.parametrize(
    "text,expected", [(("Disk full", "node 3"), "Disk full. node 3"), ((None, None), "")]
)
def test_incident_text_joins_fields(text, expected):
    df = pd.DataFrame({"short_description": [text[0]], "description": [text[1]]})
    assert features.incident_text(df).iloc[0] == expected


# --- ticket text --------------------------------------------------------------------------------------
def test_clean_text_normalises_and_masks_identifiers():
    raw = (
        "URGENT:  VPN   error 809, see https://kb.corp/x?id=1 or mail it@corp.com (INC0012345) tel 0612345678"
    )
    out = clean_text(raw)
    assert out == "urgent: vpn error 809, see urltoken or mail emailtoken ( tickettoken ) tel numtoken"
    # short codes kept, full-width letters folded
    assert clean_text("ORA-01653 on ｏｒａｄｂ") == "ora-01653 on oradb"
    for missing in (None, float("nan"), np.nan, pd.NA, pd.NaT, ""):
        assert clean_text(missing) == ""
    assert clean_text(12345) == "12345"
    assert len(clean_text("x" * 1_000_000)) == 2000


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=300), st.floats(), st.integers()), st.integers(1, 500))
def test_clean_text_never_crashes_is_bounded_and_deterministic(value, max_chars):
    out = clean_text(value, max_chars)
    assert isinstance(out, str) and len(out) <= max_chars
    assert out == clean_text(value, max_chars)
    assert out == out.strip() and "  " not in out


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200))
def test_clean_text_is_idempotent_on_ascii(value):
    once = clean_text(value)
    assert clean_text(once) == once


def test_clean_text_handles_a_megabyte_quickly():
    start = time.perf_counter()
    out = clean_text(("Outlook crashed " + "é" * 50 + " https://x.y/z ") * 40_000)
    assert len(out) <= 2000 and time.perf_counter() - start < 1.0
