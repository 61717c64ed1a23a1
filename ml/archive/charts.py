"""Charts of the archive notebook: forecasts against actuals, error by horizon, savings by file type."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

MODEL_NAMES = {
    "seasonal_naive": "seasonal naive",
    "linear": "linear (per target)",
    "hgb": "gradient boosting",
}


def plot_forecast_vs_actual(
    bt: pd.DataFrame, sources: Sequence[str], outputs: Sequence[str], model: str, data_name: str
) -> plt.Figure:
    """Per source (rows) and output (columns): the actual next-period sum at each holdout origin, the model's
    forecast with its interval, and the seasonal naive forecast."""
    rows = bt[bt["holdout"] & bt["source_id"].isin(sources) & bt["output"].isin(outputs)]
    fig, axes = plt.subplots(
        len(sources), len(outputs), figsize=(6 * len(outputs), 2.6 * len(sources)), squeeze=False
    )
    for i, sid in enumerate(sources):
        for j, out in enumerate(outputs):
            ax = axes[i, j]
            part = rows[(rows["source_id"] == sid) & (rows["output"] == out)]
            mine = part[part["model"] == model].sort_values("date")
            naive = part[part["model"] == "seasonal_naive"].sort_values("date")
            ax.plot(mine["date"], mine["actual"], color="0.2", lw=1.4, label="actual")
            ax.plot(mine["date"], mine["pred"], color="tab:blue", lw=1.2, label=MODEL_NAMES.get(model, model))
            if "lo" in mine and mine["lo"].notna().any():
                ax.fill_between(
                    mine["date"], mine["lo"], mine["hi"], color="tab:blue", alpha=0.2, label="80% interval"
                )
            ax.plot(naive["date"], naive["pred"], color="tab:orange", lw=1, ls="--", label="seasonal naive")
            ax.set(
                title=f"{sid}: {out.replace('_', ' ')}",
                ylabel="GB in the period",
                xlabel="forecast origin (day)",
            )
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Forecast vs actual on the holdout folds ({data_name})", fontweight="bold")
    fig.tight_layout()
    return fig


def plot_error_by_horizon(errors: pd.DataFrame, data_name: str) -> plt.Figure:
    """MAE as a share of the mean actual, per model, for each target and horizon (holdout folds)."""
    targets = list(dict.fromkeys(errors["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4), squeeze=False)
    data = errors.assign(model=errors["model"].map(lambda m: MODEL_NAMES.get(m, m)))
    for ax, target in zip(axes[0], targets, strict=True):
        sns.barplot(data[data["target"] == target], x="horizon", y="relative_mae", hue="model", ax=ax)
        ax.set(
            title=f"{target.replace('_', ' ')}: error by horizon",
            xlabel="horizon (sum of the next week / month)",
            ylabel="MAE / mean actual (share)",
        )
        ax.legend(fontsize=8)
    fig.suptitle(f"Holdout error by horizon, lower is better ({data_name})", fontweight="bold")
    fig.tight_layout()
    return fig


def plot_savings_by_type(by_type: pd.DataFrame, data_name: str) -> plt.Figure:
    """Estimated savings ratio per file type (true ratio marked when known) and GB saved per type."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    x = np.arange(len(by_type))
    a.bar(x, by_type["savings_ratio"], color="tab:green", label="estimated from the records")
    if "true_ratio" in by_type:
        a.scatter(
            x, by_type["true_ratio"], color="black", marker="_", s=600, zorder=3, label="generator's truth"
        )
    a.set_xticks(x, by_type["file_type"])
    a.set(
        title="Share of an archived GB removed by dedup + compression",
        xlabel="file type",
        ylabel="savings ratio (share)",
        ylim=(0, 1),
    )
    a.legend(fontsize=8)
    b.bar(x, by_type["archived_gb"], color="0.7", label="archived")
    b.bar(x, by_type["saved_gb"], color="tab:green", label="saved")
    b.set_xticks(x, by_type["file_type"])
    b.set(title="GB archived and saved by file type", xlabel="file type", ylabel="GB over the whole period")
    b.legend(fontsize=8)
    fig.suptitle(f"Savings by file type ({data_name})", fontweight="bold")
    fig.tight_layout()
    return fig
