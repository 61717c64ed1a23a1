"""Similar past incidents: cosine nearest neighbours over the ticket text, with how each was resolved.

`SimilarIncidents` indexes resolved incidents with the same `IncidentTextFeatures` the triage models use
(text only by default; metadata can be added with a weight) and answers "which resolved incidents look
like this ticket": number, similarity, short description, group, category, system, hours to resolve,
resolved_at and state. Its state is numpy arrays, a scipy sparse matrix and sklearn objects, so it saves
with skops like every other model (`ml.registry.save_sklearn`).

Honest evaluation (`evaluate_similar`): a query may only see neighbours resolved BEFORE it was opened
(`resolved_before="opened_at"`), as the service desk would at that moment; the score is whether the
nearest neighbour's group (or a similarity-weighted vote of the k nearest) is the ticket's true group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from ml import config
from ml.incidents.targets import sort_by_time
from ml.incidents.text import IncidentTextFeatures

PAYLOAD_COLUMNS = ("number", "short_description", "assignment_group", "category", "cmdb_ci", "state")
RESULT_COLUMNS = [
    "query",
    "query_number",
    "rank",
    "number",
    "similarity",
    "short_description",
    "assignment_group",
    "category",
    "cmdb_ci",
    "ttr_hours",
    "opened_at",
    "resolved_at",
    "state",
]
_NAT = np.iinfo(np.int64).min


def similar_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `triage: similar:` section of the params: `params` merged over params.yaml's."""
    return config.section("triage", {"similar": dict(params or {})})["similar"]


def _ns(values) -> np.ndarray:
    """Timestamps -> int64 nanoseconds with NaT as int64 min (skops-safe, comparable)."""
    t = pd.to_datetime(pd.Series(values), errors="coerce")
    out = t.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    out[t.isna().to_numpy()] = _NAT
    return out


def _times(ns: np.ndarray) -> pd.Series:
    s = pd.Series(np.asarray(ns, dtype=np.int64).astype("datetime64[ns]"))
    return s.mask(np.asarray(ns) == _NAT)


