"""Charts for the sensor notebooks: detections over the series, false-alarm trade-offs, explanations."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

DETECTOR_NAMES = {
    "isolation_forest": "Isolation Forest",
    "rolling_zscore": "rolling z-score",
    "seasonal_residual": "seasonal residual",
}


def plot_detections(
    scored: pd.DataFrame, windows: pd.DataFrame, sensors: list[str], eval_start: pd.Series, data_name: str
) -> plt.Figure:
    """Series with labelled windows shaded, the forest's alarms marked and the evaluation start drawn."""
    fig, axes = plt.subplots(len(sensors), 1, figsize=(12, 2.5 * len(sensors)), squeeze=False)
    for ax, sid in zip(axes[:, 0], sensors, strict=True):
        part = scored[scored["sensor_id"] == sid]
        ax.plot(part["timestamp"], part["value"], lw=0.7, color="0.3", label="reading")
        for w in windows[windows["sensor_id"] == sid].itertuples():
            ax.axvspan(w.start, w.end, color="tab:orange", alpha=0.3)
            ax.text(w.start, ax.get_ylim()[1], w.anomaly_kind, fontsize=7, va="top")
        alarms = part[part["is_anomaly"]]
        ax.scatter(alarms["timestamp"], alarms["value"], color="tab:red", s=12, zorder=3, label="alarm")
        if sid in eval_start.index:
            ax.axvline(eval_start[sid], color="tab:blue", ls="--", lw=1, label="evaluation starts")
        ax.set(title=f"{sid} ({data_name})", ylabel="reading (sensor's unit)")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("time")
    fig.suptitle("Isolation Forest alarms (red) against labelled windows (orange)", fontweight="bold")
    fig.tight_layout()
    return fig


def plot_false_alarm_sweep(sweep: pd.DataFrame, data_name: str) -> plt.Figure:
    """Event F1, recall and false-alarm events per detector as the false-alarm budget grows."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name, g in sweep.groupby("detector"):
        label = DETECTOR_NAMES.get(name, name)
        for ax, col in zip(axes, ("event_f1", "event_recall", "false_alarm_events"), strict=True):
            ax.plot(100 * g["false_alarm_rate"], g[col], marker="o", label=label)
    for ax, (col, unit) in zip(
        axes,
        (("event F1", "(0-1)"), ("event recall", "(share of windows)"), ("false-alarm events", "(count)")),
        strict=True,
    ):
        ax.set(
            xscale="log",
            xlabel="target false-alarm rate on normal training readings (%, log)",
            ylabel=f"{col} {unit}",
            title=f"{col} vs alarm budget",
        )
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Detectors at the same false-alarm budget ({data_name})", fontweight="bold")
    fig.tight_layout()
    return fig


def plot_recall_by_kind(by_kind: pd.DataFrame, data_name: str) -> plt.Figure:
    """Share of windows detected and mean time to detect, per anomaly kind."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 3.8))
    sns.barplot(by_kind, x="anomaly_kind", y="recall", ax=a)
    a.set(
        title=f"Windows detected by anomaly kind ({data_name})",
        xlabel="anomaly kind",
        ylabel="event recall (share)",
        ylim=(0, 1.05),
    )
    sns.barplot(by_kind, x="anomaly_kind", y="mean_time_to_detect_h", ax=b)
    b.set(title="Mean time to detect", xlabel="anomaly kind", ylabel="hours after window start")
    fig.tight_layout()
    return fig


def plot_explanations(scored: pd.DataFrame, windows: pd.DataFrame, data_name: str) -> plt.Figure:
    """Which feature each alarm inside a labelled window named, per anomaly kind (share of alarms)."""
    inside = []
    for w in windows.itertuples():
        m = (
            (scored["sensor_id"] == w.sensor_id)
            & scored["timestamp"].between(w.start, w.end)
            & scored["is_anomaly"]
        )
        inside.append(scored.loc[m, ["top_feature"]].assign(anomaly_kind=w.anomaly_kind))
    frame = pd.concat(inside) if inside else pd.DataFrame(columns=["top_feature", "anomaly_kind"])
    table = pd.crosstab(frame["anomaly_kind"], frame["top_feature"], normalize="index")
    fig, ax = plt.subplots(figsize=(10, 3.5))
    sns.heatmap(
        table,
        annot=True,
        fmt=".2f",
        cmap="Blues",
        ax=ax,
        vmin=0,
        vmax=1,
        cbar_kws={"label": "share of alarms in windows of that kind"},
    )
    ax.set(
        title=f"Top contributing feature of alarms inside labelled windows ({data_name})",
        xlabel="feature furthest from its normal training value",
        ylabel="anomaly kind",
    )
    return fig


def plot_score_distribution(
    scored: pd.DataFrame, in_window: pd.Series, threshold: float, data_name: str
) -> plt.Figure:
    """Forest scores inside vs outside labelled windows, with the alarm threshold."""
    fig, ax = plt.subplots()
    has = scored["score"].notna().to_numpy()
    inside = in_window.to_numpy(dtype=bool)
    bins = np.linspace(0, 1, 51)
    ax.hist(scored.loc[has & ~inside, "score"], bins=bins, alpha=0.6, density=True, label="outside windows")
    ax.hist(scored.loc[has & inside, "score"], bins=bins, alpha=0.6, density=True, label="inside windows")
    ax.axvline(threshold, color="tab:red", ls="--", label=f"threshold {threshold:.3f}")
    ax.set(
        yscale="log",
        title=f"Isolation Forest score distribution ({data_name})",
        xlabel="anomaly score (share of normal training readings below, 0-1)",
        ylabel="density (log)",
    )
    ax.legend()
    return fig
