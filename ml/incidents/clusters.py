"""Recurring-problem clustering of incidents: ticket text (LSA) plus light metadata, KMeans with k chosen by silhouette.

`IncidentClusterer` is one sklearn-compatible object that maps raw incident records to a cluster id, so the
notebook, batch scoring and the service assign a ticket the same way. It reads only `input_columns()` (a
subset of `schemas.OPEN_TIME_COLUMNS`); `root_cause` (the generator's hidden truth) and outcome columns are
never read: they serve only `root_cause_scores`, the evaluation.

The rest of the module describes a fitted clustering on a frame of incidents: a per-cluster table (size, top
terms, tickets closest to the centroid, dominant category/system/group), scores against the hidden root
cause next to metadata-only baselines, and weekly volumes with bursting clusters flagged (the charts are
in `ml.incidents.charts`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.preprocessing import OneHotEncoder, normalize
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ml import config
from ml.data import schemas
from ml.features import MISSING, TEXT_COLUMNS

META_COLUMNS = ("category", "subcategory", "cmdb_ci")
ONE_OFF = "one-off"  # ml.data.synth.catalogues.ONE_OFF: tickets of no recurring root cause
BASELINES = {"subcategory": ("subcategory",), "category_x_cmdb_ci": ("category", "cmdb_ci")}
_SPACES = re.compile(r"\s+")


def cluster_text(frame: pd.DataFrame, max_chars: int | None = None) -> pd.Series:
    """Short description + description, NFKC-normalised, lower case, whitespace collapsed, at most max_chars.

    Lighter than `ml.features.clean_text` (URLs, e-mails and numbers stay as written): the clusters were
    chosen on this text, and sharing the other cleaning would change them."""
    short = frame["short_description"].astype(object).where(frame["short_description"].notna(), "")
    desc = frame["description"].astype(object).where(frame["description"].notna(), "")
    text = (short.astype(str) + " . " + desc.astype(str)).map(_clean)
    return text.str.slice(0, max_chars) if max_chars else text


def _clean(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip(" .")


class IncidentClusterer(ClusterMixin, TransformerMixin, BaseEstimator):
    """Raw incidents -> cluster id: TF-IDF -> TruncatedSVD (LSA), + weighted one-hot metadata, -> KMeans.

    - text: `short_description` + `description` (see `cluster_text`), word uni/bigram TF-IDF with
      sublinear tf and English stop words removed, reduced to `n_components` SVD dimensions and scaled to
      unit length (LSA);
    - metadata: one-hot of `meta_columns` (unseen categories are all zeros, missing is its own category),
      scaled so the block has length `meta_weight` next to the unit-length text block; the joined vector
      is scaled to unit length again, so Euclidean KMeans works on cosine similarity;
    - k: for every k in `k_grid` (smaller than the training rows) KMeans is fitted and scored by the
      silhouette (cosine) on a fixed, seeded sample of `silhouette_sample` rows; the best k wins, and any
      k within `tie_tolerance` of the best counts as a tie, won by the smallest (fewer clusters to read).
      The scores are kept in `k_scores_`, the rule in `criterion_`;
    - clusters are renumbered by size (0 = largest); `top_terms_` keeps the heaviest terms of each
      cluster's mean TF-IDF vector, `pca_` the 2-D map of the embedding.

    Fitting first sorts the rows by their content, so the clusters do not depend on the row order.
    """

    def __init__(
        self,
        meta_columns=META_COLUMNS,
        meta_weight=0.5,
        max_features=5000,
        min_df=3,
        n_components=50,
        k_grid=(20, 30, 40, 50, 60, 80, 100),
        silhouette_sample=3000,
        tie_tolerance=0.005,
        n_init=2,
        max_text_chars=4000,
        n_top_terms=8,
        random_state=0,
    ):
        self.meta_columns = meta_columns
        self.meta_weight = meta_weight
        self.max_features = max_features
        self.min_df = min_df
        self.n_components = n_components
        self.k_grid = k_grid
        self.silhouette_sample = silhouette_sample
        self.tie_tolerance = tie_tolerance
        self.n_init = n_init
        self.max_text_chars = max_text_chars
        self.n_top_terms = n_top_terms
        self.random_state = random_state

    # -- the columns this instance reads --------------------------------------------------------------
    def input_columns(self) -> list[str]:
        """Raw columns read: the two text fields and `meta_columns`; a column not known at open time raises."""
        bad = [c for c in self.meta_columns if c not in schemas.OPEN_TIME_COLUMNS]
        if bad:
            what = (
                "an outcome column (not known at open time)"
                if bad[0] in schemas.OUTCOME_COLUMNS
                else "not an open-time column"
            )
            raise ValueError(
                f"meta_columns: {bad[0]!r} is {what}; allowed: {sorted(schemas.OPEN_TIME_COLUMNS)}"
            )
        return list(dict.fromkeys([*TEXT_COLUMNS, *self.meta_columns]))

    def _select(self, X) -> pd.DataFrame:
        """A copy of only the columns read (a list of dicts is accepted); errors name the missing ones."""
        if isinstance(X, Mapping):
            X = [X]
        if isinstance(X, list):
            X = pd.DataFrame.from_records(X)
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"IncidentClusterer needs incident records (a DataFrame), got {type(X).__name__}")
        cols = self.input_columns()
        missing = [c for c in cols if c not in X.columns]
        if missing:
            raise ValueError(f"incident records lack column(s) {missing}")
        return X[cols].reset_index(drop=True).copy()

    def _meta(self, frame: pd.DataFrame) -> pd.DataFrame:
        cols = list(self.meta_columns)
        return frame[cols].astype(object).where(frame[cols].notna(), MISSING).astype(str)

    # -- fit ------------------------------------------------------------------------------------------------
    def fit(self, X, y=None):
        frame = self._select(X)
        if len(frame) < 3:
            raise ValueError(f"clustering needs at least 3 incidents, got {len(frame)}")
        text = cluster_text(frame, self.max_text_chars)
        meta = self._meta(frame)
        # content order: the same records in any order give the same clusters (k-means++ draws by position)
        order = np.lexsort((*(meta[c].to_numpy() for c in reversed(meta.columns)), text.to_numpy()))
        text, meta = text.iloc[order].reset_index(drop=True), meta.iloc[order].reset_index(drop=True)

        self.vectorizer_ = TfidfVectorizer(
            max_features=self.max_features,
            min_df=min(int(self.min_df), max(1, len(text) // 50)),
            sublinear_tf=True,
            ngram_range=(1, 2),
            stop_words="english",
            dtype=np.float64,
        )
        try:
            tfidf = self.vectorizer_.fit_transform(text)
        except ValueError as exc:  # every text empty or only stop words
            raise ValueError(f"the incidents carry no usable text to cluster ({exc})") from exc
        self.vectorizer_.stop_words_ = None  # pruned-terms set: introspection only, and large
        n_comp = min(int(self.n_components), tfidf.shape[1] - 1)
        if n_comp < 1:
            raise ValueError(f"the incidents' text has {tfidf.shape[1]} distinct term(s); need at least 2")
        self.svd_ = TruncatedSVD(n_components=n_comp, random_state=self.random_state).fit(tfidf)
        self.encoder_ = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64).fit(
            meta
        )
        emb = self._embed(tfidf, meta)

        grid = sorted({int(k) for k in self.k_grid if 2 <= int(k) < len(frame)})
        if not grid:
            raise ValueError(
                f"k_grid {list(self.k_grid)} has no k in 2..{len(frame) - 1} for {len(frame)} incidents"
            )
        sample = np.random.default_rng(self.random_state).permutation(len(emb))[: int(self.silhouette_sample)]
        scores, models = {}, {}
        for k in grid:
            km = KMeans(n_clusters=k, n_init=int(self.n_init), random_state=self.random_state).fit(emb)
            labels = km.labels_[sample]
            ok = 2 <= len(np.unique(labels)) < len(sample)
            scores[k] = float(silhouette_score(emb[sample], labels)) if ok else float("nan")
            models[k] = km
        finite = {k: s for k, s in scores.items() if np.isfinite(s)}
        if not finite:
            raise ValueError("no k in the grid gave a silhouette (the sample has too few distinct tickets)")
        best = max(finite.values())
        self.k_ = min(k for k, s in finite.items() if s >= best - float(self.tie_tolerance))
        self.k_scores_ = {str(k): s for k, s in scores.items()}
        self.silhouette_ = float(finite[self.k_])
        self.criterion_ = (
            f"silhouette (cosine) on a seeded sample of {len(sample)} of {len(emb)} training incidents; "
            f"highest wins, k within {self.tie_tolerance} of the best is a tie won by the smallest k"
        )
        self.kmeans_ = models[self.k_]

        raw = self.kmeans_.predict(emb)
        sizes = np.bincount(raw, minlength=self.k_)
        rank = np.argsort(-sizes, kind="stable")  # cluster ids by size, 0 = largest
        self.relabel_ = np.empty(self.k_, dtype=np.int64)
        self.relabel_[rank] = np.arange(self.k_)
        labels_sorted = self.relabel_[raw]
        self.cluster_sizes_ = np.bincount(labels_sorted, minlength=self.k_).astype(np.int64)
        self.top_terms_ = self._top_terms(tfidf, labels_sorted)
        self.pca_ = PCA(n_components=2, svd_solver="full").fit(emb)
        self.labels_ = np.empty(len(frame), dtype=np.int64)
        self.labels_[order] = labels_sorted
        self.n_features_out_ = emb.shape[1]
        return self

    def _top_terms(self, tfidf, labels: np.ndarray) -> dict[str, list[str]]:
        """The `n_top_terms` heaviest terms of each cluster's mean TF-IDF vector."""
        terms = self.vectorizer_.get_feature_names_out()
        out = {}
        for c in range(self.k_):
            mean = np.asarray(tfidf[labels == c].mean(axis=0)).ravel()
            top = np.argsort(-mean, kind="stable")[: int(self.n_top_terms)]
            out[str(c)] = [str(terms[i]) for i in top if mean[i] > 0]
        return out

    # -- transform / predict ----------------------------------------------------------------------------
    def _embed(self, tfidf, meta: pd.DataFrame) -> np.ndarray:
        lsa = normalize(self.svd_.transform(tfidf))
        onehot = self.encoder_.transform(meta) * (float(self.meta_weight) / np.sqrt(len(self.meta_columns)))
        return normalize(np.hstack([lsa, onehot]))

    def transform(self, X) -> np.ndarray:
        """The unit-length embedding the clusters live in: LSA text dimensions, then weighted metadata."""
        check_is_fitted(self, "kmeans_")
        frame = self._select(X)
        tfidf = self.vectorizer_.transform(cluster_text(frame, self.max_text_chars))
        return self._embed(tfidf, self._meta(frame))

    def predict(self, X) -> np.ndarray:
        """Cluster id (0 = the largest training cluster) of each incident; row by row, so batch size is moot."""
        return self.relabel_[self.kmeans_.predict(self.transform(X))]

    def embed_2d(self, X) -> np.ndarray:
        """The first two principal components of the embedding (the map chart's coordinates)."""
        return self.pca_.transform(self.transform(X))

    def distance_to_centroid(self, X) -> np.ndarray:
        """Euclidean distance of each incident to the centroid of its own cluster (0..2 on unit vectors)."""
        emb = self.transform(X)
        raw = self.kmeans_.predict(emb)
        return np.linalg.norm(emb - self.kmeans_.cluster_centers_[raw], axis=1)

    def get_feature_names_out(self, input_features=None):
        lsa = [f"lsa_{i}" for i in range(self.svd_.n_components)]
        meta = [str(n) for n in self.encoder_.get_feature_names_out(list(self.meta_columns))]
        return np.asarray(lsa + meta, dtype=object)

    def cluster_label(self, cluster: int, n_terms: int = 3) -> str:
        """A short readable name: the cluster's top terms."""
        return ", ".join(self.top_terms_.get(str(int(cluster)), [])[:n_terms]) or "(no terms)"


