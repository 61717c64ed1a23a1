"""SLA-breach risk at open time: IncidentFeatures -> gradient boosting, calibrated on the latest slice of training.

The model is one sklearn object (`CalibratedClassifierCV` around a Pipeline) mapping raw incident records
to P(breach). Calibration is time-respecting on rows sorted by `opened_at`: with `calibration_splits: 1`
the classifier learns from everything before the last `calibration_fraction` of training and the calibrator
is fitted on that last slice (one pipeline, so one featurisation per ticket when serving); with more splits,
`TimeSeriesSplit` folds each give a calibrated classifier and their probabilities are averaged.
`compare_sla` puts it next to a plain logistic regression on the same features and a majority-class
baseline, on the same time-ordered holdout, with the same metrics.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ml import config
from ml.features import IncidentFeatures, limit_threads
from ml.incidents.targets import breach_target, sort_by_time


def make_features(params: Mapping[str, Any] | None = None) -> IncidentFeatures:
    """The IncidentFeatures step configured from params."""
    p = config.section("sla", params)
    return IncidentFeatures(
        min_frequency=p["min_frequency"],
        use_text=p["use_text"],
        text_components=p["text_components"],
        text_max_features=p["text_max_features"],
        random_state=p["seed"],
    )


def make_classifier(params: Mapping[str, Any] | None = None) -> Pipeline:
    """The unfitted, uncalibrated Pipeline: raw records -> features -> classifier (`model` = hgb | logistic)."""
    p = config.section("sla", params)
    if p["model"] == "logistic":
        return make_logistic(p)
    if p["model"] != "hgb":
        raise ValueError(f"sla.model must be 'hgb' or 'logistic', got {p['model']!r}")
    clf = HistGradientBoostingClassifier(
        max_iter=p["max_iter"],
        learning_rate=p["learning_rate"],
        max_leaf_nodes=p["max_leaf_nodes"],
        min_samples_leaf=p["min_samples_leaf"],
        l2_regularization=p["l2_regularization"],
        early_stopping=False,  # its validation split would be random; the iteration count is a param
        random_state=p["seed"],
    )
    return Pipeline([("features", make_features(p)), ("classifier", clf)])


def make_logistic(params: Mapping[str, Any] | None = None) -> Pipeline:
    """Plain L2 logistic regression on the same features (scaled): the linear baseline."""
    p = config.section("sla", params)
    clf = LogisticRegression(C=p["logistic_C"], max_iter=2000)
    return Pipeline([("features", make_features(p)), ("scale", StandardScaler()), ("classifier", clf)])


def _training_rows(train: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Closed training incidents sorted by opening time, with their 0/1 breach labels."""
    y = breach_target(train)
    rows = sort_by_time(train[y.notna()])
    labels = y.loc[rows.index].to_numpy(dtype=int)
    if len(np.unique(labels)) < 2:
        raise ValueError("SLA training needs both breached and met incidents")
    return rows, labels


def time_calibration_cv(n_rows: int, params: Mapping[str, Any] | None = None):
    """Forward-chaining (fit rows, calibration rows) splits; each calibration slice is `calibration_fraction`
    of the rows and later than its fit rows. One split is a list of one pair (TimeSeriesSplit needs two)."""
    p = config.section("sla", params)
    test_size = max(50, int(n_rows * p["calibration_fraction"]))
    if int(p["calibration_splits"]) == 1:
        cut = n_rows - test_size
        return [(np.arange(cut), np.arange(cut, n_rows))]
    return TimeSeriesSplit(n_splits=int(p["calibration_splits"]), test_size=test_size)


def fit_sla(train: pd.DataFrame, params: Mapping[str, Any] | None = None) -> CalibratedClassifierCV:
    """Fit the calibrated breach classifier on closed training incidents (sorted by `opened_at` here)."""
    p = config.section("sla", params)
    rows, y = _training_rows(train)
    model = CalibratedClassifierCV(
        make_classifier(p), method=p["calibration"], cv=time_calibration_cv(len(rows), p), ensemble=True
    )
    with threadpool_limits(p["n_threads"]):
        return model.fit(rows, y)


def fit_uncalibrated(train: pd.DataFrame, params: Mapping[str, Any] | None = None) -> Pipeline:
    """The same Pipeline fitted on all training rows without calibration (to show what calibration buys)."""
    p = config.section("sla", params)
    rows, y = _training_rows(train)
    with threadpool_limits(p["n_threads"]):
        return make_classifier(p).fit(rows, y)


