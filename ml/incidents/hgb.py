"""Gradient boosting with native categoricals on open-time incident fields (plus history, when given).

`OpenTimeFrame` turns raw incident records into the frame a `HistGradientBoosting*` reads: each
categorical column as an integer code (its `max_categories` most frequent training values; rarer,
unseen and missing values are NaN, which the trees route on their own), the levels (impact, urgency,
priority), the hour and weekday of opening, and the numeric history / workload columns and routing
columns of `ml.incidents.history` when the records carry them (absent at predict time: NaN, "no history").
Only open-time fields are read (`OPEN_TIME_FIELDS`); asking for anything else raises.

Three models share it, each one sklearn object from records to predictions:
- `BreachClassifier`: P(SLA breach);
- `QuantileHours`: hours to resolution at several quantiles (log1p target, split-conformal shifts from
  the latest training slice);
- `GroupClassifier`: the initial assignment group with a ranked top-k (rare groups share one tree class).
`BreachClassifier` and `GroupClassifier` can blend in a sparse logistic model on one-hot fields and field
crosses (`cross_weight`, `ml.incidents.crosses`); `GroupClassifier` can re-rank its best groups with a
second stage learned on its latest training rows (`rerank`, `ml.incidents.rerank`).
With `history=False, calendar=False` and the plain categorical columns they are the "plain HGB" baseline.
`half_life_days` weights training incidents by recency (the newest count most), for logs whose regime
shifts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from ml.data import schemas
from ml.incidents.crosses import CrossLogit
from ml.incidents.datasets import EXTRA_OPEN_TIME
from ml.incidents.history import history_columns, routing_columns, routing_share_columns, share_columns
from ml.incidents.rerank import CandidateReranker, Components

# Open-time fields a model may read: the silver schema's, plus the first-event extras when a log has them.
OPEN_TIME_FIELDS = frozenset(schemas.OPEN_TIME_COLUMNS) | set(EXTRA_OPEN_TIME)
LEVELS = ("impact", "urgency", "priority")
RARE = "\x00rare"  # the trees' one class for every group with too few training tickets


class OpenTimeFrame(TransformerMixin, BaseEstimator):
    """Incident records -> float frame for HGB: categorical codes, levels, calendar, history columns."""

    def __init__(
        self, categorical_columns=(), calendar=True, history=True, max_categories=250, routing=False
    ):
        self.categorical_columns = categorical_columns
        self.calendar = calendar
        self.history = history
        self.max_categories = max_categories
        self.routing = routing

    def fit(self, X: pd.DataFrame, y=None):
        for c in self.categorical_columns:
            _check_open_time("categorical_columns", c, c)
        if "opened_at" not in X:
            raise ValueError("incident records lack column 'opened_at'")
        cats = [c for c in self.categorical_columns if c in X.columns]
        self.history_ = history_columns(X) if self.history else []
        routing = routing_columns(X) if self.history and self.routing else []
        self.history_ += routing_share_columns(X) if self.history and self.routing else []
        self.vocab_ = {c: self._vocab(X[c]) for c in [*cats, *routing]}
        self.feature_names_out_ = [*self.vocab_, *LEVELS, *(["open_hour", "open_weekday"] if self.calendar else []),
                                   *self.history_]  # fmt: skip
        self.categorical_mask_ = [c in self.vocab_ for c in self.feature_names_out_]
        return self

    def _vocab(self, values: pd.Series) -> dict:
        counts = values.dropna().astype(str).value_counts()
        counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        return {v: i for i, v in enumerate(counts.index[: int(self.max_categories)])}

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        n = len(X)
        out = {}
        for c, vocab in self.vocab_.items():
            if c in X:
                values = X[c].to_numpy(dtype=object)
                out[c] = np.array(
                    [np.nan if v is None or v != v else vocab.get(str(v), np.nan) for v in values]
                )
            else:
                out[c] = np.full(n, np.nan)
        for c in LEVELS:
            out[c] = (
                pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=float) if c in X else np.full(n, np.nan)
            )
        if self.calendar:
            when = pd.to_datetime(X["opened_at"])
            out["open_hour"] = (when.dt.hour + when.dt.minute / 60.0).to_numpy(dtype=float)
            out["open_weekday"] = when.dt.weekday.to_numpy(dtype=float)
        for c in self.history_:
            out[c] = X[c].to_numpy(dtype=float) if c in X else np.full(n, np.nan)
        return pd.DataFrame(out, index=X.index)[self.feature_names_out_]

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.feature_names_out_, dtype=object)


def recency_weights(opened_at: pd.Series, half_life_days: float | None) -> np.ndarray | None:
    """Weight 1 for the newest training incident, halving every `half_life_days` back (None: no weights)."""
    if not half_life_days:
        return None
    t = pd.to_datetime(opened_at)
    age = (t.max() - t).dt.total_seconds().to_numpy() / 86400.0
    return np.power(0.5, age / float(half_life_days))


def _hgb_kwargs(est) -> dict:
    return {
        "max_iter": est.max_iter,
        "learning_rate": est.learning_rate,
        "max_leaf_nodes": est.max_leaf_nodes,
        "min_samples_leaf": est.min_samples_leaf,
        "l2_regularization": est.l2_regularization,
        "early_stopping": False,  # its validation split would be random; the iteration count is a param
        "random_state": est.random_state,
    }


class _OpenTimeHGB(BaseEstimator):
    """Common parameters: the frame's and the trees'."""

    _routing = False  # read the routing-history columns (only the group model: they name groups)

    def __init__(
        self,
        categorical_columns=(),
        calendar=True,
        history=True,
        max_categories=250,
        half_life_days=None,
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        random_state=0,
    ):
        self.categorical_columns = categorical_columns
        self.calendar = calendar
        self.history = history
        self.max_categories = max_categories
        self.half_life_days = half_life_days
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def _frame(self, X: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None]:
        self.frame_ = OpenTimeFrame(
            self.categorical_columns, self.calendar, self.history, self.max_categories, self._routing
        )
        F = self.frame_.fit(X).transform(X)
        return F, recency_weights(X["opened_at"], self.half_life_days)

    def _fit_classifier(self, X: pd.DataFrame, labels: np.ndarray):
        """Fit the trees on the frame's columns (native categoricals), recency-weighted; sets classes_."""
        F, w = self._frame(X)
        clf = HistGradientBoostingClassifier(
            categorical_features=self.frame_.categorical_mask_, **_hgb_kwargs(self)
        )
        self.model_ = clf.fit(F, labels, sample_weight=w)
        self.classes_ = self.model_.classes_
        return self


