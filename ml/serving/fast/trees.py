"""Fitted tree ensembles packed into flat numpy arrays: every tree walked at once, one level per step.

Why arrays and not treelite: the same scores within a float rounding of sklearn's own (bit for bit in
practice: the same float32 / float64 comparisons, the leaf values added tree by tree in sklearn's order),
no compiler or extra dependency in the Bento, nothing to rebuild when sklearn changes its tree format
(the packing reads the fitted trees' public arrays), and fast enough: a 200-tree forest on 24 rows in
~0.1-0.3 ms. treelite measured about the same per call but adds a native build step and its own float
handling that would need its own equality proof.

A node whose children are itself (the leaves) is a fixed point of the walk, so `depth` steps put every
(row, tree) pair on its leaf without branching per tree. A shallow forest (the Isolation Forest: depth
log2(max_samples)) is also stored level by level as complete binary trees (`_levels`): a step then reads
no child array, about a third less work per level than the general walk.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


class Unsupported(Exception):
    """The fitted object has a shape the compiler does not know; the caller serves the slow path."""


def _pack(trees, node_fields):
    """Concatenate per-tree node arrays; children become global ids, leaves point at themselves."""
    feats, thrs, kids, leafvals, extras, roots = [], [], [], [], [], []
    offset, depth = 0, 0
    for tree in trees:
        feature, threshold, left, right, leaf_value, extra, tree_depth = node_fields(tree)
        n = len(feature)
        ids = np.arange(n) + offset
        is_leaf = left < 0
        left = np.where(is_leaf, ids, left + offset)
        right = np.where(is_leaf, ids, right + offset)
        feats.append(np.where(is_leaf, 0, feature))
        thrs.append(threshold)
        kids.append(np.column_stack([left, right]).ravel())
        leafvals.append(leaf_value)
        extras.append(extra)
        roots.append(offset)
        offset += n
        depth = max(depth, int(tree_depth))
    children = np.concatenate(kids).astype(np.intp)
    # children of node i are at 2i (left) and 2i+1 (right) of `children`
    return (
        np.concatenate(feats).astype(np.intp),
        np.concatenate(thrs).astype(np.float64),
        children,
        np.concatenate(leafvals).astype(np.float64),
        np.concatenate(extras) if extras and extras[0] is not None else None,
        np.asarray(roots, dtype=np.intp),
        depth,
    )


def _walk(X, feature, threshold, children, roots, depth, missing_left=None) -> np.ndarray:
    """Leaf id per (row, tree): left when x <= threshold (NaN: `missing_left` per node, else right)."""
    n, width = X.shape
    flat = X.ravel()
    base = np.repeat(np.arange(n, dtype=np.intp) * width, len(roots))
    idx = np.tile(roots, n)
    nan = missing_left is not None and bool(np.isnan(flat).any())
    for _ in range(depth):
        x = flat.take(base + feature.take(idx))
        right = x > threshold.take(idx)
        if nan:
            right |= np.isnan(x) & ~missing_left.take(idx)
        idx = children.take(idx + idx + right)
    return idx.reshape(n, len(roots))


MAX_LEVEL_NODES = 1 << 21  # the level layout's size limit (trees x 2**depth leaves); beyond it, `_walk`


def _float32_at_most(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold: for a float32 x, `x <= t` iff `x <= that`."""
    t32 = threshold.astype(np.float32)
    over = t32.astype(np.float64) > threshold
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


def _levels(trees, depth: int):
    """Trees as complete binary trees stored level by level (tree-major): the node at position j of tree t
    on level L sits at t * 2**L + j of that level's arrays, so its children are at 2g and 2g + 1 of the
    next level's: no child arrays to read. A leaf above the last level is continued by nodes that always
    go left (threshold +inf), down to the last level, which holds the leaf values."""
    n_trees = len(trees)
    feats = [np.zeros((n_trees, 1 << level), dtype=np.intp) for level in range(depth)]
    thrs = [np.full((n_trees, 1 << level), np.inf, dtype=np.float32) for level in range(depth)]
    leaves = np.zeros((n_trees, 1 << depth))
    for t, (feature, threshold, left, right, value) in enumerate(trees):
        node = np.zeros(1, dtype=np.intp)
        for level in range(depth):
            leaf = left[node] < 0
            feats[level][t] = np.where(leaf, 0, feature[node])
            thrs[level][t] = np.where(leaf, np.inf, _float32_at_most(threshold[node].astype(np.float64)))
            node = np.column_stack([np.where(leaf, node, left[node]), np.where(leaf, node, right[node])])
            node = node.ravel()
        if np.any(left[node] >= 0):
            raise Unsupported("a tree is deeper than its max_depth")
        leaves[t] = value[node]
    return [f.ravel() for f in feats], [t.ravel() for t in thrs], leaves.ravel()


@lru_cache(maxsize=8)  # a few request sizes; bounded (1,000 rows x 200 trees: 3 MB)
def _starts(n: int, width: int, n_trees: int) -> tuple[np.ndarray, np.ndarray]:
    """Per (row, tree), row-major: the row's offset in the flattened input, and the tree's root (shared:
    read-only)."""
    base = np.repeat(np.arange(n, dtype=np.intp) * width, n_trees)
    roots = np.tile(np.arange(n_trees, dtype=np.intp), n)
    base.flags.writeable = roots.flags.writeable = False
    return base, roots