def fit_logistic(train: pd.DataFrame, params: Mapping[str, Any] | None = None) -> Pipeline:
    """The logistic-regression baseline fitted on all training rows."""
    p = config.section("sla", params)
    rows, y = _training_rows(train)
    with threadpool_limits(p["n_threads"]):
        return make_logistic(p).fit(rows, y)


def fit_majority(train: pd.DataFrame) -> DummyClassifier:
    """Majority-class baseline: always the majority class; its probability is the training breach rate."""
    rows, y = _training_rows(train)
    return DummyClassifier(strategy="prior").fit(np.zeros((len(rows), 1)), y)


def breach_probability(model, incidents: pd.DataFrame, n_threads: int | None = 1) -> np.ndarray:
    """P(breach) per incident from any fitted classifier here (the dummy ignores the features)."""
    X = np.zeros((len(incidents), 1)) if isinstance(model, DummyClassifier) else incidents
    with limit_threads(n_threads):
        return model.predict_proba(X)[:, 1]


# --- evaluation -------------------------------------------------------------------------------------------
def reliability_table(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-width probability bin: incidents, mean predicted P(breach) and observed breach rate."""
    probs, y = np.asarray(probs, dtype=float), np.asarray(y, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, n_bins - 1)
    frame = pd.DataFrame({"bin": which, "p": probs, "y": y})
    table = frame.groupby("bin").agg(n=("y", "size"), mean_predicted=("p", "mean"), observed=("y", "mean"))
    table = table.reindex(range(n_bins))
    table.insert(0, "bin_low", edges[:-1])
    table.insert(1, "bin_high", edges[1:])
    table["n"] = table["n"].fillna(0).astype(int)
    return table.reset_index(drop=True)


def expected_calibration_error(table: pd.DataFrame) -> float:
    """Incident-weighted mean |observed - predicted| over the reliability bins."""
    t = table[table["n"] > 0]
    return float((t["n"] * (t["observed"] - t["mean_predicted"]).abs()).sum() / t["n"].sum())


def sla_metrics(probs: np.ndarray, y: np.ndarray, threshold: float | None = None) -> dict[str, Any]:
    """ROC AUC, PR AUC, Brier, log loss, breach rates, ECE and the reliability table for P(breach) vs truth."""
    probs, y = np.asarray(probs, dtype=float), np.asarray(y, dtype=int)
    both = len(np.unique(y)) == 2
    table = reliability_table(probs, y)
    out: dict[str, Any] = {
        "n": int(len(y)),
        "breach_rate": float(y.mean()),
        "mean_predicted": float(probs.mean()),
        "roc_auc": float(roc_auc_score(y, probs)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, probs)) if both else float("nan"),
        "brier": float(brier_score_loss(y, probs)),
        "log_loss": float(log_loss(y, np.clip(probs, 1e-6, 1 - 1e-6), labels=[0, 1])),
        "ece": expected_calibration_error(table),
        "reliability": table,
    }
    if threshold is not None:
        flag = probs >= threshold
        tp = int((flag & (y == 1)).sum())
        out |= {
            "threshold": float(threshold),
            "flagged_rate": float(flag.mean()),
            "precision": tp / max(int(flag.sum()), 1),
            "recall": tp / max(int(y.sum()), 1),
        }
    return out


def evaluate_sla(model, test: pd.DataFrame, threshold: float | None = None) -> dict[str, Any]:
    """`sla_metrics` of a fitted model on the closed incidents of `test`."""
    y = breach_target(test)
    rows = test[y.notna()]
    return sla_metrics(breach_probability(model, rows), y[y.notna()].to_numpy(dtype=int), threshold)


def expected_cost(probs, y, threshold: float, cost_fp: float, cost_fn: float) -> float:
    """Total cost of flagging `probs >= threshold`: cost_fp per false alarm plus cost_fn per missed breach."""
    probs, y = np.asarray(probs, dtype=float), np.asarray(y, dtype=int)
    flag = probs >= threshold
    return float(cost_fp * (flag & (y == 0)).sum() + cost_fn * (~flag & (y == 1)).sum())


def choose_threshold(probs, y, cost_fp: float, cost_fn: float) -> float:
    """The threshold (flag when P >= it) with the least `expected_cost` on (probs, y); ties -> the higher one.

    Candidates are the distinct probabilities plus one just above the largest (flag nothing). With
    calibrated probabilities the answer should sit near cost_fp / (cost_fp + cost_fn).
    """
    probs, y = np.asarray(probs, dtype=float), np.asarray(y, dtype=int)
    if cost_fp < 0 or cost_fn < 0:
        raise ValueError("costs must be non-negative")
    cands = np.unique(probs)
    cands = np.append(cands, np.nextafter(cands[-1], np.inf)) if len(cands) else np.array([0.5])
    order = np.argsort(probs)
    p_sorted, y_sorted = probs[order], y[order]
    # flag = probs >= c: misses are positives below c, false alarms are negatives at or above c
    below = np.searchsorted(p_sorted, cands, side="left")
    pos_below = np.concatenate([[0], np.cumsum(y_sorted == 1)])[below]
    neg_below = np.concatenate([[0], np.cumsum(y_sorted == 0)])[below]
    cost = cost_fn * pos_below + cost_fp * ((y == 0).sum() - neg_below)
    best = np.flatnonzero(cost == cost.min())[-1]
    return float(cands[best])


# --- the honest comparison ---------------------------------------------------------------------------------
def compare_sla(
    train: pd.DataFrame, test: pd.DataFrame, params: Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Calibrated model, its uncalibrated twin, logistic regression and majority class on one holdout.

    Returns (one row of metrics per model: fit seconds, the threshold-free metrics, the registration gate,
    and the cost per incident when flagging at the threshold that cost_fp / cost_fn imply for calibrated
    probabilities; the fitted models). The model row also gets the threshold chosen on training's last
    calibration slice and its cost, precision and recall on the holdout.
    """
    p = config.section("sla", params)
    fitters = {
        "model": lambda: fit_sla(train, p),
        "uncalibrated": lambda: fit_uncalibrated(train, p),
        "logistic": lambda: fit_logistic(train, p),
        "majority": lambda: fit_majority(train),
    }
    y = breach_target(test)
    rows_test, labels = test[y.notna()], y[y.notna()].to_numpy(dtype=int)
    bayes = p["cost_fp"] / (p["cost_fp"] + p["cost_fn"])

    def per_incident(probs, threshold):
        return expected_cost(probs, labels, threshold, p["cost_fp"], p["cost_fn"]) / len(labels)

    rows, models = [], {}
    for name, fit in fitters.items():
        start = time.perf_counter()
        models[name] = fit()
        seconds = time.perf_counter() - start
        probs = breach_probability(models[name], rows_test)
        m = {k: v for k, v in sla_metrics(probs, labels).items() if k != "reliability"}
        m["cost_per_incident_at_bayes_threshold"] = per_incident(probs, bayes)
        if name == "model":
            chosen = threshold_from_training(models[name], train, p)
            at = sla_metrics(probs, labels, chosen)
            m |= {k: at[k] for k in ("threshold", "flagged_rate", "precision", "recall")}
            m["cost_per_incident"] = per_incident(probs, chosen)
        rows.append({"model": name, "fit_seconds": seconds} | m)
    table = pd.DataFrame(rows).set_index("model")
    floor = next(g["threshold"] for g in p["gates"] if g["metric"] == "roc_auc" and not g.get("vs_champion"))
    table["passes_gate"] = table["roc_auc"] >= floor  # the registry's absolute ROC AUC gate
    return table, models


def threshold_from_training(model: CalibratedClassifierCV, train: pd.DataFrame, params=None) -> float:
    """Cost-optimal threshold from the last calibration slice of training (incidents the model's last
    classifier did not learn from), so the holdout never chooses its own threshold."""
    p = config.section("sla", params)
    rows, y = _training_rows(train)
    cv = time_calibration_cv(len(rows), p)
    _, cal = list(cv.split(rows) if hasattr(cv, "split") else cv)[-1]
    last = model.calibrated_classifiers_[-1]
    probs = last.predict_proba(rows.iloc[cal])[:, 1]
    return choose_threshold(probs, y[cal], p["cost_fp"], p["cost_fn"])


def headline(table: pd.DataFrame) -> dict[str, float]:
    """The flat metrics a run logs and the gates read: the model's holdout numbers and each baseline's."""
    m = table.loc["model"]
    out = {
        k: float(m[k])
        for k in ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "breach_rate", "threshold", "flagged_rate")
        if k in m
    }
    out |= {k: float(m[k]) for k in ("precision", "recall", "cost_per_incident", "fit_seconds") if k in m}
    out["n_test"] = float(m["n"])
    for base in ("logistic", "majority", "uncalibrated"):
        if base in table.index:
            for k in ("roc_auc", "pr_auc", "brier"):
                out[f"{base}_{k}"] = float(table.loc[base, k])
    if "logistic" in table.index:
        out["roc_auc_margin_vs_logistic"] = out["roc_auc"] - out["logistic_roc_auc"]
    return out
