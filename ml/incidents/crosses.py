"""A sparse multinomial logistic regression on one-hot open-time fields and their crosses.

Trees split on one field at a time and fit one tree per class and round; a linear model over indicator
columns of each field and of field pairs ("opened_by+subcategory": both values at once) learns a weight
per value and class directly, which ranks the runner-up classes well. `ml.incidents.hgb.GroupClassifier`
blends it with its trees (`cross_weight`). Values seen fewer than `min_frequency` times in training, unseen
values and missing ones fall into one "infrequent" indicator per column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from ml.incidents.history import has_key, key_values

MISSING = "\x00missing"


def cross_tokens(X: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One string column per key (a field, or fields joined by "+"); missing values as `MISSING`."""
    out = {}
    for key in keys:
        if has_key(X, key):
            values = key_values(X, key).to_numpy(dtype=object)
            out[key] = np.array([MISSING if v is None or v != v else str(v) for v in values], dtype=object)
        else:
            out[key] = np.full(len(X), MISSING, dtype=object)
    return pd.DataFrame(out, index=X.index)


class CrossLogit(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression on one-hot `columns` and `crosses` of incident records."""

    def __init__(self, columns=(), crosses=(), C=1.0, min_frequency=2, max_iter=300):
        self.columns = columns
        self.crosses = crosses
        self.C = C
        self.min_frequency = min_frequency
        self.max_iter = max_iter

    def fit(self, X: pd.DataFrame, y, sample_weight=None):
        self.keys_ = [k for k in (*self.columns, *self.crosses) if has_key(X, k)]
        if not self.keys_:
            raise ValueError("CrossLogit: the records carry none of the configured columns")
        self.encoder_ = OneHotEncoder(
            handle_unknown="infrequent_if_exist", min_frequency=int(self.min_frequency)
        )
        A = self.encoder_.fit_transform(cross_tokens(X, self.keys_))
        self.model_ = LogisticRegression(C=float(self.C), max_iter=int(self.max_iter))
        self.model_.fit(A, np.asarray(y, dtype=object).astype(str), sample_weight=sample_weight)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(self.encoder_.transform(cross_tokens(X, self.keys_)))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
