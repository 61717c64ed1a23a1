"""Charts for the triage and system/team notebooks: per-class precision and coverage, the accuracy-coverage
trade-off, where the answers go (confusion), and how similar the nearest past incident is."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


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
