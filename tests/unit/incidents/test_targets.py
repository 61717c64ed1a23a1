"""Targets and the time-ordered split: train on the past, test on the latest incidents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.data.synth.incidents import make_incidents
from ml.incidents.targets import breach_target, is_closed, sort_by_time, time_split, ttr_hours_target


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    return make_incidents(n_incidents=1500, seed=11)


def test_time_split_trains_on_the_past_and_keeps_closed_incidents(incidents):
    train, test = time_split(incidents, test_fraction=0.2)
    assert train["opened_at"].max() < test["opened_at"].min()
    assert is_closed(train).all() and is_closed(test).all()
    assert len(train) + len(test) == int(is_closed(incidents).sum())
    span = incidents["opened_at"].max() - incidents["opened_at"].min()
    assert test["opened_at"].min() >= incidents["opened_at"].max() - 0.2 * span
    cut = pd.Timestamp("2024-07-01")
    a, b = time_split(incidents, cutoff=cut)
    assert a["opened_at"].max() < cut <= b["opened_at"].min()


def test_time_split_refuses_an_empty_side_and_a_bad_fraction(incidents):
    with pytest.raises(ValueError, match="test_fraction"):
        time_split(incidents, test_fraction=1.5)
    with pytest.raises(ValueError, match="cutoff"):
        time_split(incidents, cutoff=incidents["opened_at"].max() + pd.Timedelta("1D"))


def test_targets_read_gold_or_silver_columns_alike(incidents):
    silver = incidents.head(200)
    gold = pd.DataFrame(
        {
            "target_breached": (~silver["made_sla"].astype("boolean")).astype("boolean"),
            "target_ttr_hours": (silver["resolved_at"] - silver["opened_at"]).dt.total_seconds() / 3600.0,
        }
    )
    pd.testing.assert_series_equal(breach_target(silver), breach_target(gold))
    pd.testing.assert_series_equal(ttr_hours_target(silver), ttr_hours_target(gold))
    assert np.isnan(breach_target(silver)[silver["made_sla"].isna()]).all()


def test_sort_by_time_breaks_ties_by_number():
    frame = pd.DataFrame({"opened_at": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-01"]),
                          "number": ["INC3", "INC2", "INC1"]})  # fmt: skip
    assert list(sort_by_time(frame)["number"]) == ["INC1", "INC2", "INC3"]
