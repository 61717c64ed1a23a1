"""Exact, faster Isolation Forest scoring for the service (same numbers, bit for bit, less overhead).

sklearn's `IsolationForest.score_samples` walks the trees through joblib with per-tree validation, which
costs ~0.2 ms per tree whatever the batch size: ~35-60 ms for the 200-tree detector on a 24-reading request
on these machines, most of the service's latency budget. `fast_score_samples` does the same arithmetic in
the same order (float32 input, each tree's leaf depth + average path length - 1 summed tree by tree, then
2 ** (-depth / (n_trees * c(max_samples)))), calling each fitted tree's Cython `apply` directly. The result
is identical to sklearn's (tests/test_service.py checks with `np.array_equal`); nothing is refitted or
re-implemented beyond the loop, and the model's saved bytes are untouched.
"""

from __future__ import annotations

import types

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length


def fast_score_samples(forest: IsolationForest, X) -> np.ndarray:
    """`IsolationForest.score_samples(X)` for dense X, with the per-tree overhead removed."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != forest.n_features_in_:
        return IsolationForest.score_samples(forest, X)  # let sklearn raise its own error
    X = np.ascontiguousarray(X)
    depths = np.zeros(X.shape[0], order="f")
    subsample = forest._max_features != X.shape[1]
    for tree, features, path_lengths, avg_lengths in zip(
        forest.estimators_,
        forest.estimators_features_,
        forest._decision_path_lengths,
        forest._average_path_length_per_tree,
        strict=True,
    ):
        leaves = tree.tree_.apply(X[:, features] if subsample else X)
        depths += path_lengths[leaves] + avg_lengths[leaves] - 1.0
    denominator = len(forest.estimators_) * _average_path_length([forest._max_samples])
    scores = 2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))
    return -scores


def accelerate(forest: IsolationForest) -> IsolationForest:
    """Give this fitted forest instance the fast `score_samples` (in memory only; returns the same object)."""
    forest.score_samples = types.MethodType(fast_score_samples, forest)
    return forest
