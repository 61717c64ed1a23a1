"""Second stage of the group model: re-rank each ticket's best candidate groups, learned out of sample.

`ml.incidents.hgb.GroupClassifier` scores every group with up to three components: its trees, the sparse
logistic model on field crosses and the routing prior (each group's share among the earlier tickets of the
same caller, location, ...). A fixed blend of them ranks well on average but cannot tell when to trust which:
a caller with a long routing history against a ticket from a new location, say. `CandidateReranker` takes
each ticket's `k` best groups by the blend and scores every (ticket, candidate) pair with a small binary
gradient-boosting model on
- the candidate's probability under each component and under the blend, its rank under each, and the
  blend's best probability for the ticket (how sure the first stage is);
- per routing key: the candidate's recency-weighted share among the key's earlier tickets, whether it is the
  group of the key's latest earlier ticket, and how many earlier tickets the key has;
- how often the candidate group occurs in the first stage's training rows (log count).
The features mean the same for every group, so one model serves every group, including groups it never saw
as candidates. It must be fitted on tickets the first stage did not train on (GroupClassifier fits it on the
latest `fraction` of its training rows, with a first stage fitted on the rest), so it learns how far the
first stage's scores hold out of sample. Records without routing columns (a bare request) get "no history"
values, as in the first stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier

from ml.incidents.history import share_columns


@dataclass(frozen=True)
class Components:
    """Per ticket (rows) and group (columns, the classifier's classes): each component's probability."""

    trees: np.ndarray
    cross: np.ndarray | None  # the sparse logistic model, when blended
    prior: np.ndarray | None  # the routing prior; NaN rows where no key has earlier tickets
    blend: np.ndarray  # what the first stage predicts


def _ranks(P: np.ndarray) -> np.ndarray:
    """Each group's rank per row (0: the most likely), ties by column order."""
    order = np.argsort(-P, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(P.shape[1])[None, :], axis=1)
    return ranks


def routing_keys(X: pd.DataFrame) -> list[str]:
    """The routing keys whose share or latest-group columns the records carry."""
    keys = {c[len("share_") :].split("__", 1)[0] for c in share_columns(X)}
    keys |= {c[len("last_group_") :] for c in X.columns if c.startswith("last_group_")}
    return sorted(keys)


def candidate_features(
    X: pd.DataFrame, comps: Components, classes: np.ndarray, log_count: np.ndarray, k: int, keys: list[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (ticket, candidate) for the `k` best groups by the blend, ticket-major, and the candidates'
    column indices (tickets x k)."""
    n, k = len(X), min(int(k), len(classes))
    B = comps.blend
    cand = np.argsort(-B, axis=1, kind="stable")[:, :k]
    rows, c = np.repeat(np.arange(n), k), cand.ravel()
    F = {
        "blend": B[rows, c],
        "rank": np.tile(np.arange(k), n).astype(float),
        "best": np.repeat(B[np.arange(n), cand[:, 0]], k),
        "trees": comps.trees[rows, c],
        "rank_trees": _ranks(comps.trees)[rows, c].astype(float),
    }
    if comps.cross is not None:
        F |= {"cross": comps.cross[rows, c], "rank_cross": _ranks(comps.cross)[rows, c].astype(float)}
    if comps.prior is not None:
        F["prior"] = np.nan_to_num(comps.prior, nan=-1.0)[rows, c]
    index = {str(g): i for i, g in enumerate(classes)}
    names = np.asarray(classes, dtype=object)[c].astype(str)
    for key in keys:
        share = np.full((n, len(classes)), -1.0)
        for col, group in share_columns(X, key).items():
            if group in index:
                share[:, index[group]] = np.nan_to_num(X[col].to_numpy(dtype=float), nan=-1.0)
        F[f"share_{key}"] = share[rows, c]
        last = X[f"last_group_{key}"] if f"last_group_{key}" in X else pd.Series([None] * n, index=X.index)
        F[f"latest_{key}"] = (last.astype(str).to_numpy()[rows] == names).astype(float)
        seen = X[f"hist_{key}_n_opened"] if f"hist_{key}_n_opened" in X else pd.Series(np.nan, index=X.index)
        F[f"earlier_{key}"] = np.nan_to_num(seen.to_numpy(dtype=float), nan=0.0)[rows]
    F["log_count"] = np.asarray(log_count, dtype=float)[c]
    return pd.DataFrame(F), cand


class CandidateReranker(BaseEstimator):
    """Re-rank the `k` best groups of the first stage with a binary HGB on (ticket, candidate) features."""

    def __init__(self, k=10, max_iter=100, learning_rate=0.05, max_leaf_nodes=7, min_samples_leaf=50,
                 random_state=0):  # fmt: skip
        self.k = k
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, comps: Components, classes, log_count, y) -> CandidateReranker:
        """`comps` are a first stage's scores of `X`, tickets it did not train on; `y` their groups."""
        self.keys_ = routing_keys(X)
        F, cand = candidate_features(X, comps, np.asarray(classes), log_count, self.k, self.keys_)
        truth = np.asarray(y, dtype=object).astype(str)
        hit = np.asarray(classes, dtype=object)[cand].astype(str) == truth[:, None]
        if hit.all() or not hit.any():
            raise ValueError(
                "CandidateReranker: no candidate or every candidate is the true group; nothing to learn"
            )
        self.model_ = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, early_stopping=False, random_state=self.random_state,
        ).fit(F, hit.ravel().astype(int))  # fmt: skip
        self.features_ = list(F.columns)
        return self

    def rerank(self, X: pd.DataFrame, comps: Components, classes, log_count) -> np.ndarray:
        """The blend's probabilities with the candidates' mass shared out by the second stage's scores; every
        candidate stays above every other group, so the top-k is the second stage's order."""
        F, cand = candidate_features(X, comps, np.asarray(classes), log_count, self.k, self.keys_)
        s = self.model_.predict_proba(F[self.features_])[:, 1].reshape(cand.shape)
        s = np.maximum(s, 1e-12)
        P = comps.blend.copy()
        mass = np.take_along_axis(P, cand, axis=1).sum(axis=1, keepdims=True)
        new = mass * s / s.sum(axis=1, keepdims=True)
        P = np.minimum(P, new.min(axis=1, keepdims=True))
        np.put_along_axis(P, cand, new, axis=1)
        return P / P.sum(axis=1, keepdims=True)
