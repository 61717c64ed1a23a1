"""Incident text and open-time metadata -> one sparse matrix, shared by triage, system/team and similar search.

`IncidentTextFeatures` is the first step of the triage, system/team and similar-incident models: word
1-2 gram TF-IDF of the short description (weighted up: it is what the caller chose to say first), word TF-IDF of the description, character 3-5 grams (`char_wb`) of both
(robust to typos and error codes such as `ORA-01653`), and a one-hot block of categorical open-time
fields. It reads only `input_columns()`, a subset of `schemas.OPEN_TIME_COLUMNS`; with `use_text=False`
it is a plain one-hot encoder for sources without free text (the UCI event log). Text is cleaned with
`ml.features.clean_text`, the one cleaning of ticket text. The class lives here, not in `ml.features`,
because only the text models use it and it is their vectoriser (configured by `make_text_features`).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import OneHotEncoder

from ml.data import schemas
from ml.features import MAX_CHARS, MISSING, TEXT_COLUMNS, clean_column

# Metadata a triage-style model may read by default: how and where the ticket came in, and how bad it is.
METADATA_COLUMNS = ("contact_type", "location", "impact", "urgency", "priority")
# Never inputs, whatever a caller asks for: the team owning the system (a target) and the generator's truth.
FORBIDDEN_COLUMNS = frozenset({"owning_team", "root_cause"})


def check_input_columns(columns) -> list[str]:
    """Open-time columns only: naming an outcome, the owning team, the root cause or an unknown column raises."""
    cols = list(dict.fromkeys(columns))
    for c in cols:
        if c in FORBIDDEN_COLUMNS or c not in schemas.OPEN_TIME_COLUMNS:
            if c in schemas.OUTCOME_COLUMNS:
                what = "an outcome column (not known at open time)"
            elif c in FORBIDDEN_COLUMNS:
                what = "a target / hidden truth, never an input"
            else:
                what = "not an open-time column"
            raise ValueError(f"input column {c!r} is {what}; allowed: {sorted(schemas.OPEN_TIME_COLUMNS)}")
    return cols


class IncidentTextFeatures(TransformerMixin, BaseEstimator):
    """Raw incident records -> sparse float matrix: weighted text TF-IDF blocks plus one-hot metadata.

    - `short_weight` scales the short-description word block (the description block has weight 1 and the
      character block `char_weight`); each block is L2-normalised per row before weighting;
    - word 1-2 grams, `min_df` documents at least, `word_max_features` terms per block; character
      `char_ngram_range` grams inside word boundaries over short + description (0 `char_max_features`
      drops the block);
    - `categorical_columns` one-hot encoded (missing is its own category, values seen fewer than
      `min_frequency` times and unseen ones share an "infrequent" column), times `metadata_weight`;
    - `use_text=False`: only the one-hot block (sources without free text).
    Text is cleaned with `clean_text` here, so nothing outside this class needs to.
    """

    def __init__(
        self,
        use_text=True,
        categorical_columns=METADATA_COLUMNS,
        short_weight=2.0,
        char_weight=1.0,
        metadata_weight=1.0,
        word_max_features=20000,
        char_max_features=30000,
        char_ngram_range=(3, 5),
        min_df=2,
        min_frequency=5,
        max_chars=MAX_CHARS,
        dtype=np.float32,
    ):
        self.use_text = use_text
        self.categorical_columns = categorical_columns
        self.short_weight = short_weight
        self.char_weight = char_weight
        self.metadata_weight = metadata_weight
        self.word_max_features = word_max_features
        self.char_max_features = char_max_features
        self.char_ngram_range = char_ngram_range
        self.min_df = min_df
        self.min_frequency = min_frequency
        self.max_chars = max_chars
        self.dtype = dtype

    # -- the columns this instance reads -------------------------------------------------------------
    def input_columns(self) -> list[str]:
        """Raw columns read; all in `schemas.OPEN_TIME_COLUMNS` (asking for another raises)."""
        cols = list(self.categorical_columns or ())
        if self.use_text:
            cols = [*TEXT_COLUMNS, *cols]
        if not cols:
            raise ValueError("IncidentTextFeatures reads nothing: set use_text=True or categorical_columns")
        return check_input_columns(cols)

    def _select(self, X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"IncidentTextFeatures needs a DataFrame of incident records, got {type(X).__name__}"
            )
        cols = self.input_columns()
        missing = [c for c in cols if c not in X.columns]
        if missing:
            raise ValueError(f"incident records lack column(s) {missing}")
        return X[cols]

    # -- fit / transform -----------------------------------------------------------------------------
    def fit(self, X, y=None):
        frame = self._select(X)
        if len(frame) == 0:
            raise ValueError("IncidentTextFeatures.fit needs at least one incident")
        self.word_short_ = self.word_desc_ = self.char_ = self.encoder_ = None
        if self.use_text:
            short, desc = self._texts(frame)
            if not any(short) and not any(desc):
                raise ValueError("use_text=True but the records carry no text (set use_text=False)")
            self.word_short_ = self._fit_vectorizer(self._word_vectorizer(), short)
            self.word_desc_ = self._fit_vectorizer(self._word_vectorizer(), desc)
            if self.char_max_features:
                both = [f"{s} {d}".strip() for s, d in zip(short, desc, strict=True)]
                self.char_ = self._fit_vectorizer(
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=tuple(self.char_ngram_range),
                        min_df=self._min_df(len(both)),
                        max_features=self.char_max_features,
                        sublinear_tf=True,
                        dtype=self.dtype,
                    ),
                    both,
                )
        cats = list(self.categorical_columns or ())
        if cats:
            self.encoder_ = OneHotEncoder(
                handle_unknown="infrequent_if_exist",
                min_frequency=self.min_frequency,
                dtype=self.dtype,
            ).fit(self._categoricals(frame))
        self.feature_names_out_ = self._names()
        return self

    def transform(self, X) -> sp.csr_matrix:
        return sp.hstack(self._blocks(self._select(X)), format="csr", dtype=self.dtype)

    def text_matrix(self, X) -> sp.csr_matrix:
        """Only the text blocks (as weighted in `transform`); zero columns when fitted without text."""
        frame = self._select(X)
        blocks = self._blocks(frame, metadata=False)
        return sp.hstack(blocks, format="csr", dtype=self.dtype) if blocks else sp.csr_matrix((len(frame), 0))

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.feature_names_out_, dtype=object)

    def __getstate__(self):
        """Saved state without sklearn's `_stop_words_id` (a Python object id, re-set on every transform),
        so two identical fits save to identical bytes (`model_sha256`)."""
        state = super().__getstate__()
        for key in ("word_short_", "word_desc_", "char_"):
            vec = state.get(key)
            if vec is not None and "_stop_words_id" in vec.__dict__:
                vec = copy.copy(vec)
                del vec._stop_words_id
                state[key] = vec
        return state

    # -- pieces --------------------------------------------------------------------------------------
    def _blocks(self, frame: pd.DataFrame, metadata: bool = True) -> list:
        blocks = []
        if self.use_text:
            short, desc = self._texts(frame)
            blocks.append(self._weighted(self.word_short_, short, self.short_weight))
            blocks.append(self._weighted(self.word_desc_, desc, 1.0))
            if self.char_ is not None:
                both = [f"{s} {d}".strip() for s, d in zip(short, desc, strict=True)]
                blocks.append(self._weighted(self.char_, both, self.char_weight))
        if metadata and self.encoder_ is not None:
            blocks.append(
                sp.csr_matrix(self.encoder_.transform(self._categoricals(frame))) * self.metadata_weight
            )
        return blocks

    def _weighted(self, vectorizer, texts: list[str], weight: float):
        if vectorizer is None:
            return sp.csr_matrix((len(texts), 0), dtype=self.dtype)
        return vectorizer.transform(texts) * float(weight)

    def _texts(self, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
        return (
            clean_column(frame["short_description"].tolist(), self.max_chars),
            clean_column(frame["description"].tolist(), self.max_chars),
        )

    def _word_vectorizer(self) -> TfidfVectorizer:
        return TfidfVectorizer(
            ngram_range=(1, 2),
            min_df=1,  # set per fit in _fit_vectorizer
            max_features=self.word_max_features,
            sublinear_tf=True,
            token_pattern=r"(?u)\b\w[\w\-./]*\w\b|\b\w\b",  # keep codes like ora-01653, 0x80070005, 5.1.1
            dtype=self.dtype,
        )

    def _min_df(self, n_docs: int) -> int:
        return int(min(self.min_df, max(1, n_docs // 50)))

    def _fit_vectorizer(self, vectorizer: TfidfVectorizer, texts: list[str]):
        """Fit, or None when the field is empty everywhere (e.g. no descriptions): that block has 0 columns."""
        if not any(texts):
            return None
        vectorizer.set_params(min_df=self._min_df(len(texts)))
        try:
            vectorizer.fit(texts)
        except ValueError:  # only stop-words / too rare: nothing to learn from this field
            return None
        vectorizer.stop_words_ = None  # the pruned-terms set is large and only for introspection
        # plain ints: numpy scalars would each become a file in the skops zip (slow to save, large)
        vectorizer.vocabulary_ = {str(t): int(i) for t, i in vectorizer.vocabulary_.items()}
        return vectorizer

    def _categoricals(self, frame: pd.DataFrame) -> pd.DataFrame:
        cols = list(self.categorical_columns or ())
        out = pd.DataFrame(index=frame.index)
        for c in cols:
            v = frame[c].astype(object)
            out[c] = v.where(v.notna(), MISSING).map(_category_str)
        return out

    def _names(self) -> list[str]:
        names: list[str] = []
        for prefix, vec in (("short", self.word_short_), ("desc", self.word_desc_), ("char", self.char_)):
            if vec is not None:
                names += [f"{prefix}:{t}" for t in vec.get_feature_names_out()]
        if self.encoder_ is not None:
            names += [str(n) for n in self.encoder_.get_feature_names_out(list(self.categorical_columns))]
        return names


def _category_str(value) -> str:
    """A categorical value as text; 2, 2.0 and "2" are the same level (a column with gaps arrives as float)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def make_text_features(params=None, *, use_text: bool = True, categorical_columns=METADATA_COLUMNS):
    """`IncidentTextFeatures` configured from a params section (the keys it knows; others are ignored)."""
    p = dict(params or {})
    keys = (
        "short_weight",
        "char_weight",
        "metadata_weight",
        "word_max_features",
        "char_max_features",
        "min_df",
        "min_frequency",
        "max_chars",
    )
    kwargs = {k: p[k] for k in keys if k in p}
    if "char_ngram_range" in p:
        kwargs["char_ngram_range"] = tuple(p["char_ngram_range"])
    return IncidentTextFeatures(use_text=use_text, categorical_columns=tuple(categorical_columns), **kwargs)