def fit_clusterer(incidents: pd.DataFrame, params: Mapping[str, Any] | None = None) -> IncidentClusterer:
    """An IncidentClusterer configured from the `clustering` params and fitted (BLAS/OpenMP on `n_threads`)."""
    p = config.section("clustering", params)
    with threadpool_limits(int(p["n_threads"])):
        return make_clusterer(p).fit(incidents)


def make_clusterer(params: Mapping[str, Any] | None = None) -> IncidentClusterer:
    """An unfitted IncidentClusterer from the `clustering` params (`params` merged over params.yaml's)."""
    p = config.section("clustering", params)
    kwargs = {k: p[k] for k in IncidentClusterer().get_params() if k in p}
    kwargs["random_state"] = int(p["seed"])
    for k in ("meta_columns", "k_grid"):
        kwargs[k] = tuple(kwargs[k])
    return IncidentClusterer(**kwargs)


# --- evaluation against the generator's hidden root cause (never a feature) -----------------------------
def recurring_match(labels, root_cause) -> pd.DataFrame:
    """Per recurring root cause: its tickets, the cluster matching it best (by F1), that cluster's precision,
    recall and F1, and the share of its tickets in its modal cluster (concentration)."""
    labels = np.asarray(labels)
    truth = pd.Series(np.asarray(root_cause, dtype=object)).fillna(ONE_OFF).astype(str).to_numpy()
    table = pd.crosstab(labels, truth)
    size = table.sum(axis=1)
    rows = []
    for cause in sorted(c for c in table.columns if c != ONE_OFF):
        inter = table[cause]
        precision, recall = inter / size, inter / inter.sum()
        f1 = (2 * precision * recall / (precision + recall)).fillna(0.0)
        best = f1.idxmax()
        rows.append(
            {
                "root_cause": cause,
                "tickets": int(inter.sum()),
                "best_cluster": best,
                "precision": float(precision[best]),
                "recall": float(recall[best]),
                "f1": float(f1[best]),
                "concentration": float(inter.max() / inter.sum()),
            }
        )
    return pd.DataFrame(rows, columns=["root_cause", "tickets", "best_cluster", "precision", "recall", "f1",
                                       "concentration"])  # fmt: skip


