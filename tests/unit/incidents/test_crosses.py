"""The sparse logistic model on one-hot fields and field crosses, its blend into the breach and group
models, and the group model's rare-group class: probabilities stay proper, outcomes are never read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.data import schemas
from ml.data.synth.incidents import make_incidents
from ml.incidents import hgb, history
from ml.incidents.crosses import MISSING, CrossLogit, cross_tokens
from ml.incidents.targets import breach_target, count_cutoff, time_split

CFG = history.HistoryConfig(("caller_id", "category"), ("caller_id", "category"), 7.0, routing_shares=True)
FAST = {"max_iter": 15, "learning_rate": 0.2, "max_leaf_nodes": 7, "min_samples_leaf": 20}
CATS = ("location", "category", "subcategory")
CROSSES = ("category+subcategory", "location+category")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    incidents = make_incidents(n_incidents=1000, seed=11).sort_values(["opened_at", "number"])
    return history.add_history(incidents.reset_index(drop=True), CFG)


def test_cross_tokens_join_fields_and_mark_missing_values():
    X = pd.DataFrame({"a": ["x", None, "y"], "b": ["1", "2", None]})
    tokens = cross_tokens(X, ["a", "a+b", "absent"])
    assert tokens["a"].tolist() == ["x", MISSING, "y"]
    assert tokens["a+b"].iloc[0] == "x\x1f1" and tokens["a+b"].iloc[1:].eq(MISSING).all()
    assert tokens["absent"].eq(MISSING).all()


def test_cross_logit_ranks_unseen_values_and_records_without_columns(frame):
    y = frame["assignment_group"]
    rows = frame[y.notna()]
    model = CrossLogit(CATS, CROSSES).fit(rows, y[y.notna()])
    bare = rows[["location"]].head(4).assign(location=["never seen", None, "x", "y"])
    P = model.predict_proba(bare)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert P.shape == (4, len(model.classes_))
    with pytest.raises(ValueError, match="none of the configured columns"):
        CrossLogit(("nope",)).fit(rows, y[y.notna()])


def test_breach_blend_ignores_outcomes_and_moves_the_probability(frame):
    train, test = time_split(frame, cutoff=count_cutoff(frame, 0.2), closed_only=False)
    y = breach_target(train)
    rows, y = train[y.notna()], y[y.notna()]
    trees = hgb.BreachClassifier(categorical_columns=CATS, **FAST).fit(rows, y)
    blend = hgb.BreachClassifier(categorical_columns=CATS, crosses=CROSSES, cross_weight=0.5, **FAST)
    blend.fit(rows, y)
    P, Q = trees.predict_proba(test), blend.predict_proba(test)
    np.testing.assert_allclose(Q.sum(axis=1), 1.0)
    assert not np.allclose(P, Q)
    scrambled = test.copy()
    for col in [c for c in schemas.OUTCOME_COLUMNS if c in scrambled]:
        scrambled[col] = None
    np.testing.assert_array_equal(blend.predict_proba(scrambled), Q)


def test_rare_groups_share_one_tree_class_but_keep_their_own_probability(frame):
    y = frame["assignment_group"].copy()
    y.iloc[:6] = ["rare_a", "rare_a", "rare_b", "rare_b", "rare_c", "rare_c"]
    rows, y = frame[y.notna()].drop(columns=["assignment_group"]), y[y.notna()]
    model = hgb.GroupClassifier(categorical_columns=CATS, min_group_count=3, **FAST).fit(rows, y)
    assert set(model.rare_) >= {"rare_a", "rare_b", "rare_c"}
    assert hgb.RARE in model.model_.classes_ and hgb.RARE not in model.classes_
    assert set(model.classes_) == set(y.astype(str))
    P = model.predict_proba(rows)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    rare = np.isin(model.classes_, model.rare_)
    assert (P[:, rare] > 0).any(axis=0).all()
    blend = hgb.GroupClassifier(categorical_columns=CATS, min_group_count=3, crosses=CROSSES,
                                cross_weight=0.5, prior_weight=0.2, **FAST).fit(rows, y)  # fmt: skip
    np.testing.assert_allclose(blend.predict_proba(rows).sum(axis=1), 1.0)
    bare = rows[["opened_at", "location", "category"]].head(3)
    assert all(len(set(r)) == 3 for r in blend.ranked(bare, 3))