class SimilarIncidents(BaseEstimator):
    """A cosine nearest-neighbour index over resolved incidents' text (plus optional metadata).

    `fit(X)` keeps the resolved rows of X (`resolved_at` present; all rows with `resolved_only=False`),
    at most the latest `max_index` of them, fits `features` (default: text-only `IncidentTextFeatures`)
    and stores their L2-normalised vectors and a payload. `query(records, k)` returns k rows per query,
    most similar first (ties: the more recently resolved first).
    """

    def __init__(self, features=None, k=5, resolved_only=True, max_index=None, chunk_size=256):
        self.features = features
        self.k = k
        self.resolved_only = resolved_only
        self.max_index = max_index
        self.chunk_size = chunk_size

    def input_columns(self) -> list[str]:
        """Columns a query needs (plus `opened_at` when neighbours are limited to those resolved before it)."""
        f = self.features_ if hasattr(self, "features_") else self._features()
        return list(f.input_columns())

    def _features(self):
        return (
            clone(self.features)
            if self.features is not None
            else IncidentTextFeatures(categorical_columns=())
        )

    def fit(self, X: pd.DataFrame, y=None):
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"SimilarIncidents needs a DataFrame of incidents, got {type(X).__name__}")
        rows = X
        if self.resolved_only:
            if "resolved_at" not in X.columns:
                raise ValueError("resolved_only=True needs a 'resolved_at' column")
            rows = X[X["resolved_at"].notna()]
        if "opened_at" in rows.columns:
            rows = sort_by_time(rows)
        if self.max_index:
            rows = rows.tail(int(self.max_index))
        if rows.empty:
            raise ValueError("no resolved incidents to index")
        feats = self._features().fit(rows)
        self.features_ = feats
        self.index_ = normalize(feats.transform(rows).astype(np.float32), norm="l2", copy=False).tocsr()
        self.payload_ = {
            c: (rows[c].astype(object).where(rows[c].notna(), None).to_numpy(dtype=object) if c in rows else
                np.full(len(rows), None, dtype=object))
            for c in PAYLOAD_COLUMNS
        }  # fmt: skip
        self.opened_ns_ = _ns(rows["opened_at"]) if "opened_at" in rows else np.full(len(rows), _NAT)
        self.resolved_ns_ = _ns(rows["resolved_at"]) if "resolved_at" in rows else np.full(len(rows), _NAT)
        self.n_indexed_ = int(len(rows))
        return self

    # -- queries -------------------------------------------------------------------------------------
    def neighbours(
        self, records: pd.DataFrame, k: int | None = None, resolved_before=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(positions, similarities), each (n_queries, k); position -1 / similarity NaN where fewer than k
        indexed incidents are allowed. `resolved_before`: None (any), "opened_at" (each query's own opening
        time) or one timestamp for all queries."""
        k = int(k or self.k)
        Q = normalize(self.features_.transform(records).astype(np.float32), norm="l2", copy=False).tocsr()
        limit = self._limits(records, resolved_before)
        n = Q.shape[0]
        pos = np.full((n, k), -1, dtype=np.int64)
        sim = np.full((n, k), np.nan, dtype=float)
        recency = self.resolved_ns_
        step = max(1, int(self.chunk_size))
        for start in range(0, n, step):
            block = np.minimum((Q[start : start + step] @ self.index_.T).toarray().astype(float), 1.0)
            if limit is not None:
                allowed = (recency[None, :] != _NAT) & (recency[None, :] < limit[start : start + step, None])
                block = np.where(allowed, block, -np.inf)
            for i, row in enumerate(block):
                top = (
                    np.argpartition(-row, min(k, len(row) - 1))[: k + 1]
                    if len(row) > k
                    else np.arange(len(row))
                )
                top = top[np.lexsort((-recency[top].astype(float), -row[top]))][:k]
                top = top[np.isfinite(row[top])]
                pos[start + i, : len(top)] = top
                sim[start + i, : len(top)] = row[top]
        return pos, sim

    def _limits(self, records: pd.DataFrame, resolved_before) -> np.ndarray | None:
        if resolved_before is None:
            return None
        if isinstance(resolved_before, str) and resolved_before == "opened_at":
            if "opened_at" not in records.columns:
                raise ValueError("resolved_before='opened_at' needs the queries' 'opened_at'")
            limit = _ns(records["opened_at"])
        else:
            limit = np.full(len(records), pd.Timestamp(resolved_before).value, dtype=np.int64)
        return np.where(limit == _NAT, np.iinfo(np.int64).max, limit)

    def query(self, records: pd.DataFrame, k: int | None = None, resolved_before=None) -> pd.DataFrame:
        """The k most similar indexed incidents per query, long format (`RESULT_COLUMNS`): query (row
        position), query_number, rank (1 = most similar), then the neighbour's fields and hours to resolve."""
        pos, sim = self.neighbours(records, k, resolved_before)
        n, k = pos.shape
        q = np.repeat(np.arange(n), k)
        flat, s = pos.ravel(), sim.ravel()
        keep = flat >= 0
        q, flat, s = q[keep], flat[keep], s[keep]
        numbers = (
            records["number"].to_numpy(dtype=object) if "number" in records.columns else np.full(n, None)
        )
        opened, resolved = self.opened_ns_[flat], self.resolved_ns_[flat]
        ttr = np.where((opened != _NAT) & (resolved != _NAT), (resolved - opened) / 3.6e12, np.nan)
        out = pd.DataFrame(
            {
                "query": q,
                "query_number": numbers[q],
                "rank": np.tile(np.arange(1, k + 1), n)[keep],
                "number": self.payload_["number"][flat],
                "similarity": s,
                "short_description": self.payload_["short_description"][flat],
                "assignment_group": self.payload_["assignment_group"][flat],
                "category": self.payload_["category"][flat],
                "cmdb_ci": self.payload_["cmdb_ci"][flat],
                "ttr_hours": ttr,
                "opened_at": _times(opened),
                "resolved_at": _times(resolved),
                "state": self.payload_["state"][flat],
            }
        )
        return out[RESULT_COLUMNS]

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """`query(X, self.k)`: what a serving wrapper calls."""
        return self.query(X, self.k)

    def vote(
        self,
        records: pd.DataFrame,
        target: str = "assignment_group",
        k: int | None = None,
        resolved_before=None,
    ) -> pd.DataFrame:
        """Per query: the nearest neighbour's `target`, and the similarity-weighted vote of the k nearest
        (with the winner's share of the weight); None where no neighbour is allowed."""
        if target not in self.payload_:
            raise ValueError(f"target {target!r} is not stored; choose one of {sorted(self.payload_)}")
        pos, sim = self.neighbours(records, k, resolved_before)
        labels = self.payload_[target]
        votes, share = _votes(pos, sim, labels)
        nearest = np.array([labels[p] if p >= 0 else None for p in pos[:, 0]], dtype=object)
        return pd.DataFrame(
            {"nearest": nearest, "vote": votes, "vote_share": share, "top_similarity": sim[:, 0]},
            index=records.index,
        )


def make_similar(params: Mapping[str, Any] | None = None) -> SimilarIncidents:
    """An unfitted text-only `SimilarIncidents` from params."""
    p = similar_params(params)
    feats = IncidentTextFeatures(
        categorical_columns=(),
        short_weight=p["short_weight"],
        char_weight=p["char_weight"],
        word_max_features=p["word_max_features"],
        char_max_features=p["char_max_features"],
        min_df=p["min_df"],
    )
    return SimilarIncidents(features=feats, k=p["k"], max_index=p["max_index"], chunk_size=p["chunk_size"])


def fit_similar(incidents: pd.DataFrame, params: Mapping[str, Any] | None = None) -> SimilarIncidents:
    """Index the resolved incidents of `incidents`."""
    p = similar_params(params)
    with threadpool_limits(p["n_threads"]):
        return make_similar(p).fit(incidents)


def evaluate_similar(
    index: SimilarIncidents,
    queries: pd.DataFrame,
    targets: Sequence[str] = ("assignment_group", "category", "cmdb_ci"),
    k: int | None = None,
    resolved_before="opened_at",
) -> dict[str, float]:
    """Per target: nearest-neighbour accuracy (`<t>_nn_accuracy`) and k-vote accuracy (`<t>_vote_accuracy`)
    over queries that have a label and at least one allowed neighbour, plus how many had one
    (`with_neighbour`) and the mean top similarity. Neighbours resolved before each query opened only."""
    out: dict[str, float] = {"n": float(len(queries))}
    pos, sim = index.neighbours(queries, k, resolved_before)
    found = pos[:, 0] >= 0
    out["with_neighbour"] = float(found.mean()) if len(found) else float("nan")
    out["mean_top_similarity"] = float(np.nanmean(sim[:, 0])) if found.any() else float("nan")
    for t in targets:
        if t not in queries.columns or t not in index.payload_:
            continue
        truth = queries[t].to_numpy(dtype=object)
        labels = index.payload_[t]
        has = found & pd.notna(truth)
        nn = np.array([labels[p] if p >= 0 else None for p in pos[:, 0]], dtype=object)
        votes, _ = _votes(pos, sim, labels)
        out[f"{t}_nn_accuracy"] = float((nn[has] == truth[has]).mean()) if has.any() else float("nan")
        out[f"{t}_vote_accuracy"] = float((votes[has] == truth[has]).mean()) if has.any() else float("nan")
    return out


def _votes(pos: np.ndarray, sim: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-weighted vote of the allowed neighbours (ties: the first label in sorted order) and the
    winner's share of the weight; None / NaN without a neighbour."""
    out = np.full(len(pos), None, dtype=object)
    share = np.full(len(pos), np.nan)
    for i, (p, s) in enumerate(zip(pos, sim, strict=True)):
        ok = (p >= 0) & np.isfinite(s)
        if ok.any():
            weights: dict[str, float] = {}
            for lab, w in zip(labels[p[ok]], s[ok], strict=True):
                if lab is None:
                    continue
                weights[str(lab)] = weights.get(str(lab), 0.0) + max(float(w), 0.0)
            if not weights:
                continue
            best = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            total = sum(weights.values())
            out[i] = best[0]
            share[i] = best[1] / total if total > 0 else np.nan
    return out, share


def compare_similar(
    train: pd.DataFrame, test: pd.DataFrame, params: Mapping[str, Any] | None = None
) -> tuple[dict[str, float], SimilarIncidents]:
    """Index every resolved incident of train and test, query the test tickets with neighbours resolved
    before each one opened (what the desk could have seen), and score nearest-neighbour and vote accuracy.

    The vectoriser's vocabulary comes from all indexed texts (unsupervised, no labels); a neighbour's
    label is only used once that neighbour was resolved.
    """
    p = similar_params(params)
    with threadpool_limits(p["n_threads"]):
        index = make_similar(p).fit(pd.concat([train, test]))
        metrics = evaluate_similar(index, test, p["targets"], p["k"], "opened_at")
    return metrics, index
