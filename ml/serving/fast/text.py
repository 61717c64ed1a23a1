"""Fitted TF-IDF vectorizers and one-hot encoders as lookups, for one request's worth of records.

`CompiledTfidf.row(text)` gives the (columns, values) of `TfidfVectorizer.transform([text])`'s one row with
the same arithmetic in the same dtype: the vectorizer's own analyzer, counts, log + 1 (sublinear tf), times
idf, then L2 norm summed left to right in float64 like sklearn's `_inplace_csr_row_normalize_l2`.
`OneHotLookup` maps a raw category to its output column, built from the encoder's public attributes and
checked against the encoder itself at compile time (any disagreement: no fast path).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ml.serving.fast.trees import Unsupported


class CompiledTfidf:
    def __init__(self, vectorizer):
        if vectorizer.binary or vectorizer.norm not in ("l2", None):
            raise Unsupported(f"TF-IDF with binary={vectorizer.binary}, norm={vectorizer.norm!r}")
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary = dict(vectorizer.vocabulary_)
        self.dtype = np.dtype(vectorizer.dtype)
        self.sublinear = bool(vectorizer.sublinear_tf)
        self.idf = np.asarray(vectorizer.idf_) if vectorizer.use_idf else None
        self.norm = vectorizer.norm
        self.width = len(vectorizer.vocabulary_)

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        counts: dict[int, int] = {}
        vocab = self.vocabulary
        for token in self.analyze(text):
            j = vocab.get(token)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=self.dtype)
        cols = np.array(sorted(counts), dtype=np.intp)
        data = np.array([counts[j] for j in cols], dtype=self.dtype)
        if self.sublinear:
            np.log(data, data)
            data += 1.0
        if self.idf is not None:
            data *= self.idf[cols]
        if self.norm == "l2":
            total = np.cumsum((data * data).astype(np.float64))[-1]
            if total != 0.0:
                data = (data.astype(np.float64) / np.sqrt(total)).astype(self.dtype)
        return cols, data


class OneHotLookup:
    """Per categorical column, raw value (as the model's features spell it) -> output column or -1."""

    def __init__(self, encoder, columns: list[str]):
        if getattr(encoder, "drop", None) is not None:
            raise Unsupported("one-hot encoder with drop")
        if encoder.handle_unknown not in ("infrequent_if_exist", "ignore"):
            raise Unsupported(f"one-hot encoder handle_unknown={encoder.handle_unknown!r}")
        infrequent = getattr(encoder, "infrequent_categories_", None) or [None] * len(columns)
        self.columns, self.maps, self.unknown = list(columns), [], []
        offset = 0
        for cats, rare in zip(encoder.categories_, infrequent, strict=True):
            rare_set = set() if rare is None else {str(x) for x in rare}
            frequent = [str(c) for c in cats if str(c) not in rare_set]
            mapping = {c: offset + i for i, c in enumerate(frequent)}
            has_rare = bool(rare_set)
            for c in rare_set:
                mapping[c] = offset + len(frequent)
            self.maps.append(mapping)
            self.unknown.append(offset + len(frequent) if has_rare else -1)
            offset += len(frequent) + has_rare
        self.width = offset
        self._check(encoder)

    def _check(self, encoder) -> None:
        """Every known category and one unseen value, through the encoder itself and through the lookup."""
        n = max(len(m) for m in self.maps) + 1
        values = {}
        for c, mapping in zip(self.columns, self.maps, strict=True):
            known = list(mapping)
            values[c] = [known[i % len(known)] for i in range(n - 1)] + ["\x00never seen\x00"]
        frame = pd.DataFrame(values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = encoder.transform(frame)
        expected = expected.toarray() if hasattr(expected, "toarray") else np.asarray(expected)
        got = np.zeros_like(expected)
        for i in range(n):
            for j in self.positions([values[c][i] for c in self.columns]):
                got[i, j] = 1
        if expected.shape[1] != self.width or not np.array_equal(expected != 0, got != 0):
            raise Unsupported("the one-hot lookup disagrees with the fitted encoder")

    def positions(self, raw_values) -> list[int]:
        out = []
        for mapping, unknown, value in zip(self.maps, self.unknown, raw_values, strict=True):
            j = mapping.get(value, unknown)
            if j >= 0:
                out.append(j)
        return out
