"""NLP triage at open time: raw incident -> assignment group and category, or an explicit "not sure".

`PrecisionTargetClassifier` follows ServiceNow Predictive Intelligence's contract: a probabilistic
classifier plus one confidence threshold per class, chosen so that a prediction of that class is right
at least `target_precision` of the time; below its threshold the model abstains and says why. It is one
sklearn object from raw incident records to predictions (features included), so the notebook, batch
scoring and the service predict the same way, and it handles one target or several (one "head" each,
sharing the text features).

How the thresholds are chosen (time-respecting, never on the test period):
1. training rows are sorted by `opened_at`; the latest `calibration_fraction` of them is the
   calibration slice;
2. features and classifier are fitted on the earlier rows and score the calibration slice;
3. for each class c, among calibration rows predicted as c, the threshold is the LOWEST confidence t
   such that the predictions of c with confidence >= t are at least `target_precision` correct (and
   there are at least `min_calibration_predictions` of them). A class that never gets there always
   abstains, and its reason is recorded;
4. with `refit=True` (the default) features and classifier are then refitted on ALL training rows and
   keep those thresholds. Why: the latest incidents carry what is new (a system rolled out last month
   would otherwise be unknown), and a model that saw more data is, if anything, more accurate at the same
   confidence, so the thresholds stay about right; the test-period precision per class is reported so
   this is checked, not assumed. Classes the calibration model never predicted (new in the slice) keep
   abstaining until a later retrain has evidence for them. `refit=False` keeps the calibration model
   itself (thresholds then hold exactly on the slice they were chosen on).

`make_triage` builds `incident-triage` (targets assignment_group and category from text + metadata);
`ml.incidents.system_team` builds `incident-system-team` with the same class. `compare_triage` scores a
model against a majority-class and a simple rule baseline on one time-ordered holdout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits

from ml.incidents.features import sort_by_time
from ml.incidents.text import METADATA_COLUMNS, IncidentTextFeatures, clean_column, make_text_features

ABSTAIN = "(abstain)"
TRIAGE_TARGETS = ("assignment_group", "category")
# Without free text (the UCI event log) the router has only categorical open-time fields.
NO_TEXT_COLUMNS = ("category", "subcategory", "location", "contact_type", "impact", "urgency", "priority")

DEFAULTS: dict[str, Any] = {
    "seed": 42,
    "test_fraction": 0.2,
    "closed_only": False,  # the routing label is known at open time: open tickets are labelled too
    "targets": list(TRIAGE_TARGETS),
    "use_text": True,
    "categorical_columns": list(METADATA_COLUMNS),
    "no_text_columns": list(NO_TEXT_COLUMNS),
    "target_precision": 0.8,
    "calibration_fraction": 0.2,
    "min_calibration_predictions": 5,
    "refit": True,
    "top_k": 3,
    "C": 1.0,
    "max_iter": 500,
    "class_weight": None,
    "short_weight": 2.0,
    "char_weight": 1.0,
    "metadata_weight": 1.0,
    "word_max_features": 20000,
    "char_max_features": 20000,
    "min_df": 2,
    "min_frequency": 5,
    "rule_min_count": 5,
    "n_threads": 1,  # BLAS threads while fitting; the box is shared
}


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**DEFAULTS, **(params or {})}


# --- thresholds ----------------------------------------------------------------------------------------
def precision_thresholds(
    confidence: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    classes: Sequence,
    target_precision: float,
    min_predictions: int = 1,
) -> pd.DataFrame:
    """Per class: the lowest confidence threshold whose predictions of that class reach `target_precision`.

    Rows of the result (index = class): threshold (inf when unreachable), predicted (calibration rows
    predicted as the class), covered (of those, at or above the threshold), precision (among covered),
    reason ("" when a threshold exists).
    """
    confidence = np.asarray(confidence, dtype=float)
    predicted = np.array([str(v) for v in predicted], dtype=object)
    truth = np.array([None if v is None else str(v) for v in truth], dtype=object)
    rows = []
    for c in classes:
        c = str(c)
        mask = predicted == c
        n = int(mask.sum())
        conf = confidence[mask]
        right = (truth[mask] == c).astype(float)
        order = np.argsort(-conf, kind="stable")
        conf, right = conf[order], right[order]
        cum_right, count = np.cumsum(right), np.arange(1, n + 1)
        # only the last row of a run of equal confidences is a valid cut (ties go in together)
        last_of_tie = np.r_[conf[1:] != conf[:-1], True] if n else np.zeros(0, dtype=bool)
        ok = last_of_tie & (cum_right >= target_precision * count - 1e-12) & (count >= min_predictions)
        if n == 0:
            rows.append((c, np.inf, 0, 0, np.nan, "never predicted on the calibration slice"))
        elif not ok.any():
            best = float(np.max(cum_right / count))
            rows.append(
                (c, np.inf, n, 0, np.nan,
                 f"class never reaches precision {target_precision:.2f} on the calibration slice "
                 f"(best {best:.2f} over {n} predictions)")
            )  # fmt: skip
        else:
            i = int(np.flatnonzero(ok)[-1])  # the lowest threshold that still reaches the target
            rows.append((c, float(conf[i]), n, i + 1, float(cum_right[i] / (i + 1)), ""))
    return pd.DataFrame(
        rows, columns=["label", "threshold", "predicted", "covered", "precision", "reason"]
    ).set_index("label")


def calibration_split(n_rows: int, fraction: float) -> int:
    """Index where the calibration slice starts in time-ordered rows (at least 1 row on each side)."""
    if not 0 < float(fraction) < 1:
        raise ValueError(f"calibration_fraction must be in (0, 1), got {fraction!r}")
    if n_rows < 2:
        raise ValueError(f"need at least 2 training rows to hold out a calibration slice, got {n_rows}")
    return int(min(max(1, round(n_rows * (1 - float(fraction)))), n_rows - 1))


# --- the classifier --------------------------------------------------------------------------------------
class PrecisionTargetClassifier(ClassifierMixin, BaseEstimator):
    """Raw records -> features -> logistic regression per target, abstaining below per-class thresholds.

    `fit(X, y)`: X a DataFrame of incidents (sorted by `time_column` inside fit; `features="passthrough"`
    takes an already numeric matrix in time order), y one target (1-D) or several (DataFrame, one column
    per head). Rows whose label is missing are left out of that head only.
    `predict` returns the label or `abstain_label` (1-D for one target, (n, heads) object array for
    several, like sklearn's multi-output classifiers); `predict_frame` explains every answer.
    """

    def __init__(
        self,
        features=None,
        classifier=None,
        target_precision=0.8,
        calibration_fraction=0.2,
        min_calibration_predictions=5,
        refit=True,
        top_k=3,
        abstain_label=ABSTAIN,
        time_column="opened_at",
    ):
        self.features = features
        self.classifier = classifier
        self.target_precision = target_precision
        self.calibration_fraction = calibration_fraction
        self.min_calibration_predictions = min_calibration_predictions
        self.refit = refit
        self.top_k = top_k
        self.abstain_label = abstain_label
        self.time_column = time_column

    # -- configuration -----------------------------------------------------------------------------
    def _features(self):
        if isinstance(self.features, str) and self.features == "passthrough":
            return None
        return clone(self.features) if self.features is not None else IncidentTextFeatures()

    def _classifier(self):
        return (
            clone(self.classifier) if self.classifier is not None else LogisticRegression(C=1.0, max_iter=500)
        )

    def input_columns(self) -> list[str]:
        """Raw columns the features read (all open-time); [] for a passthrough matrix."""
        f = self.features_ if hasattr(self, "features_") else self._features()
        return [] if f is None else list(f.input_columns())

    # -- fit ---------------------------------------------------------------------------------------
    def fit(self, X, y):
        if not 0 < float(self.target_precision) <= 1:
            raise ValueError(f"target_precision must be in (0, 1], got {self.target_precision!r}")
        Y, names = _as_targets(y, len(X))
        self.multi_output_ = Y.shape[1] > 1 or isinstance(y, pd.DataFrame)
        self.target_names_ = list(names)
        order = self._time_order(X)
        X = X.iloc[order] if isinstance(X, pd.DataFrame) else X[order]
        Y = Y[order]
        start = calibration_split(len(order), self.calibration_fraction)
        early, late = _rows(X, slice(0, start)), _rows(X, slice(start, None))

        feats = self._features()
        M_early = feats.fit_transform(early) if feats is not None else early
        M_late = feats.transform(late) if feats is not None else late
        heads = [self._fit_head(M_early, Y[:start, j]) for j in range(Y.shape[1])]
        self.calibration_tables_ = []
        for j, clf in enumerate(heads):
            proba = clf.predict_proba(M_late)
            known = _present(Y[start:, j])
            table = precision_thresholds(
                proba.max(axis=1)[known],
                clf.classes_[proba.argmax(axis=1)][known],
                Y[start:, j][known],
                clf.classes_,
                self.target_precision,
                self.min_calibration_predictions,
            )
            self.calibration_tables_.append(table)
        self.n_calibration_ = int(len(order) - start)
        self.calibration_start_ = _time_at(X, start, self.time_column)

        if self.refit:
            feats = self._features()
            M_all = feats.fit_transform(X) if feats is not None else X
            heads = [self._fit_head(M_all, Y[:, j]) for j in range(Y.shape[1])]
        self.features_ = feats
        self.classifiers_ = heads
        self.classes_list_ = [np.asarray(clf.classes_, dtype=object) for clf in heads]
        self.thresholds_, self.threshold_reasons_ = [], []
        for clf, table in zip(heads, self.calibration_tables_, strict=True):
            thr = table["threshold"].reindex(clf.classes_).fillna(np.inf).to_numpy(dtype=float)
            why = table["reason"].reindex(clf.classes_)
            why = why.where(why.notna(), "not a class when thresholds were chosen (too new or too rare)")
            self.thresholds_.append(thr)
            self.threshold_reasons_.append([str(r) for r in why])
        # tables are for reading after fit; kept as plain dicts so the object stays skops-safe
        self.calibration_tables_ = [t.reset_index().to_dict(orient="list") for t in self.calibration_tables_]
        self.classes_ = self.classes_list_ if self.multi_output_ else self.classes_list_[0]
        return self

    def _fit_head(self, M, y: np.ndarray):
        known = _present(y)
        labels = y[known].astype(str)
        if len(np.unique(labels)) < 2:
            raise ValueError(
                f"a target needs at least 2 classes in the rows it is fitted on, got {np.unique(labels)}"
            )
        return self._classifier().fit(_rows(M, known), labels)

    def _time_order(self, X) -> np.ndarray:
        if isinstance(X, pd.DataFrame) and self.time_column in X.columns:
            pos = pd.DataFrame({"_pos": np.arange(len(X))}, index=X.index)
            keyed = pd.concat([X[[c for c in (self.time_column, "number") if c in X.columns]], pos], axis=1)
            if self.time_column != "opened_at":
                keyed = keyed.rename(columns={self.time_column: "opened_at"})
            return sort_by_time(keyed)["_pos"].to_numpy()
        if isinstance(X, pd.DataFrame) and self.features != "passthrough":
            raise ValueError(f"training records need {self.time_column!r} to order the calibration slice")
        return np.arange(X.shape[0])

    # -- predict -----------------------------------------------------------------------------------
    def _matrix(self, X):
        return self.features_.transform(X) if self.features_ is not None else X

    def predict_proba(self, X):
        """Class probabilities per head: an (n, classes) array, or a list of them for several targets."""
        M = self._matrix(X)
        probs = [clf.predict_proba(M) for clf in self.classifiers_]
        return probs if self.multi_output_ else probs[0]

    def predict(self, X):
        frame = self.predict_frame(X, top_k=1)
        cols = [
            frame[f"{t}_prediction"] if self.multi_output_ else frame["prediction"]
            for t in self.target_names_
        ]
        out = np.column_stack([c.to_numpy(dtype=object) for c in cols])
        return out if self.multi_output_ else out[:, 0]

    def predict_frame(self, X, top_k: int | None = None) -> pd.DataFrame:
        """Per row and head: label (best guess), confidence, threshold, abstain, reason, prediction (label
        or the abstain label), top_labels / top_probabilities (the `top_k` best). One head: plain column
        names; several: prefixed `<target>_`."""
        M = self._matrix(X)
        k = int(top_k or self.top_k)
        index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(M.shape[0])
        parts = []
        for j, clf in enumerate(self.classifiers_):
            part = self._explain_head(j, clf.predict_proba(M), k, index)
            if self.multi_output_:
                part = part.add_prefix(f"{self.target_names_[j]}_")
            parts.append(part)
        return pd.concat(parts, axis=1)

    def explain(self, X, top_k: int | None = None) -> pd.DataFrame:
        """Alias of `predict_frame` (what the model says and why, per row)."""
        return self.predict_frame(X, top_k)

    def _explain_head(self, j: int, proba: np.ndarray, k: int, index) -> pd.DataFrame:
        classes, thr, why = self.classes_list_[j], self.thresholds_[j], self.threshold_reasons_[j]
        best = proba.argmax(axis=1)
        conf = proba[np.arange(len(best)), best]
        threshold = thr[best]
        abstain = ~(conf >= threshold)
        reasons = []
        for b, c, t, a in zip(best, conf, threshold, abstain, strict=True):
            if not a:
                reasons.append("")
            elif np.isinf(t):
                reasons.append(f"{classes[b]!r}: {why[b]}")
            else:
                reasons.append(f"confidence {c:.2f} below the {t:.2f} threshold for {classes[b]!r}")
        top = np.argsort(-proba, axis=1, kind="stable")[:, : min(k, proba.shape[1])]
        labels = classes[best]
        return pd.DataFrame(
            {
                "label": labels,
                "confidence": conf,
                "threshold": threshold,
                "abstain": abstain,
                "reason": reasons,
                "prediction": np.where(abstain, self.abstain_label, labels).astype(object),
                "top_labels": [list(classes[r]) for r in top],
                "top_probabilities": [[float(p) for p in proba[i, r]] for i, r in enumerate(top)],
            },
            index=index,
        )

    # -- reading the thresholds --------------------------------------------------------------------
    def thresholds_table(self, target: str | None = None) -> pd.DataFrame:
        """Per class of one head: the threshold in use, why a class abstains, and the calibration slice's
        numbers (predicted, covered, precision)."""
        j = self._head(target)
        cal = pd.DataFrame(self.calibration_tables_[j]).set_index("label")
        out = pd.DataFrame(
            {"threshold": self.thresholds_[j], "reason": self.threshold_reasons_[j]},
            index=pd.Index(self.classes_list_[j], name="label"),
        )
        cal = cal.drop(columns=["threshold", "reason"]).add_prefix("calibration_")
        return out.join(cal, how="left")

    def _head(self, target: str | None) -> int:
        if target is None:
            if len(self.target_names_) > 1:
                raise ValueError(f"several targets: name one of {self.target_names_}")
            return 0
        if target not in self.target_names_:
            raise ValueError(f"unknown target {target!r}; this model predicts {self.target_names_}")
        return self.target_names_.index(target)


def _as_targets(y, n: int) -> tuple[np.ndarray, list[str]]:
    """Targets as an (n, heads) object array with None for missing, and their names."""
    if isinstance(y, pd.DataFrame):
        names = [str(c) for c in y.columns]
        arr = y.astype(object).where(y.notna(), None).to_numpy(dtype=object)
    elif isinstance(y, pd.Series):
        names = [str(y.name) if y.name is not None else "label"]
        arr = y.astype(object).where(y.notna(), None).to_numpy(dtype=object)[:, None]
    else:
        arr = np.asarray(y, dtype=object)
        arr = arr[:, None] if arr.ndim == 1 else arr
        names = ["label"] if arr.shape[1] == 1 else [f"target_{i}" for i in range(arr.shape[1])]
        arr = np.where(pd.isna(arr), None, arr)
    if arr.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {arr.shape[0]}")
    # labels are strings from here on (truth and classes compare equal whatever the source dtype)
    arr = np.array([[None if v is None or v != v else str(v) for v in row] for row in arr], dtype=object)
    return arr, names


def _present(y: np.ndarray) -> np.ndarray:
    return np.array([v is not None and v == v for v in y], dtype=bool)


def _rows(M, which):
    return M.iloc[which] if isinstance(M, pd.DataFrame) else M[which]


def _time_at(X, i: int, col: str) -> str | None:
    if isinstance(X, pd.DataFrame) and col in X.columns:
        return str(pd.Timestamp(X[col].iloc[i]))
    return None


# --- the incident-triage model ------------------------------------------------------------------------------
def make_classifier(
    params: Mapping[str, Any] | None = None, *, use_text: bool | None = None, categorical_columns=None
):
    """An unfitted `PrecisionTargetClassifier` over `IncidentTextFeatures` configured from params.

    With text the metadata is `categorical_columns` (default contact_type, location, impact, urgency,
    priority); without text (`use_text=False`) it is `no_text_columns`.
    """
    p = _params(params)
    text = p["use_text"] if use_text is None else use_text
    cols = categorical_columns
    if cols is None:
        cols = p["categorical_columns"] if text else p["no_text_columns"]
    feats = make_text_features(p, use_text=bool(text), categorical_columns=tuple(cols))
    clf = LogisticRegression(
        C=p["C"], max_iter=p["max_iter"], class_weight=p["class_weight"], random_state=p["seed"]
    )
    return PrecisionTargetClassifier(
        features=feats,
        classifier=clf,
        target_precision=p["target_precision"],
        calibration_fraction=p["calibration_fraction"],
        min_calibration_predictions=p["min_calibration_predictions"],
        refit=p["refit"],
        top_k=p["top_k"],
    )


def make_triage(params: Mapping[str, Any] | None = None) -> PrecisionTargetClassifier:
    """`incident-triage`: assignment_group and category from the ticket text and how it came in.

    Inputs: short_description, description, contact_type, location, impact, urgency, priority. Not the
    targets, and not cmdb_ci: the impacted system is what `incident-system-team` predicts because
    callers rarely fill it (the real UCI log has it for 0.2% of tickets); a router that needs it would
    fail exactly on the tickets that need routing. Without text the inputs are `no_text_columns` minus
    the targets.
    """
    p = _params(params)
    cols = None if p["use_text"] else [c for c in p["no_text_columns"] if c not in p["targets"]]
    return make_classifier(p, categorical_columns=cols)


def targets_frame(incidents: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    """The target columns as a DataFrame (missing stays missing); errors name a missing column."""
    missing = [t for t in targets if t not in incidents.columns]
    if missing:
        raise ValueError(f"incident records lack target column(s) {missing}")
    return incidents[list(targets)]


def fit_model(
    model: PrecisionTargetClassifier, train: pd.DataFrame, targets: Sequence[str], n_threads: int = 1
):
    """Fit a classifier on training incidents (rows with every target missing are dropped)."""
    Y = targets_frame(train, targets)
    keep = Y.notna().any(axis=1)
    with threadpool_limits(n_threads):
        return model.fit(train[keep], Y[keep])


def fit_triage(train: pd.DataFrame, params: Mapping[str, Any] | None = None) -> PrecisionTargetClassifier:
    """Fit `incident-triage` on training incidents."""
    p = _params(params)
    return fit_model(make_triage(p), train, p["targets"], p["n_threads"])


# --- baselines ----------------------------------------------------------------------------------------------
class MajorityBaseline:
    """Always the most frequent training label; its ranking is the training label frequency."""

    def fit(self, X, y):
        counts = pd.Series(y).dropna().astype(str).value_counts()
        self.ranking_ = list(counts.index)
        return self

    def ranked(self, X, k: int = 3) -> list[list[str]]:
        return [self.ranking_[:k]] * len(X)


class LookupRuleBaseline:
    """The rule a service desk writes first: the most frequent label per value of the first key column
    present (e.g. subcategory, then category), else the overall majority."""

    def __init__(self, keys: Sequence[str] = ("subcategory", "category"), min_count: int = 5):
        self.keys, self.min_count = tuple(keys), min_count

    def fit(self, X: pd.DataFrame, y):
        y = pd.Series(np.asarray(y, dtype=object), index=X.index)
        known = y.notna()
        self.tables_ = {}
        for key in self.keys:
            pairs = pd.DataFrame({"k": X.loc[known, key].astype(object), "y": y[known].astype(str)}).dropna()
            counts = pairs.groupby(["k", "y"]).size().rename("n").reset_index()
            counts = counts[counts.groupby("k")["n"].transform("sum") >= self.min_count]
            counts = counts.sort_values(["k", "n", "y"], ascending=[True, False, True])
            self.tables_[key] = counts.groupby("k")["y"].agg(list).to_dict()
        self.majority_ = MajorityBaseline().fit(None, y[known])
        return self

    def ranked(self, X: pd.DataFrame, k: int = 3) -> list[list[str]]:
        out = []
        fallback = self.majority_.ranking_
        for _, row in X[list(self.keys)].iterrows():
            ranking = next(
                (self.tables_[key][row[key]] for key in self.keys if row[key] in self.tables_[key]), []
            )
            out.append(list(dict.fromkeys([*ranking, *fallback]))[:k])
        return out


class KeywordRuleBaseline:
    """A keyword lookup: each word of the cleaned short description seen at least `min_count` times votes
    for its most frequent label; the purest word present wins (ties: the more frequent word); else majority."""

    def __init__(self, min_count: int = 5):
        self.min_count = min_count

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y, dtype=object)
        words = [set(t.split()) for t in clean_column(X["short_description"].tolist())]
        rows = [(w, str(label)) for ws, label in zip(words, y, strict=True) if label is not None for w in ws]
        counts = pd.DataFrame(rows, columns=["w", "y"]).groupby(["w", "y"]).size().rename("n").reset_index()
        total = counts.groupby("w")["n"].transform("sum")
        counts = counts.assign(total=total, purity=counts["n"] / total)
        counts = counts[counts["total"] >= self.min_count]
        counts = counts.sort_values(["w", "n", "y"], ascending=[True, False, True])
        self.rules_ = {
            w: (float(g["purity"].iloc[0]), int(g["total"].iloc[0]), list(g["y"]))
            for w, g in counts.groupby("w")
        }
        self.majority_ = MajorityBaseline().fit(None, [v for v in y if v is not None])
        return self

    def ranked(self, X: pd.DataFrame, k: int = 3) -> list[list[str]]:
        out = []
        for text in clean_column(X["short_description"].tolist()):
            hits = [self.rules_[w] for w in set(text.split()) if w in self.rules_]
            ranking = max(hits, key=lambda h: (h[0], h[1]))[2] if hits else []
            out.append(list(dict.fromkeys([*ranking, *self.majority_.ranking_]))[:k])
        return out


# --- evaluation -------------------------------------------------------------------------------------------------
def head_metrics(
    y_true, frame: pd.DataFrame, thresholds: pd.DataFrame | None = None, target_precision: float | None = None
) -> tuple[dict, pd.DataFrame]:
    """Metrics of one head's `predict_frame` (plain column names) against the truth, and the per-class table.

    Overall: accuracy / macro-F1 of the best guess (never abstaining), top-3 accuracy, coverage (share
    answered), accuracy when covered (precision of the answers), automation rate (answered and right).
    Per class (truth or predicted): support, answered (predictions of the class made), precision (of those),
    recall (right answers / support), coverage (share of the class's tickets that got an answer), the
    threshold and the calibration slice's precision when given. With `target_precision`, also how many
    of the answered classes reach it on these rows.
    """
    y = pd.Series(np.asarray(y_true, dtype=object), index=frame.index)
    known = y.notna()
    y, frame = y[known].astype(str), frame[known]
    guess, answered = frame["label"].astype(str), ~frame["abstain"].to_numpy(dtype=bool)
    right = (guess == y).to_numpy()
    in_top = np.array([t in labels for t, labels in zip(y, frame["top_labels"], strict=True)])
    n = len(y)
    metrics = {
        "n": int(n),
        "accuracy": float(right.mean()) if n else float("nan"),
        "macro_f1": float(f1_score(y, guess, average="macro", zero_division=0)) if n else float("nan"),
        "top3_accuracy": float(in_top.mean()) if n else float("nan"),
        "coverage": float(answered.mean()) if n else float("nan"),
        "accuracy_when_covered": float(right[answered].mean()) if answered.any() else float("nan"),
        "automation_rate": float((right & answered).mean()) if n else float("nan"),
    }
    labels = sorted(set(y) | set(guess[answered]))
    rows = []
    for c in labels:
        is_c, said_c = (y == c).to_numpy(), (guess == c).to_numpy() & answered
        rows.append(
            {
                "label": c,
                "support": int(is_c.sum()),
                "answered": int(said_c.sum()),
                "precision": float((said_c & is_c).sum() / said_c.sum()) if said_c.any() else float("nan"),
                "recall": float((said_c & is_c).sum() / is_c.sum()) if is_c.any() else float("nan"),
                "coverage": float(answered[is_c].mean()) if is_c.any() else float("nan"),
                "top1_recall": float(right[is_c].mean()) if is_c.any() else float("nan"),
            }
        )
    table = pd.DataFrame(rows).set_index("label") if rows else pd.DataFrame()
    if thresholds is not None and len(table):
        table = table.join(thresholds[["threshold", "calibration_precision"]], how="left")
    reach = table["precision"].dropna() if len(table) else pd.Series(dtype=float)
    metrics["classes_total"] = int(len(table))
    metrics["classes_answered"] = int(len(reach))
    if target_precision is not None:
        metrics["classes_answered_at_target"] = int(reach.ge(target_precision).sum())
    return metrics, table


def baseline_metrics(y_true, ranked: list[list[str]]) -> dict:
    """Accuracy, macro-F1 and top-3 accuracy of a baseline's ranked labels (it always answers)."""
    y = pd.Series(np.asarray(y_true, dtype=object))
    known = y.notna().to_numpy()
    y = y[known].astype(str).to_numpy()
    ranked = [r for r, k in zip(ranked, known, strict=True) if k]
    first = np.array([r[0] if r else "" for r in ranked], dtype=object)
    right = first == y
    n = len(y)
    return {
        "n": int(n),
        "accuracy": float(right.mean()) if n else float("nan"),
        "macro_f1": float(f1_score(y, first, average="macro", zero_division=0)) if n else float("nan"),
        "top3_accuracy": float(np.mean([t in r[:3] for t, r in zip(y, ranked, strict=True)]))
        if n
        else float("nan"),
        "coverage": 1.0,
        "accuracy_when_covered": float(right.mean()) if n else float("nan"),
        "automation_rate": float(right.mean()) if n else float("nan"),
    }


def head_frame(model: PrecisionTargetClassifier, frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """One head's columns of a `predict_frame` result, with the plain (unprefixed) names."""
    if not model.multi_output_:
        return frame
    prefix = f"{target}_"
    return frame[[c for c in frame.columns if c.startswith(prefix)]].rename(
        columns=lambda c: c[len(prefix) :]
    )


@dataclass
class Comparison:
    """What `compare_*` returns: one row per (target, model), per-class tables, flat metrics, the model."""

    table: pd.DataFrame
    per_class: dict[str, pd.DataFrame]
    metrics: dict[str, float]
    model: PrecisionTargetClassifier
    fit_seconds: float
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)


def compare_models(
    model: PrecisionTargetClassifier,
    train: pd.DataFrame,
    test: pd.DataFrame,
    targets: Sequence[str],
    rule_keys: Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Comparison:
    """Fit `model` on train and score it on test next to a majority-class and a rule baseline per target.

    The rule is a keyword lookup on the short description when the data has text, else the most
    frequent label per value of `rule_keys` (first key present wins). Flat metrics are named
    `<target>_<metric>`, baselines `<target>_baseline_<name>_<metric>`, and
    `<target>_accuracy_margin_vs_best_baseline` compares the model's best-guess accuracy with the best
    baseline's.
    """
    p = _params(params)
    start = time.perf_counter()
    fit_model(model, train, targets, p["n_threads"])
    seconds = time.perf_counter() - start
    with threadpool_limits(p["n_threads"]):
        frame = model.predict_frame(test)
    has_text = "short_description" in train and train["short_description"].notna().any()
    rows, per_class, flat, baselines = [], {}, {"fit_seconds": seconds}, {}
    for target in targets:
        y_train, y_test = train[target].to_numpy(dtype=object), test[target].to_numpy(dtype=object)
        m, table = head_metrics(
            y_test, head_frame(model, frame, target), model.thresholds_table(target), model.target_precision
        )
        per_class[target] = table
        rows.append({"target": target, "model": "model", **m})
        base = {"majority": MajorityBaseline().fit(train, y_train)}
        keys = [k for k in (rule_keys or ()) if k != target and k in train.columns]
        if has_text:
            base["keyword_rule"] = KeywordRuleBaseline(p["rule_min_count"]).fit(train, _nones(y_train))
        elif keys:
            base["lookup_rule"] = LookupRuleBaseline(keys, p["rule_min_count"]).fit(train, _nones(y_train))
        for name, b in base.items():
            bm = baseline_metrics(y_test, b.ranked(test, 3))
            rows.append({"target": target, "model": name, **bm})
            baselines[f"{target}/{name}"] = bm
            flat |= {f"{target}_baseline_{name}_{k}": v for k, v in bm.items() if k != "n"}
        flat |= {f"{target}_{k}": v for k, v in m.items()}
        best = max(baselines[f"{target}/{name}"]["accuracy"] for name in base)
        flat[f"{target}_accuracy_margin_vs_best_baseline"] = m["accuracy"] - best
    table = pd.DataFrame(rows).set_index(["target", "model"])
    return Comparison(table, per_class, flat, model, seconds, baselines)


def _nones(values: np.ndarray) -> np.ndarray:
    return np.array([None if (v is None or v != v) else v for v in values], dtype=object)


def compare_triage(
    train: pd.DataFrame, test: pd.DataFrame, params: Mapping[str, Any] | None = None
) -> Comparison:
    """`incident-triage` against majority and rule baselines on one time-ordered holdout.

    With text the rule is the keyword lookup; without text (UCI) it is the most frequent group per
    subcategory, then per category.
    """
    p = _params(params)
    return compare_models(make_triage(p), train, test, p["targets"], ("subcategory", "category"), p)


def risk_coverage(y_true, frame: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of the most confident x% of tickets for every x: the trade-off the thresholds pick from."""
    y = pd.Series(np.asarray(y_true, dtype=object), index=frame.index)
    known = y.notna()
    conf = frame.loc[known, "confidence"].to_numpy(dtype=float)
    right = (frame.loc[known, "label"].astype(str) == y[known].astype(str)).to_numpy()
    order = np.argsort(-conf, kind="stable")
    n = np.arange(1, len(order) + 1)
    return pd.DataFrame(
        {
            "coverage": n / max(len(order), 1),
            "accuracy": np.cumsum(right[order]) / n,
            "confidence": conf[order],
        }
    )
