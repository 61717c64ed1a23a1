"""Time to resolution at open time, as quantiles (P10/P50/P90): IncidentFeatures -> TTRQuantileModel.

Target transform: the models learn log1p(hours). Resolution times are heavy-tailed (minutes to months;
a few tickets wait weeks for a vendor), so on raw hours squared or pinball losses are dominated by the
tail and trees split on it; on the log scale the spread is comparable across priorities, errors are
relative ("twice as long"), and quantiles map back exactly (expm1 is monotone, so the P50 of log hours
is the P50 of hours). Split-conformal adjustment on the latest training slice makes the P10-P90 band
cover ~80% of future incidents even when the trees' quantiles are too narrow.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_pinball_loss
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from ml import config
from ml.features import IncidentFeatures, limit_threads
from ml.incidents.targets import sort_by_time, ttr_hours_target


def quantile_names(quantiles) -> list[str]:
    """Column names for quantile levels: 0.1 -> 'p10'."""
    return [f"p{round(100 * q):d}" for q in quantiles]


class TTRQuantileModel(RegressorMixin, BaseEstimator):
    """Numeric features -> hours to resolution at several quantiles; `predict` gives (n, len(quantiles)).

    One HistGradientBoostingRegressor(loss="quantile") per level on log1p(hours); predictions are sorted
    per row (no crossing quantiles) and returned in hours. With `conformal`, the last
    `calibration_fraction` of the rows (pass them in time order) is held out: each level q is shifted by
    the q-quantile of the held-out log residuals, so e.g. 10% of later incidents fall below P10. With
    `refit` the trees are then refitted on all rows and keep those shifts (uses the newest data; the
    coverage guarantee becomes approximate).
    """

    def __init__(
        self,
        quantiles=(0.1, 0.5, 0.9),
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=50,
        l2_regularization=1.0,
        conformal=True,
        calibration_fraction=0.2,
        refit=False,
        random_state=0,
    ):
        self.quantiles = quantiles
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.conformal = conformal
        self.calibration_fraction = calibration_fraction
        self.refit = refit
        self.random_state = random_state

    def _regressor(self, q: float) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            loss="quantile",
            quantile=float(q),
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            early_stopping=False,  # its validation split would be random; the iteration count is a param
            random_state=self.random_state,
        )

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if (y < 0).any() or not np.isfinite(y).all():
            raise ValueError("hours to resolution must be finite and >= 0")
        qs = [float(q) for q in self.quantiles]
        if sorted(qs) != qs or not all(0 < q < 1 for q in qs):
            raise ValueError(f"quantiles must be increasing levels in (0, 1), got {self.quantiles!r}")
        z = np.log1p(y)
        self.shifts_ = np.zeros(len(qs))
        self.n_calibration_ = 0
        if self.conformal:
            n_cal = int(len(z) * float(self.calibration_fraction))
            if n_cal < 50 or len(z) - n_cal < 100:
                raise ValueError(f"{len(z)} rows are too few for a conformal slice of {n_cal}")
            fit_rows = slice(0, len(z) - n_cal)
            models = [self._regressor(q).fit(X[fit_rows], z[fit_rows]) for q in qs]
            resid = z[-n_cal:, None] - np.column_stack([m.predict(X[-n_cal:]) for m in models])
            # finite-sample conservative side: upper levels round up, lower levels round down
            self.shifts_ = np.array(
                [
                    np.quantile(
                        resid[:, i], q, method="higher" if q > 0.5 else "lower" if q < 0.5 else "linear"
                    )
                    for i, q in enumerate(qs)
                ]
            )
            self.n_calibration_ = n_cal
            if not self.refit:
                self.estimators_ = models
                return self
        self.estimators_ = [self._regressor(q).fit(X, z) for q in qs]
        return self

    def predict_log(self, X) -> np.ndarray:
        """log1p(hours) per quantile, shifted and sorted per row."""
        X = np.asarray(X, dtype=np.float64)
        z = np.column_stack([m.predict(X) for m in self.estimators_]) + self.shifts_
        return np.sort(z, axis=1)

    def predict(self, X) -> np.ndarray:
        return np.maximum(np.expm1(self.predict_log(X)), 0.0)

    def score(self, X, y, sample_weight=None) -> float:
        """Minus the mean pinball loss over the quantiles, in log1p(hours) (higher is better)."""
        z, pred = np.log1p(np.asarray(y, dtype=float)), self.predict_log(X)
        return -float(
            np.mean(
                [
                    mean_pinball_loss(z, pred[:, i], alpha=q, sample_weight=sample_weight)
                    for i, q in enumerate(self.quantiles)
                ]
            )
        )


# --- build, fit, predict ---------------------------------------------------------------------------------
def make_model(params: Mapping[str, Any] | None = None) -> Pipeline:
    """The unfitted Pipeline: raw records -> IncidentFeatures -> TTRQuantileModel, all knobs from params."""
    p = config.section("ttr", params)
    feats = IncidentFeatures(
        min_frequency=p["min_frequency"],
        use_text=p["use_text"],
        text_components=p["text_components"],
        text_max_features=p["text_max_features"],
        random_state=p["seed"],
    )
    model = TTRQuantileModel(
        quantiles=tuple(float(q) for q in p["quantiles"]),
        max_iter=p["max_iter"],
        learning_rate=p["learning_rate"],
        max_leaf_nodes=p["max_leaf_nodes"],
        min_samples_leaf=p["min_samples_leaf"],
        l2_regularization=p["l2_regularization"],
        conformal=p["conformal"],
        calibration_fraction=p["calibration_fraction"],
        refit=p["refit"],
        random_state=p["seed"],
    )
    return Pipeline([("features", feats), ("model", model)])


def _training_rows(train: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Resolved training incidents sorted by opening time (the conformal slice is the latest), with hours."""
    y = ttr_hours_target(train)
    rows = sort_by_time(train[y.notna()])
    return rows, y.loc[rows.index].to_numpy(dtype=float)