def _walk_levels(X, feats, thrs, leaves, n_trees: int) -> np.ndarray:
    """Leaf value per (row, tree) of the level layout: right when x > threshold (float32, see above)."""
    n, width = X.shape
    flat = X.ravel()
    base, roots = _starts(n, width, n_trees)
    g = roots.copy()
    for feature, threshold in zip(feats, thrs, strict=True):
        right = flat.take(base + feature.take(g)) > threshold.take(g)
        g += g
        g += right
    return leaves.take(g).reshape(n, n_trees)


def _in_order_sum(values: np.ndarray, start=None) -> np.ndarray:
    """Row sums added left to right (sklearn's order; `np.sum` pairs terms differently)."""
    if start is not None:
        values = np.column_stack([np.broadcast_to(start, (values.shape[0],)), values])
    if values.shape[1] == 0:
        return np.zeros(values.shape[0])
    return np.cumsum(values, axis=1)[:, -1]


def average_path_length(n) -> np.ndarray:
    """sklearn's c(n), the average path length of an unsuccessful BST search (same expression)."""
    n = np.asarray(n, dtype=float).reshape(-1)
    out = np.zeros_like(n)
    mask1, mask2 = n <= 1, n == 2
    rest = ~(mask1 | mask2)
    out[mask2] = 1.0
    out[rest] = 2.0 * (np.log(n[rest] - 1.0) + np.euler_gamma) - 2.0 * (n[rest] - 1.0) / n[rest]
    return out


class PackedIsolationForest:
    """`IsolationForest.score_samples` of a fitted forest (dense input), from packed arrays."""

    def __init__(self, forest):
        try:
            estimators = list(forest.estimators_)
            features = list(forest.estimators_features_)
            path_lengths = list(forest._decision_path_lengths)  # what score_samples itself reads
            avg_lengths = list(forest._average_path_length_per_tree)
            max_samples = forest._max_samples
            self.n_features = int(forest.n_features_in_)
            subsample = forest._max_features != self.n_features
        except AttributeError as exc:
            raise Unsupported(f"not a fitted sklearn IsolationForest ({exc})") from exc

        def fields(i):
            t = estimators[i].tree_
            feat = t.feature.clip(0)  # leaves say -2
            if subsample:  # each tree saw its own columns (sklearn: only when max_features < all)
                feat = np.asarray(features[i])[feat]
            value = path_lengths[i] + avg_lengths[i] - 1.0
            return feat, t.threshold, t.children_left, t.children_right, value, None, t.max_depth

        (self.feature, self.threshold, self.children, self.leaf_value, _, self.roots, self.depth) = _pack(
            range(len(estimators)), fields
        )
        self.n_trees = len(estimators)
        self.levels = None  # a shallow forest (Isolation Forests are: depth log2(max_samples)): level layout
        if self.n_trees and self.n_trees << self.depth <= MAX_LEVEL_NODES:
            self.levels = _levels([fields(i)[:5] for i in range(self.n_trees)], self.depth)
        self.denominator = len(estimators) * average_path_length([max_samples])[0]

    def score_samples(self, X) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)  # sklearn's trees compare float32 inputs
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {X.shape}")
        if self.levels is not None:
            depths = _in_order_sum(_walk_levels(X, *self.levels, self.n_trees))
        else:
            leaves = _walk(X, self.feature, self.threshold, self.children, self.roots, self.depth)
            depths = _in_order_sum(self.leaf_value[leaves])
        ratio = np.divide(depths, self.denominator, out=np.ones_like(depths), where=self.denominator != 0)
        return -(2 ** (-ratio))


class PackedHistGradientBoosting:
    """`HistGradientBoostingClassifier.decision_function` (binary, numeric features) from packed arrays."""

    def __init__(self, model):
        try:
            predictors = model._predictors  # the fitted TreePredictor list sklearn itself walks
            baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
            n_trees = int(model.n_trees_per_iteration_)
            self.n_features = int(model.n_features_in_)
        except AttributeError as exc:
            raise Unsupported(f"not a fitted HistGradientBoosting model ({exc})") from exc
        if n_trees != 1 or baseline.size != 1:
            raise Unsupported(f"{n_trees} trees per iteration (only binary / regression is compiled)")
        if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
            raise Unsupported("native categorical features are not compiled")
        trees = [p[0].nodes for p in predictors]
        if any(np.any(nodes["is_categorical"]) for nodes in trees):
            raise Unsupported("a tree splits on a categorical feature")

        def fields(nodes):
            leaf = nodes["is_leaf"].astype(bool)
            left = np.where(leaf, -1, nodes["left"].astype(np.intp))
            right = np.where(leaf, -1, nodes["right"].astype(np.intp))
            depth = int(nodes["depth"].max()) if len(nodes) else 0
            mgl = nodes["missing_go_to_left"].astype(bool)
            return nodes["feature_idx"], nodes["num_threshold"], left, right, nodes["value"], mgl, depth

        (
            self.feature,
            self.threshold,
            self.children,
            self.leaf_value,
            self.missing_left,
            self.roots,
            self.depth,
        ) = _pack(trees, fields)
        self.baseline = float(baseline[0])

    def decision_function(self, X) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {X.shape}")
        if len(self.roots) == 0:
            return np.full(X.shape[0], self.baseline)
        leaves = _walk(
            X, self.feature, self.threshold, self.children, self.roots, self.depth, self.missing_left
        )
        return _in_order_sum(self.leaf_value[leaves], start=self.baseline)
