"""Charts for the SLA-breach and time-to-resolution notebooks (04, 05): every figure titled, data named."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from ml.incidents import sla


def plot_reliability(tables: Mapping[str, pd.DataFrame], data: str) -> plt.Figure:
    """Mean predicted P(breach) against the observed breach rate per bin, one line per model."""
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [1.4, 1]})
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    for name, t in tables.items():
        t = t[t["n"] > 0]
        ax.plot(t["mean_predicted"], t["observed"], marker="o", label=name)
        hist.bar(t["bin_low"] + 0.05, t["n"], width=0.09, alpha=0.5, label=name)
    ax.set(xlabel="mean predicted P(breach)", ylabel="observed breach rate", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"Reliability on the time-ordered holdout ({data})")
    ax.legend(loc="upper left", fontsize=9)
    hist.set(xlabel="predicted P(breach) bin", ylabel="incidents", yscale="log")
    hist.set_title("Incidents per probability bin")
    fig.tight_layout()
    return fig


def plot_roc_pr(probs: Mapping[str, np.ndarray], y: np.ndarray, data: str) -> plt.Figure:
    """ROC and precision-recall curves for each model on the same holdout incidents."""
    y = np.asarray(y, dtype=int)
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, p in probs.items():
        m = sla.sla_metrics(p, y)
        fpr, tpr, _ = roc_curve(y, p)
        roc.plot(fpr, tpr, label=f"{name} (AUC {m['roc_auc']:.3f})")
        prec, rec, _ = precision_recall_curve(y, p)
        pr.plot(rec, prec, label=f"{name} (AP {m['pr_auc']:.3f})")
    roc.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    roc.set(xlabel="false positive rate", ylabel="true positive rate")
    roc.set_title(f"ROC, SLA breach, holdout ({data})")
    pr.axhline(y.mean(), color="grey", ls="--", lw=1, label=f"breach rate {y.mean():.2f}")
    pr.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    pr.set_title(f"Precision-recall, SLA breach ({data})")
    for ax in (roc, pr):
        ax.legend(loc="lower right" if ax is roc else "upper right", fontsize=9)
    fig.tight_layout()
    return fig


def plot_cost_curve(
    probs: np.ndarray, y: np.ndarray, cost_fp: float, cost_fn: float, chosen: float, data: str
) -> plt.Figure:
    """Cost per incident of flagging at each threshold, with the threshold chosen on training marked."""
    grid = np.linspace(0.0, 1.0, 101)
    cost = [sla.expected_cost(probs, y, t, cost_fp, cost_fn) / len(y) for t in grid]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.plot(grid, cost, label="holdout cost per incident")
    ax.axvline(chosen, color="C3", ls="--", label=f"chosen on training: {chosen:.3f}")
    bayes = cost_fp / (cost_fp + cost_fn)
    ax.axvline(bayes, color="grey", ls=":", label=f"cost ratio {bayes:.3f}")
    ax.set(xlabel="flag when P(breach) >= threshold", ylabel="cost per incident")
    ax.set_title(
        f"Decision threshold from costs: false alarm {cost_fp:g}, missed breach {cost_fn:g} ({data})"
    )
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_ttr_intervals(
    hours: np.ndarray, pred: np.ndarray, data: str, n: int = 300, seed: int = 0
) -> plt.Figure:
    """A sample of holdout incidents sorted by predicted P50: the P10-P90 band and where the truth fell."""
    hours, pred = np.asarray(hours, dtype=float), np.asarray(pred, dtype=float)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(hours), size=min(n, len(hours)), replace=False))
    h, p = hours[pick], pred[pick]
    order = np.argsort(p[:, 1], kind="stable")
    h, p = h[order], p[order]
    x = np.arange(len(h))
    inside = (h >= p[:, 0]) & (h <= p[:, -1])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.fill_between(x, p[:, 0], p[:, -1], alpha=0.25, label="P10-P90")
    ax.plot(x, p[:, 1], lw=1.2, label="P50")
    ax.scatter(x[inside], h[inside], s=8, color="C2", label=f"actual, inside ({inside.mean():.0%})")
    ax.scatter(x[~inside], h[~inside], s=10, color="C3", marker="x", label="actual, outside")
    ax.set_yscale("log")
    ax.set(xlabel="holdout incidents, sorted by predicted P50", ylabel="hours to resolve (log)")
    ax.set_title(f"Time to resolve: intervals against the truth, {len(h)} sampled holdout incidents ({data})")
    ax.legend(fontsize=9, loc="upper left")
    fig.tight_layout()
    return fig


def plot_ttr_by_priority(
    frame: pd.DataFrame, data: str, model_col: str = "model", baseline_col: str = "baseline"
) -> plt.Figure:
    """Per priority: median absolute error of the model's and the baseline's P50, and the model's coverage."""
    fig, (err, cov) = plt.subplots(1, 2, figsize=(11, 4.2))
    table = frame.groupby("priority").agg(
        model=(model_col, "median"),
        baseline=(baseline_col, "median"),
        coverage=("inside", "mean"),
        n=("inside", "size"),
    )
    idx = np.arange(len(table))
    err.bar(idx - 0.2, table["model"], width=0.4, label="model P50")
    err.bar(idx + 0.2, table["baseline"], width=0.4, label="per-priority median")
    err.set_xticks(idx, [f"P{p}\n(n={n})" for p, n in zip(table.index, table["n"], strict=True)])
    err.set(ylabel="median absolute error (hours)", yscale="log")
    err.set_title(f"Error of the median by priority ({data})")
    err.legend(fontsize=9)
    cov.bar(idx, table["coverage"], color="C2")
    cov.axhline(0.8, color="grey", ls="--", lw=1, label="nominal 80%")
    cov.set_xticks(idx, [f"P{p}" for p in table.index])
    cov.set(ylabel="share inside P10-P90", ylim=(0, 1))
    cov.set_title("Interval coverage by priority")
    cov.legend(fontsize=9)
    fig.tight_layout()
    return fig