def root_cause_scores(labels, root_cause) -> dict[str, float]:
    """How well a partition recovers the hidden root causes.

    - `purity`: share of tickets in their cluster's majority cause. One-off tickets are ~88% of the
      synthetic data, so any partition scores at least their share; `purity_lift` rescales purity to
      0 = that floor, 1 = perfect;
    - `nmi`, `ari`: against all labels (one-off included); NMI is lowered by every extra cluster;
    - `recurring_f1`, `recurring_precision`, `recurring_recall`: per recurring cause, the cluster that best
      matches it (F1 of "this cluster = this cause"), averaged over causes; `recurring_concentration`:
      mean share of a cause's tickets in its modal cluster.
    """
    labels = np.asarray(labels)
    truth = pd.Series(np.asarray(root_cause, dtype=object)).fillna(ONE_OFF).astype(str).to_numpy()
    table = pd.crosstab(labels, truth)
    purity = float(table.max(axis=1).sum() / len(labels))
    floor = float(table.sum(axis=0).max() / len(labels))
    match = recurring_match(labels, truth)
    has = len(match) > 0
    return {
        "purity": purity,
        "purity_lift": (purity - floor) / (1.0 - floor) if floor < 1 else float("nan"),
        "nmi": float(normalized_mutual_info_score(truth, labels)),
        "ari": float(adjusted_rand_score(truth, labels)),
        "recurring_f1": float(match["f1"].mean()) if has else float("nan"),
        "recurring_precision": float(match["precision"].mean()) if has else float("nan"),
        "recurring_recall": float(match["recall"].mean()) if has else float("nan"),
        "recurring_concentration": float(match["concentration"].mean()) if has else float("nan"),
        "clusters": int(len(np.unique(labels))),
    }


