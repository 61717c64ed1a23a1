"""Similar-incident search: duplicates come back first, neighbours respect time, honest metrics, skops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import config, registry
from ml.data.synth.incidents import make_incidents
from ml.incidents import similar
from ml.incidents.targets import time_split

FAST = {"word_max_features": 5000}


@pytest.fixture(scope="module")
def split():
    return time_split(make_incidents(n_incidents=2000, seed=8), test_fraction=0.2, closed_only=False)


@pytest.fixture(scope="module")
def index(split):
    return similar.fit_similar(split[0], FAST)


def test_only_resolved_incidents_are_indexed(split, index):
    train, _ = split
    assert index.n_indexed_ == int(train["resolved_at"].notna().sum()) < len(train)
    assert set(index.input_columns()) == {"short_description", "description"}


def test_a_duplicate_of_an_indexed_ticket_comes_back_first(split, index):
    train, _ = split
    resolved = train[train["resolved_at"].notna()]
    picks = resolved[resolved["short_description"].str.len() > 25].sample(5, random_state=0)
    copies = picks.assign(number=[f"INC900000{i}" for i in range(5)])
    out = index.query(copies, k=3)
    first = out[out["rank"] == 1].set_index("query")
    assert list(first["number"]) == list(picks["number"])
    assert np.allclose(first["similarity"], 1.0, atol=1e-5)
    assert list(out.columns) == similar.RESULT_COLUMNS and (out.groupby("query").size() == 3).all()
    # a near duplicate (a typo and different casing) still finds the original first
    near = copies.assign(short_description=copies["short_description"].str.upper() + " !!")
    assert list(index.query(near, k=1)["number"]) == list(picks["number"])


def test_results_are_sorted_and_carry_the_resolution(split, index):
    _, test = split
    out = index.query(test.head(20), k=4)
    assert (out.groupby("query")["similarity"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert (out["ttr_hours"] > 0).all() and out["resolved_at"].notna().all()
    hours = (out["resolved_at"] - out["opened_at"]).dt.total_seconds() / 3600
    np.testing.assert_allclose(out["ttr_hours"], hours)


def test_neighbours_are_resolved_before_the_query_opened(split, index):
    _, test = split
    rows = test.head(100)
    out = index.query(rows, k=5, resolved_before="opened_at")
    opened = rows["opened_at"].to_numpy()[out["query"].to_numpy()]
    assert (out["resolved_at"].to_numpy() < opened).all()
    early = index.query(rows.head(3), k=5, resolved_before="2024-01-02")
    assert early.empty or (early["resolved_at"] < pd.Timestamp("2024-01-02")).all()


def test_honest_evaluation_beats_chance(split):
    train, test = split
    metrics, idx = similar.compare_similar(train, test, FAST)
    print({k: round(v, 3) for k, v in metrics.items()})
    majority = test["assignment_group"].value_counts(normalize=True).iloc[0]
    assert metrics["with_neighbour"] > 0.99
    assert metrics["assignment_group_nn_accuracy"] > majority + 0.3
    assert metrics["assignment_group_vote_accuracy"] >= metrics["assignment_group_nn_accuracy"] - 0.05
    assert metrics["category_vote_accuracy"] > 0.8
    votes = idx.vote(test.head(30), "assignment_group", resolved_before="opened_at")
    assert list(votes.columns) == ["nearest", "vote", "vote_share", "top_similarity"]
    assert votes["vote_share"].between(0, 1).all()


def test_empty_and_odd_queries_do_not_crash(index):
    odd = pd.DataFrame({"short_description": [None, "", "ñ" * 5000], "description": [None, "💥", ""]})
    out = index.query(odd, k=2)
    assert set(out["query"]) <= {0, 1, 2} and np.isfinite(out["similarity"]).all()


def test_index_survives_a_skops_round_trip(split, index, tmp_path):
    _, test = split
    sha = registry.save_sklearn(index, tmp_path / "similar")
    loaded = registry.load_sklearn(tmp_path / "similar", sha)
    pd.testing.assert_frame_equal(index.query(test.head(50), k=3), loaded.query(test.head(50), k=3))


def test_params_are_the_triage_similar_section_and_a_typo_is_refused():
    assert similar.make_similar().k == config.section("triage")["similar"]["k"]
    assert similar.make_similar({"k": 2}).k == 2
    with pytest.raises(ValueError, match="triage.similar"):
        similar.make_similar({"kk": 2})
