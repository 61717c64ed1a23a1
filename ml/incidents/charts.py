"""Charts of the incident notebooks (04-08): SLA breach, time to resolve, clustering, triage and system/team.

Every figure is titled and names its data; each function returns the figure (`ml.plots.save` writes it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import precision_recall_curve, roc_curve

from ml.incidents import sla
from ml.incidents.clusters import ONE_OFF, IncidentClusterer, weekly_counts


# --- SLA breach and time to resolve (notebooks 04, 05) ---------------------------------------------
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


# --- clustering (notebook 06) ----------------------------------------------------------------
def plot_k_selection(model: IncidentClusterer, data_name: str):
    """Silhouette against k over the grid, the chosen k marked."""
    ks = sorted(int(k) for k in model.k_scores_)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(ks, [model.k_scores_[str(k)] for k in ks], marker="o")
    ax.axvline(model.k_, color="C3", ls="--", label=f"chosen k = {model.k_}")
    ax.set(xlabel="number of clusters k", ylabel="silhouette (cosine, sample)",
           title=f"Choosing k: silhouette over the grid ({data_name} incidents)")  # fmt: skip
    ax.legend()
    return fig


def plot_cluster_map(model: IncidentClusterer, incidents: pd.DataFrame, data_name: str, *,
                     highlight: Sequence[int] = (), max_points: int = 5000, seed: int = 0):  # fmt: skip
    """The first two principal components of the embedding, coloured by cluster; `highlight` ids annotated."""
    idx = np.sort(np.random.default_rng(seed).permutation(len(incidents))[:max_points])
    part = incidents.iloc[idx]
    xy, labels = model.embed_2d(part), model.predict(part)
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(9, 7))
    ax.scatter(xy[:, 0], xy[:, 1], c=[cmap(int(c) % 20) for c in labels], s=5, alpha=0.5, linewidths=0)
    centres = model.pca_.transform(model.kmeans_.cluster_centers_)
    for raw, public in enumerate(model.relabel_):
        bold = int(public) in set(int(h) for h in highlight)
        ax.annotate(str(int(public)), centres[raw], fontsize=9 if bold else 7, weight="bold" if bold else "normal",
                    color="C3" if bold else "0.2", ha="center", va="center")  # fmt: skip
    ax.set(xlabel="principal component 1 of the embedding", ylabel="principal component 2",
           title=f"Incident clusters on a 2-D map ({len(part):,} {data_name} incidents; red = bursting)")  # fmt: skip
    return fig


def plot_cluster_sizes(model: IncidentClusterer, labels, data_name: str, *, recurring: Sequence[int] = ()):
    """Incidents per cluster (by id = size rank), bursting clusters in red."""
    sizes = np.bincount(np.asarray(labels), minlength=model.k_)
    flagged = set(int(c) for c in recurring)
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * model.k_ + 2), 4))
    ax.bar(range(model.k_), sizes, color=["C3" if c in flagged else "C0" for c in range(model.k_)])
    ax.set(xlabel="cluster id (0 = largest in training)", ylabel="incidents",
           title=f"Cluster sizes ({data_name} incidents; red = bursting)")  # fmt: skip
    return fig


def plot_root_cause_heatmap(labels, root_cause, data_name: str, *, min_share: float = 0.05):
    """Share of each root cause's tickets per cluster (rows sum to 1); clusters holding less than `min_share`
    of every recurring cause are pooled as 'other'."""
    truth = pd.Series(np.asarray(root_cause, dtype=object)).fillna(ONE_OFF).astype(str).to_numpy()
    table = pd.crosstab(truth, np.asarray(labels), normalize="index")
    recurring = table.drop(index=ONE_OFF, errors="ignore")
    keep = [c for c in table.columns if (recurring[c] >= min_share).any()]
    shown = table[keep].copy()
    shown.columns = [str(c) for c in keep]
    shown["other"] = table.drop(columns=keep).sum(axis=1)
    shown = shown.loc[[*recurring.index, *([ONE_OFF] if ONE_OFF in table.index else [])]]
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * shown.shape[1] + 4), 0.5 * len(shown) + 2))
    sns.heatmap(shown, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar_kws={"label": "share of the cause's tickets"},
                annot_kws={"fontsize": 7}, ax=ax)  # fmt: skip
    ax.set(xlabel="cluster id", ylabel="hidden root cause (evaluation only)",
           title=f"Where each root cause's tickets land ({data_name} incidents)")  # fmt: skip
    return fig


def plot_weekly_volume(labels, opened_at, clusters: Sequence[int], model: IncidentClusterer, data_name: str):
    """Weekly incidents of the given clusters (e.g. the top bursting ones), one line each."""
    counts = weekly_counts(labels, opened_at)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for c in clusters:
        series = counts[c] if c in counts.columns else pd.Series(0, index=counts.index)
        ax.plot(counts.index, series, marker=".", label=f"{int(c)}: {model.cluster_label(int(c))}")
    ax.set(xlabel="week (starting Monday)", ylabel="incidents opened per week",
           title=f"Weekly volume of the top bursting clusters ({data_name} incidents)")  # fmt: skip
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


# --- triage and system/team (notebooks 07, 08): precision, coverage, confusion, similar incidents ---
def plot_per_class(tables: Mapping[str, pd.DataFrame], target_precision: float, data_name: str) -> plt.Figure:
    """Per class and target: holdout precision of the answers, coverage of the class's tickets, and the
    precision target as a line; classes that always abstain have no precision bar."""
    fig, axes = plt.subplots(
        1, len(tables), figsize=(7 * len(tables), 0.45 * max(len(t) for t in tables.values()) + 2),
        squeeze=False,
    )  # fmt: skip
    for ax, (target, table) in zip(axes[0], tables.items(), strict=True):
        t = table.sort_values("support")
        y = np.arange(len(t))
        ax.barh(y + 0.2, t["precision"].fillna(0), height=0.4, label="precision of its answers")
        ax.barh(y - 0.2, t["coverage"], height=0.4, label="coverage (share of its tickets answered)")
        ax.axvline(
            target_precision, color="tab:red", ls="--", lw=1, label=f"target precision {target_precision:.2f}"
        )
        labels = [f"{c} (n={n})" for c, n in zip(t.index, t["support"], strict=True)]
        ax.set_yticks(y, labels, fontsize=8)
        ax.set(xlim=(0, 1.05), xlabel="share of holdout tickets (0-1)", title=f"{target}: per class")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.suptitle(
        f"Per-class precision and coverage on the time-ordered holdout ({data_name})", fontweight="bold"
    )
    fig.tight_layout()
    return fig


def plot_risk_coverage(
    curves: Mapping[str, pd.DataFrame],
    operating: Mapping[str, tuple[float, float]],
    baselines: Mapping[str, tuple[float, float]],
    target_precision: float,
    data_name: str,
) -> plt.Figure:
    """Accuracy of the most confident x% of holdout tickets, per target, with the point the per-class
    thresholds chose and the baselines (which always answer) as markers."""
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, (name, curve) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(
            curve["coverage"], curve["accuracy"], color=color, lw=1.5, label=f"{name}: most confident first"
        )
        if name in operating:
            cov, acc = operating[name]
            ax.scatter([cov], [acc], color=color, s=70, zorder=3, edgecolor="black",
                       label=f"{name}: per-class thresholds ({cov:.0%} answered, {acc:.0%} right)")  # fmt: skip
    for j, (name, (cov, acc)) in enumerate(baselines.items()):
        ax.scatter([cov], [acc], marker="x", s=60, color=f"C{len(curves) + j}", label=f"baseline {name}")
    ax.axhline(
        target_precision, color="tab:red", ls="--", lw=1, label=f"target precision {target_precision:.2f}"
    )
    ax.set(
        xlabel="coverage: share of holdout tickets answered (0-1)",
        ylabel="accuracy of the answered tickets (0-1)",
        xlim=(0, 1.02),
        title=f"Accuracy vs coverage: answering fewer tickets, more of them right ({data_name})",
    )
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_confusion(
    y_true, frame: pd.DataFrame, target: str, data_name: str, abstain_label: str
) -> plt.Figure:
    """Where each true class's holdout tickets went: rows = truth, columns = the model's answer (or abstain),
    as shares of the row."""
    truth = pd.Series(np.asarray(y_true, dtype=object), index=frame.index).astype(str)
    answer = frame["prediction"].astype(str)
    table = pd.crosstab(truth, answer, normalize="index")
    cols = [c for c in sorted(table.columns) if c != abstain_label] + (
        [abstain_label] if abstain_label in table.columns else []
    )
    table = table.reindex(columns=cols, fill_value=0.0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(cols), 1.0 + 0.45 * len(table)))
    sns.heatmap(table, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar_kws={"label": "share of the row"},
                ax=ax, annot_kws={"fontsize": 7})  # fmt: skip
    ax.set(xlabel="model's answer", ylabel="true class", title=f"{target}: where tickets went ({data_name})")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def plot_similarity(votes: pd.DataFrame, truth, target: str, data_name: str) -> plt.Figure:
    """Similarity of the nearest earlier-resolved incident, split by whether its `target` was the query's."""
    truth = pd.Series(np.asarray(truth, dtype=object), index=votes.index)
    ok = votes["nearest"].notna() & truth.notna()
    right = (votes.loc[ok, "nearest"] == truth[ok]).map({True: "same group", False: "different group"})
    frame = pd.DataFrame({"similarity": votes.loc[ok, "top_similarity"], "nearest neighbour": right})
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.histplot(frame, x="similarity", hue="nearest neighbour", bins=30, multiple="stack", ax=ax)
    ax.set(
        xlabel="cosine similarity of the nearest incident resolved before the query opened (0-1)",
        ylabel="holdout tickets (count)",
        title=f"Similar-incident search: nearest neighbour's {target} vs the truth ({data_name})",
    )
    fig.tight_layout()
    return fig
