"""The group model's second stage: it learns from out-of-sample candidates which signal to trust, keeps the
probabilities proper and the top-k in its own order, reads no outcome, and still ranks bare records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.data import schemas
from ml.data.synth.incidents import make_incidents
from ml.incidents import hgb, history
from ml.incidents.rerank import CandidateReranker, Components, candidate_features, routing_keys

CFG = history.HistoryConfig(("caller_id", "category"), ("caller_id", "category"), 7.0, "opened", True)
FAST = {"max_iter": 15, "learning_rate": 0.2, "max_leaf_nodes": 7, "min_samples_leaf": 20}
CATS = ("location", "category", "subcategory")
RERANK = {"fraction": 0.25, "k": 4, "max_iter": 30, "min_samples_leaf": 10}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    incidents = make_incidents(n_incidents=1000, seed=5).sort_values(["opened_at", "number"])
    return history.add_history(incidents.reset_index(drop=True), CFG)


def toy(n: int, seed: int) -> tuple[pd.DataFrame, Components, np.ndarray, np.ndarray]:
    """The first stage ranks the true group second; only the caller's latest group says which one it is."""
    rng = np.random.default_rng(seed)
    classes = np.array(["g0", "g1", "g2", "g3"])
    blend = np.tile([0.4, 0.3, 0.2, 0.1], (n, 1))
    truth = np.where(rng.random(n) < 0.7, "g1", "g0")
    latest = np.where(rng.random(n) < 0.9, truth, "g3")  # usually the true group
    X = pd.DataFrame({"last_group_caller_id": latest})
    return X, Components(blend, None, None, blend), classes, truth


def test_reranker_learns_to_trust_the_signal_the_blend_ignores():
    X, comps, classes, truth = toy(600, 0)
    model = CandidateReranker(k=3, max_iter=30, min_samples_leaf=10).fit(
        X, comps, classes, np.zeros(4), truth
    )
    Xt, ct, _, yt = toy(400, 1)
    P = model.rerank(Xt, ct, classes, np.zeros(4))
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    first = classes[P.argmax(axis=1)]
    assert (first == yt).mean() > 0.8 > (classes[ct.blend.argmax(axis=1)] == yt).mean()
    assert (P[:, 3] <= P[:, :3].min(axis=1)).all()  # the non-candidate stays below every candidate
    F, cand = candidate_features(Xt, ct, classes, np.zeros(4), 3, routing_keys(Xt))
    assert F.shape[0] == 400 * 3 and cand.shape == (400, 3)
    with pytest.raises(ValueError, match="nothing to learn"):
        CandidateReranker(k=4).fit(X, comps, classes, np.zeros(4), np.full(600, "unseen"))


def test_group_model_with_a_second_stage_ranks_in_its_order_and_reads_no_outcome(frame):
    y = frame["assignment_group"]
    rows, y = frame[y.notna()].drop(columns=["assignment_group"]), y[y.notna()]
    model = hgb.GroupClassifier(categorical_columns=CATS, prior_weight=0.2, rerank=RERANK, **FAST)
    model.fit(rows, y)
    assert model.reranker_ is not None and "share_caller_id" in model.reranker_.features_
    P = model.predict_proba(rows)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    first = hgb.GroupClassifier(categorical_columns=CATS, prior_weight=0.2, **FAST).fit(rows, y)
    assert not np.allclose(P, first.predict_proba(rows))  # same first stage, re-ranked
    ranked = model.ranked(rows.head(50), 3)
    assert ranked == [list(model.classes_[np.argsort(-p, kind="stable")[:3]]) for p in P[:50]]
    scrambled = rows.copy()
    for col in [c for c in schemas.OUTCOME_COLUMNS if c in scrambled]:
        scrambled[col] = None
    np.testing.assert_array_equal(model.predict_proba(scrambled), P)
    bare = rows[["opened_at", "location", "category"]].head(3)  # a request: no history columns
    assert all(len(set(r)) == 3 for r in model.ranked(bare, 3))
    small = hgb.GroupClassifier(categorical_columns=CATS, rerank=RERANK, **FAST).fit(
        rows.head(150), y.head(150)
    )
    assert small.reranker_ is None  # too few latest rows (< 50) to learn a second stage from
    head = np.arange(len(y)) < len(y) - int(len(y) * RERANK["fraction"])
    one_before = hgb.GroupClassifier(categorical_columns=CATS, rerank=RERANK, **FAST)
    one_before.fit(rows, y.where(~head, "the only group"))  # no ranking to learn before the latest rows
    assert one_before.reranker_ is None and len(one_before.ranked(rows.head(3), 2)[0]) == 2