def baseline_labels(incidents: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A metadata-only 'clustering': one group per combination of `columns` (open-time fields)."""
    bad = [c for c in columns if c not in schemas.OPEN_TIME_COLUMNS]
    if bad:
        raise ValueError(f"baseline columns must be open-time fields, got {bad}")
    key = incidents[list(columns)].astype(object).where(incidents[list(columns)].notna(), MISSING).astype(str)
    return key.agg(" | ".join, axis=1).to_numpy()


def compare_with_baselines(labels, incidents: pd.DataFrame, root_cause) -> pd.DataFrame:
    """`root_cause_scores` of the clustering and of each metadata baseline in `BASELINES`, one row each."""
    rows = {"clusters": root_cause_scores(labels, root_cause)}
    for name, cols in BASELINES.items():
        rows[f"baseline_{name}"] = root_cause_scores(baseline_labels(incidents, cols), root_cause)
    return pd.DataFrame.from_dict(rows, orient="index")


def silhouette_on_sample(model: IncidentClusterer, incidents: pd.DataFrame, sample: int = 3000,
                         seed: int = 0) -> float:  # fmt: skip
    """Silhouette (cosine) of the model's clusters on a seeded sample of `incidents` (e.g. a holdout)."""
    idx = np.random.default_rng(seed).permutation(len(incidents))[:sample]
    part = incidents.iloc[np.sort(idx)]
    labels = model.predict(part)
    if not 2 <= len(np.unique(labels)) < len(part):
        return float("nan")
    return float(silhouette_score(model.transform(part), labels))


# --- describing the clusters ------------------------------------------------------------------------------
def cluster_table(
    model: IncidentClusterer, incidents: pd.DataFrame, *, n_examples: int = 2, root_cause=None
) -> pd.DataFrame:
    """One row per cluster: size and share, top terms, the `n_examples` distinct tickets closest to the
    centroid, dominant category / system (cmdb_ci) / assignment group with their shares, and (given the
    hidden `root_cause`, evaluation only) the dominant cause and its share."""
    labels = model.predict(incidents)
    dist = model.distance_to_centroid(incidents)
    frame = incidents.reset_index(drop=True).assign(_cluster=labels, _dist=dist)
    if root_cause is not None:
        frame["_cause"] = (
            pd.Series(np.asarray(root_cause, dtype=object)).fillna(ONE_OFF).astype(str).to_numpy()
        )
    rows = []
    for c, part in frame.groupby("_cluster", sort=True):
        row: dict[str, Any] = {
            "cluster": int(c),
            "size": len(part),
            "share": len(part) / len(frame),
            "top_terms": ", ".join(model.top_terms_.get(str(int(c)), [])[:6]),
        }
        closest = part.sort_values(["_dist", "short_description"], kind="stable")
        examples = list(dict.fromkeys(closest["short_description"].fillna("").astype(str)))[:n_examples]
        for i in range(n_examples):
            row[f"example_{i + 1}"] = examples[i] if i < len(examples) else ""
        for col, name in (("category", "category"), ("cmdb_ci", "system"), ("assignment_group", "group")):
            if col in part:
                counts = part[col].fillna(MISSING).value_counts()
                row[name], row[f"{name}_share"] = str(counts.index[0]), float(counts.iloc[0] / len(part))
        if root_cause is not None:
            counts = part["_cause"].value_counts()
            row["root_cause"], row["root_cause_share"] = (
                str(counts.index[0]),
                float(counts.iloc[0] / len(part)),
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("cluster")


def weekly_counts(labels, opened_at) -> pd.DataFrame:
    """Incidents opened per week (weeks start Monday) and cluster, every week of the span, zeros included."""
    t = pd.to_datetime(pd.Series(np.asarray(opened_at)))
    week = (t - pd.to_timedelta(t.dt.dayofweek, unit="D")).dt.normalize()
    counts = pd.crosstab(week.to_numpy(), np.asarray(labels))
    weeks = pd.date_range(week.min(), week.max(), freq="7D")
    counts = counts.reindex(weeks, fill_value=0)
    counts.index.name, counts.columns.name = "week", "cluster"
    return counts


def burst_table(labels, opened_at, *, factor: float = 3.0, min_count: int = 10) -> pd.DataFrame:
    """Clusters whose weekly volume bursts: a burst week has at least `min_count` tickets and at least
    `factor` times the cluster's median weekly count (floored at 1). One row per cluster, bursting first."""
    counts = weekly_counts(labels, opened_at)
    rows = []
    for c in counts.columns:
        series = counts[c]
        median = float(max(series.median(), 1.0))
        burst = (series >= min_count) & (series >= factor * median)
        rows.append(
            {
                "cluster": int(c),
                "tickets": int(series.sum()),
                "median_per_week": float(series.median()),
                "peak_week": series.idxmax().date().isoformat(),
                "peak_count": int(series.max()),
                "peak_ratio": float(series.max() / median),
                "burst_weeks": int(burst.sum()),
                "burst_tickets": int(series[burst].sum()),
                "recurring": bool(burst.any()),
            }
        )
    table = pd.DataFrame(rows).sort_values(
        ["recurring", "peak_ratio", "cluster"], ascending=[False, False, True]
    )
    return table.set_index("cluster")


def burst_scores(labels, opened_at, root_cause, **burst_kw) -> dict[str, float]:
    """How well the bursting clusters pick out recurring-cause tickets: their share of all recurring tickets
    (`burst_recall`) and the share of recurring tickets among theirs (`burst_precision`)."""
    table = burst_table(labels, opened_at, **burst_kw)
    flagged = np.isin(np.asarray(labels), table.index[table["recurring"]].to_numpy())
    truth = pd.Series(np.asarray(root_cause, dtype=object)).fillna(ONE_OFF).astype(str).to_numpy() != ONE_OFF
    return {
        "bursting_clusters": int(table["recurring"].sum()),
        "burst_recall": float((flagged & truth).sum() / max(truth.sum(), 1)),
        "burst_precision": float((flagged & truth).sum() / max(flagged.sum(), 1)),
    }
