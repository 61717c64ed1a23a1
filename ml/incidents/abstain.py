"""A classifier that may say "not sure": per-class confidence thresholds for a target precision.

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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression

from ml.incidents.targets import sort_by_time
from ml.incidents.text import IncidentTextFeatures

ABSTAIN = "(abstain)"


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