class BreachClassifier(ClassifierMixin, _OpenTimeHGB):
    """P(SLA breach) from open-time fields (and history): y is 0/1. With `cross_weight` > 0 the trees'
    probability is blended with a sparse logistic regression's on the one-hot categorical columns, levels
    and field `crosses` (`ml.incidents.crosses.CrossLogit`)."""

    def __init__(
        self,
        categorical_columns=(),
        calendar=True,
        history=True,
        max_categories=250,
        half_life_days=None,
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        random_state=0,
        crosses=(),
        cross_weight=0.0,
        cross_C=1.0,
    ):
        super().__init__(
            categorical_columns, calendar, history, max_categories, half_life_days, max_iter,
            learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization, random_state,
        )  # fmt: skip
        self.crosses = crosses
        self.cross_weight = cross_weight
        self.cross_C = cross_C

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y, dtype=int)
        self._fit_classifier(X, y)
        self.cross_ = _fit_cross(self, X, y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        P = self.model_.predict_proba(self.frame_.transform(X))
        return _blend_cross(self, P, _cross_proba(self, X, P.shape))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict(self.frame_.transform(X))


class GroupClassifier(ClassifierMixin, _OpenTimeHGB):
    """The initial assignment group (multiclass) with a ranked top-k; y is the label per record.

    With `prior_weight` > 0 the trees' probabilities are blended with a routing prior: the mean over keys
    of the recency-weighted share of each group among the key's earlier tickets (`share_*` columns of
    `ml.incidents.history.routing_shares`; records without them keep the trees' probabilities).

    Groups with fewer than `min_group_count` training tickets share one "rare" class in the trees (a
    multiclass HGB fits one tree per class and iteration, so this is most of its cost); the rare class's
    probability is then split among the rare groups by the routing prior restricted to them, else by
    their training frequency. With `cross_weight` > 0 the trees' probabilities are blended with those of
    a sparse logistic regression on the one-hot categorical columns, levels and the field `crosses`
    (`ml.incidents.crosses.CrossLogit`), before the routing prior.

    With `rerank` (a dict: `fraction`, and `k` plus tree settings of `ml.incidents.rerank.CandidateReranker`)
    a first stage fitted on all but the latest `fraction` of the rows scores those latest rows, a second
    stage learns from them to re-rank the `k` best groups, and the first stage is refitted on every row."""

    _routing = True

    def __init__(
        self,
        categorical_columns=(),
        calendar=True,
        history=True,
        max_categories=250,
        half_life_days=None,
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        random_state=0,
        prior_weight=0.0,
        min_group_count=0,
        crosses=(),
        cross_weight=0.0,
        cross_C=1.0,
        rerank=None,
    ):
        super().__init__(
            categorical_columns, calendar, history, max_categories, half_life_days, max_iter,
            learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization, random_state,
        )  # fmt: skip
        self.prior_weight = prior_weight
        self.min_group_count = min_group_count
        self.crosses = crosses
        self.cross_weight = cross_weight
        self.cross_C = cross_C
        self.rerank = rerank

    def fit(self, X: pd.DataFrame, y):
        """Pass the rows in time order: with `rerank`, the latest `fraction` of them trains the second stage."""
        labels = np.asarray(y, dtype=object).astype(str)
        settings = dict(self.rerank or {})
        fraction = float(settings.pop("fraction", 0.0))
        n_tail = int(len(labels) * fraction)
        self.reranker_ = None
        # the first stage on the earlier rows scores the latest ones, out of sample; too few rows, or one
        # group only before them, and there is no second stage
        if n_tail >= 50 and len(np.unique(labels[:-n_tail])) > 1:
            self._fit_first_stage(X.iloc[:-n_tail], labels[:-n_tail])
            tail = X.iloc[-n_tail:]
            reranker = CandidateReranker(**settings, random_state=self.random_state)
            self.reranker_ = reranker.fit(tail, self._components(tail), self.classes_, self.log_count_,
                                          labels[-n_tail:])  # fmt: skip
        return self._fit_first_stage(X, labels)

    def _fit_first_stage(self, X: pd.DataFrame, labels: np.ndarray):
        groups, counts = np.unique(labels, return_counts=True)
        rare = counts < int(self.min_group_count or 0)
        if rare.sum() < 2:  # merging fewer than two groups saves nothing
            rare[:] = False
        self.rare_ = groups[rare]
        self.rare_freq_ = counts[rare] / max(counts[rare].sum(), 1)
        merged = np.where(np.isin(labels, self.rare_), RARE, labels) if rare.any() else labels
        self._fit_classifier(X, merged)
        self.classes_ = groups
        self.log_count_ = np.log1p(counts)
        self.cross_ = _fit_cross(self, X, labels)
        return self

    def _tree_proba(self, X: pd.DataFrame, prior: np.ndarray | None) -> np.ndarray:
        """The trees' probabilities over every group, the rare class split among the rare groups."""
        T = self.model_.predict_proba(self.frame_.transform(X))
        if not len(self.rare_):
            return T
        P = np.zeros((len(X), len(self.classes_)))
        cols = np.searchsorted(self.classes_, self.model_.classes_[self.model_.classes_ != RARE])
        P[:, cols] = T[:, self.model_.classes_ != RARE]
        rare_cols = np.searchsorted(self.classes_, self.rare_)
        split = np.tile(self.rare_freq_, (len(X), 1))
        if prior is not None:
            known = np.nan_to_num(prior[:, rare_cols])
            has = known.sum(axis=1) > 0
            split[has] = known[has] / known[has].sum(axis=1, keepdims=True)
        P[:, rare_cols] = T[:, list(self.model_.classes_).index(RARE)][:, None] * split
        return P

    def _components(self, X: pd.DataFrame) -> Components:
        """The trees', the sparse logistic model's and the routing prior's probabilities, and their blend."""
        use_prior = bool(self.history) and (bool(self.prior_weight) or len(self.rare_) > 0)
        prior = routing_prior(X, self.classes_) if use_prior else None
        trees = self._tree_proba(X, prior)
        cross = _cross_proba(self, X, trees.shape)
        P = _blend_cross(self, trees, cross)
        if self.prior_weight and prior is not None:
            has = ~np.isnan(prior).any(axis=1)
            P[has] = (1.0 - self.prior_weight) * P[has] + self.prior_weight * prior[has]
        return Components(trees, cross, prior if self.prior_weight else None, P)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        comps = self._components(X)
        if self.reranker_ is None:
            return comps.blend
        return self.reranker_.rerank(X, comps, self.classes_, self.log_count_)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def ranked(self, X: pd.DataFrame, k: int = 3, second_stage: bool = True) -> list[list[str]]:
        """The k most likely groups per record, best first (`second_stage=False`: the first stage's order,
        to show what the second stage changes)."""
        P = self.predict_proba(X) if second_stage else self._components(X).blend
        top = np.argsort(-P, axis=1, kind="stable")[:, :k]
        return [list(self.classes_[row]) for row in top]


class QuantileHours(RegressorMixin, _OpenTimeHGB):
    """Hours to resolution at `quantiles` (log1p target); the latest `calibration_fraction` of the rows
    (pass them in time order) shifts each level by the level-quantile of its residuals (split conformal),
    then the trees are refitted on all rows with those shifts (`refit: true`), or only the median level
    (`refit: median`: the P50 learns from the latest rows while the P10-P90 band keeps the models its
    shifts were calibrated on, so its coverage stays split-conformal)."""

    def __init__(
        self,
        categorical_columns=(),
        calendar=True,
        history=True,
        max_categories=250,
        half_life_days=None,
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        random_state=0,
        quantiles=(0.1, 0.5, 0.9),
        calibration_fraction=0.2,
        refit=True,
    ):
        super().__init__(
            categorical_columns, calendar, history, max_categories, half_life_days, max_iter,
            learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization, random_state,
        )  # fmt: skip
        self.quantiles = quantiles
        self.calibration_fraction = calibration_fraction
        self.refit = refit

    def _fit_levels(self, F, z, w, levels=None) -> list:
        mask = self.frame_.categorical_mask_
        return [
            HistGradientBoostingRegressor(
                loss="quantile", quantile=float(q), categorical_features=mask, **_hgb_kwargs(self)
            ).fit(F, z, sample_weight=w)
            for q in (self.quantiles if levels is None else levels)
        ]

    def fit(self, X: pd.DataFrame, y):
        F, w = self._frame(X)
        z = np.log1p(np.asarray(y, dtype=float))
        n_cal = int(len(z) * float(self.calibration_fraction))
        self.shifts_ = np.zeros(len(self.quantiles))
        if n_cal >= 50:
            head = slice(0, len(z) - n_cal)
            wh = None if w is None else w[head] / w[head].max()
            models = self._fit_levels(F.iloc[head], z[head], wh)
            resid = z[-n_cal:, None] - np.column_stack([m.predict(F.iloc[-n_cal:]) for m in models])
            self.shifts_ = np.array([np.quantile(resid[:, i], q) for i, q in enumerate(self.quantiles)])
            if self.refit == "median":  # the point estimate learns from the latest rows; the band stays
                mid = int(np.argmin(np.abs(np.asarray(self.quantiles, dtype=float) - 0.5)))
                models[mid] = self._fit_levels(F, z, w, [self.quantiles[mid]])[0]
            if self.refit in (False, "median"):
                self.estimators_ = models
                return self
        self.estimators_ = self._fit_levels(F, z, w)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        F = self.frame_.transform(X)
        z = np.column_stack([m.predict(F) for m in self.estimators_]) + self.shifts_
        return np.maximum(np.expm1(np.sort(z, axis=1)), 0.0)


def _fit_cross(est, X: pd.DataFrame, y) -> CrossLogit | None:
    """The sparse logistic model of `est` (its categorical columns, the levels and its `crosses`), or None
    when `cross_weight` is 0."""
    if not est.cross_weight:
        return None
    columns = (*est.categorical_columns, *LEVELS)
    for cross in est.crosses:
        for field in str(cross).split("+"):
            _check_open_time("crosses", field, cross)
    return CrossLogit(columns, tuple(est.crosses), C=est.cross_C).fit(X, y)


def _cross_proba(est, X: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray | None:
    """The sparse logistic model's probabilities in the columns of `est.classes_`, or None without one."""
    if est.cross_ is None:
        return None
    Q = np.zeros(shape)
    cols = np.searchsorted(est.classes_, est.cross_.classes_.astype(est.classes_.dtype))  # it fits str labels
    Q[:, cols] = est.cross_.predict_proba(X)
    return Q


def _blend_cross(est, P: np.ndarray, Q: np.ndarray | None) -> np.ndarray:
    """The trees' probabilities `P` blended with the sparse logistic model's `Q` (`_cross_proba`) by
    `cross_weight`; `P` itself when there is none."""
    return P if Q is None else (1.0 - est.cross_weight) * P + est.cross_weight * Q


def _check_open_time(setting: str, field: str, entry: str) -> None:
    """Refuse a setting that would make a model read anything but an open-time field."""
    if field not in OPEN_TIME_FIELDS:
        where = f"{entry!r} reads {field!r}, which" if entry != field else repr(field)
        raise ValueError(f"{setting}: {where} is not an open-time field")


def routing_prior(X: pd.DataFrame, classes: np.ndarray) -> np.ndarray:
    """Per record, the mean over keys (those with earlier tickets) of each class's share among the key's
    earlier tickets; NaN rows where no key has any."""
    cols = share_columns(X)
    keys = sorted({c[len("share_") :].split("__", 1)[0] for c in cols})
    index = {str(c): i for i, c in enumerate(classes)}
    total, count = np.zeros((len(X), len(classes))), np.zeros(len(X))
    for key in keys:
        block = np.zeros((len(X), len(classes)))
        for col, group in share_columns(X, key).items():
            if group in index:
                block[:, index[group]] = X[col].to_numpy(dtype=float)
        seen = ~np.isnan(block).any(axis=1) & (block.sum(axis=1) > 0)
        total[seen] += block[seen]
        count += seen
    with np.errstate(invalid="ignore"):
        return total / count[:, None]


def categorical_columns(columns: Sequence[str], exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """The configured categorical columns without the target ones."""
    return tuple(c for c in columns if c not in set(exclude))