def fit_ttr(train: pd.DataFrame, params: Mapping[str, Any] | None = None) -> Pipeline:
    """Fit the quantile Pipeline on resolved training incidents."""
    p = config.section("ttr", params)
    rows, y = _training_rows(train)
    with threadpool_limits(p["n_threads"]):
        return make_model(p).fit(rows, y)


def predict_ttr(model, incidents: pd.DataFrame, n_threads: int | None = 1) -> pd.DataFrame:
    """Hours to resolution per incident as a frame (p10, p50, p90 ...), indexed like the input."""
    with limit_threads(n_threads):
        pred = model.predict(incidents)
    levels = model[-1].quantiles if isinstance(model, Pipeline) else config.section("ttr")["quantiles"]
    return pd.DataFrame(pred, columns=quantile_names(levels), index=incidents.index)


# --- baseline -----------------------------------------------------------------------------------------------
def fit_priority_baseline(train: pd.DataFrame, quantiles=(0.1, 0.5, 0.9)) -> pd.DataFrame:
    """Per priority, the training quantiles of hours to resolution (row 'all' for unseen priorities)."""
    rows, y = _training_rows(train)
    hours = pd.Series(y, index=rows.index)
    names = quantile_names(quantiles)
    table = pd.DataFrame(
        {
            n: hours.groupby(rows["priority"].astype(int)).quantile(q)
            for n, q in zip(names, quantiles, strict=True)
        }
    )
    table.loc["all"] = [hours.quantile(q) for q in quantiles]
    return table


def predict_priority_baseline(table: pd.DataFrame, incidents: pd.DataFrame) -> np.ndarray:
    """The baseline's quantiles for each incident's priority."""
    known = {k for k in table.index if k != "all"}
    keys = [p if p in known else "all" for p in incidents["priority"].astype(int)]
    return table.loc[keys].to_numpy(dtype=float)


