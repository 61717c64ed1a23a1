"""Routing history of the initial group: the per-key share of each group among earlier tickets, known only
from when each earlier ticket's group was recorded, and the group model's blend with that prior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.data.synth.incidents import make_incidents
from ml.incidents import datasets, hgb, history

KEYS = ("caller_id", "location", "category+subcategory")
FAST = {"max_iter": 20, "learning_rate": 0.2, "max_leaf_nodes": 7, "min_samples_leaf": 20}


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    frame = make_incidents(n_incidents=1200, seed=7).sort_values(["opened_at", "number"])
    return frame.reset_index(drop=True)


def toy() -> pd.DataFrame:
    t, h = pd.Timestamp("2024-01-01"), pd.Timedelta("1h")
    return pd.DataFrame(
        {
            "opened_at": [t, t + h, t + 2 * h, t + 5 * h],
            "routed_at": [t + 3 * h, t + h, t + 2 * h, t + 5 * h],  # A's group is logged only at +3h
            "resolved_at": [pd.NaT] * 4,
            "caller_id": ["x", "x", "x", "x"],
            "assignment_group": ["g1", "g2", "g2", "g1"],
        }
    )


def test_a_group_counts_only_once_it_was_recorded_before_the_query_opened():
    out = history.routing_shares(toy(), toy(), ("caller_id",), half_life_days=1e9, known_at="opened")
    assert out["top_group_caller_id"].isna().tolist() == [True, True, False, False]
    assert out["share_caller_id__g2"].iloc[2] == 1.0  # C (+2h) knows B only: A is logged at +3h
    assert out["share_caller_id__g1"].iloc[3] == pytest.approx(1 / 3)  # D knows A, B, C
    last = history.routing_history(toy(), toy(), ("caller_id",), "opened")["last_group_caller_id"]
    assert last.iloc[2] == "g2" and last.iloc[3] == "g1"  # the latest RECORDED before D: A (+3h)
    no_log = history.routing_shares(toy().drop(columns="routed_at"), toy(), ("caller_id",), 7.0, "opened")
    assert no_log["share_caller_id__g1"].iloc[1] == 1.0  # without routed_at: known once opened
    assert datasets.ROUTED_AT == history.ROUTED_AT  # the column the loader writes is the one read here


def test_recency_weighting_favours_the_latest_groups():
    t, d = pd.Timestamp("2024-01-01"), pd.Timedelta("1D")
    frame = pd.DataFrame({"opened_at": [t, t + d, t + 2 * d, t + 30 * d], "resolved_at": [pd.NaT] * 4,
                          "caller_id": ["x"] * 4, "assignment_group": ["old", "old", "new", "q"]})  # fmt: skip
    out = history.routing_shares(frame, frame, ("caller_id",), half_life_days=1.0, known_at="opened")
    assert out["top_group_caller_id"].iloc[3] == "new"  # weights 1 (new) vs 0.5 + 0.25 (old)
    assert out["top_share_caller_id"].iloc[3] == pytest.approx(1 / 1.75)


@pytest.mark.parametrize("known_at", ["opened", "resolved"])
def test_changing_later_groups_changes_no_earlier_routing_feature(incidents, known_at):
    """Causality: a group recorded (or a ticket resolved) at or after t changes nothing opened before t."""
    cut = incidents["opened_at"].iloc[len(incidents) // 2]
    when = history.routed_time(incidents) if known_at == "opened" else history.done_time(incidents)
    later = (when >= cut) | when.isna()
    scrambled = incidents.copy()
    scrambled.loc[later, "assignment_group"] = scrambled.loc[later, "assignment_group"].to_numpy()[::-1]
    a = history.routing_shares(incidents, incidents, KEYS, 7.0, known_at)
    b = history.routing_shares(scrambled, scrambled, KEYS, 7.0, known_at)
    before = (incidents["opened_at"] < cut).to_numpy()
    cols = [c for c in a.columns if c in b.columns]
    pd.testing.assert_frame_equal(a.loc[before, cols], b.loc[before, cols])
    assert not a.loc[~before, cols].equals(b.loc[~before, cols])


def test_group_model_blends_the_routing_prior_and_still_ranks_bare_records(incidents):
    cfg = history.HistoryConfig(("caller_id",), KEYS, 7.0, "opened", routing_shares=True)
    frame = history.add_history(incidents, cfg)
    y = frame["assignment_group"]
    rows = frame[y.notna()].drop(columns=["assignment_group"])
    plain = hgb.GroupClassifier(categorical_columns=("location", "category"), **FAST).fit(rows, y[y.notna()])
    blend = hgb.GroupClassifier(categorical_columns=("location", "category"), prior_weight=0.5, **FAST)
    blend.fit(rows, y[y.notna()])
    P, Q = plain.predict_proba(rows), blend.predict_proba(rows)
    np.testing.assert_allclose(Q.sum(axis=1), 1.0)
    assert not np.allclose(P, Q)
    bare = incidents[["opened_at", "location", "category", "impact", "urgency", "priority"]].head(5)
    np.testing.assert_allclose(blend.predict_proba(bare), plain.predict_proba(bare))  # no history: trees only
    assert all(len(set(r)) == 3 for r in blend.ranked(bare, 3))