# --- evaluation -------------------------------------------------------------------------------------------
def ttr_metrics(hours, pred, quantiles=(0.1, 0.5, 0.9)) -> dict[str, float]:
    """Median-forecast errors, pinball loss per quantile (hours and log1p hours), coverage and width of the outer band."""
    y = np.asarray(hours, dtype=float)
    pred = np.asarray(pred, dtype=float)
    names = quantile_names(quantiles)
    mid = int(np.argmin(np.abs(np.asarray(quantiles) - 0.5)))
    err = np.abs(y - pred[:, mid])
    out = {
        "n": int(len(y)),
        "median_ttr_hours": float(np.median(y)),
        f"mae_{names[mid]}_hours": float(err.mean()),
        f"median_ae_{names[mid]}_hours": float(np.median(err)),
        f"mae_{names[mid]}_log1p": float(np.abs(np.log1p(y) - np.log1p(pred[:, mid])).mean()),
    }
    for i, (name, q) in enumerate(zip(names, quantiles, strict=True)):
        out[f"pinball_{name}_hours"] = float(mean_pinball_loss(y, pred[:, i], alpha=q))
        out[f"pinball_{name}_log1p"] = float(mean_pinball_loss(np.log1p(y), np.log1p(pred[:, i]), alpha=q))
        out[f"share_below_{name}"] = float((y < pred[:, i]).mean())
    lo, hi = pred[:, 0], pred[:, -1]
    out["coverage"] = float(((y >= lo) & (y <= hi)).mean())
    out["nominal_coverage"] = float(quantiles[-1] - quantiles[0])
    out["mean_width_hours"] = float((hi - lo).mean())
    out["median_width_hours"] = float(np.median(hi - lo))
    return out


def evaluate_ttr(model, test: pd.DataFrame) -> dict[str, float]:
    """`ttr_metrics` of a fitted quantile Pipeline on the resolved incidents of `test`."""
    y = ttr_hours_target(test)
    rows = test[y.notna()]
    pred = predict_ttr(model, rows)
    return ttr_metrics(y[y.notna()].to_numpy(), pred.to_numpy(), model[-1].quantiles)


def compare_ttr(
    train: pd.DataFrame, test: pd.DataFrame, params: Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The quantile model (conformal and not) and the per-priority baseline on one holdout: metrics + fit seconds."""
    p = config.section("ttr", params)
    q = tuple(float(x) for x in p["quantiles"])
    y = ttr_hours_target(test)
    rows, hours = test[y.notna()], y[y.notna()].to_numpy()
    results, models = {}, {}
    variants = {"model": p, "no_conformal": {**p, "conformal": False}}
    for name, cfg in variants.items():
        start = time.perf_counter()
        models[name] = fit_ttr(train, cfg)
        seconds = time.perf_counter() - start
        results[name] = {"fit_seconds": seconds} | ttr_metrics(
            hours, predict_ttr(models[name], rows).to_numpy(), q
        )
    start = time.perf_counter()
    models["priority_baseline"] = fit_priority_baseline(train, q)
    seconds = time.perf_counter() - start
    base = predict_priority_baseline(models["priority_baseline"], rows)
    results["priority_baseline"] = {"fit_seconds": seconds} | ttr_metrics(hours, base, q)
    return pd.DataFrame(results).T.rename_axis("model"), models


def headline(table: pd.DataFrame) -> dict[str, float]:
    """The flat metrics a run logs and the gates read: the model's holdout numbers, the baseline's, margins."""
    m, b = table.loc["model"], table.loc["priority_baseline"]
    keys = [k for k in table.columns if k != "n" and pd.notna(m[k])]
    out = {k: float(m[k]) for k in keys}
    out["n_test"] = float(m["n"])
    out |= {f"baseline_{k}": float(b[k]) for k in keys if k != "fit_seconds" and pd.notna(b[k])}
    out["coverage_error_pts"] = abs(out["coverage"] - out["nominal_coverage"]) * 100.0
    mae = next(k for k in keys if k.startswith("mae_") and k.endswith("_log1p"))
    out[f"{mae}_margin_vs_baseline"] = out[f"baseline_{mae}"] - out[mae]
    if "no_conformal" in table.index:
        out["no_conformal_coverage"] = float(table.loc["no_conformal", "coverage"])
    return out
