"""Charts for the drift notebook: drift over time, a feature x window PSI heatmap, rolling model quality."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from ml.monitoring.timeline import drift_share


def plot_drift_over_time(
    table: pd.DataFrame,
    *,
    title: str,
    threshold: float,
    injected_at: Any = None,
    injected_label: str = "injected shift",
    features: Sequence[str] | None = None,
):
    """Two panels: share of drifted features per window (bars), per-feature PSI over time (lines, log)."""
    shares = drift_share(table)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, height_ratios=[1, 2])
    step = shares["window_start"].diff().median()
    step = step if pd.notna(step) else pd.Timedelta("7D")
    top.bar(shares["window_start"], shares["share_drifted"].fillna(0), width=step * 0.8, align="edge")
    top.set_ylabel("share of features\nwith PSI > threshold")
    top.set_ylim(0, 1)
    top.set_title(title)
    wide = table.pivot(index="window_start", columns="feature", values="psi")
    shown = (
        list(features) if features is not None else list(wide.max().sort_values(ascending=False).index[:6])
    )
    mid = wide.index + step / 2
    for feature in shown:
        bottom.plot(mid, wide[feature].clip(lower=1e-3), marker="o", ms=3, label=feature)
    others = [f for f in wide.columns if f not in shown]
    if others:
        bottom.plot(
            mid, wide[others].max(axis=1).clip(lower=1e-3), color="grey", ls=":", label="max of the others"
        )
    bottom.axhline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:g}")
    bottom.set_yscale("log")
    bottom.set_ylabel("PSI against the reference (log)")
    bottom.set_xlabel("window (one per landing batch)")
    bottom.legend(loc="upper left", fontsize=8, ncol=3)
    if injected_at is not None:
        at = pd.Timestamp(injected_at)
        for ax in (top, bottom):
            ax.axvline(at, color="black", ls="-.", lw=1.2)
        top.annotate(injected_label, (at, 0.9), xytext=(4, 0), textcoords="offset points", fontsize=9)
    fig.autofmt_xdate()
    return fig


def plot_psi_heatmap(table: pd.DataFrame, *, title: str, threshold: float, highlight: Sequence[str] = ()):
    """Features x windows heatmap of PSI (log colours, x where above the threshold); highlighted rows first."""
    wide = table.pivot(index="feature", columns="window_start", values="psi")
    wide = wide.loc[sorted(wide.index, key=lambda f: (f not in highlight, f))]
    data = wide.clip(lower=1e-2).to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(11, 0.28 * len(wide) + 1.5))
    top = max(10.0, float(np.nanmax(data))) if np.isfinite(data).any() else 10.0
    im = ax.imshow(data, aspect="auto", cmap="viridis", norm=LogNorm(vmin=1e-2, vmax=top))
    for i, j in zip(*np.nonzero(np.nan_to_num(data) > threshold), strict=True):
        ax.text(j, i, "x", ha="center", va="center", color="white", fontsize=7)
    ax.set_yticks(range(len(wide)), [f"* {f}" if f in highlight else f for f in wide.index], fontsize=8)
    labels = [pd.Timestamp(c).strftime("%m-%d") for c in wide.columns]
    ax.set_xticks(range(wide.shape[1]), labels, fontsize=8, rotation=90)
    ax.set_xlabel("window start")
    ax.set_title(title)
    ax.grid(False)
    fig.colorbar(im, ax=ax, label=f"PSI (x: above {threshold:g})")
    return fig


def plot_rolling_performance(
    perf: pd.DataFrame,
    metrics: Sequence[str],
    *,
    title: str,
    event_at: Any = None,
    event_label: str = "",
    reference_until: Any = None,
):
    """One panel per metric of a `rolling_performance` frame, the training period shaded."""
    fig, axes = plt.subplots(len(metrics), 1, figsize=(11, 2.6 * len(metrics)), sharex=True, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        ax.plot(perf["window_end"], perf[metric], marker="o", ms=3)
        ax.set_ylabel(metric)
        if reference_until is not None:
            ax.axvspan(perf["window_end"].min(), pd.Timestamp(reference_until), color="grey", alpha=0.15)
        if event_at is not None:
            ax.axvline(pd.Timestamp(event_at), color="black", ls="-.", lw=1.2)
    axes[0, 0].set_title(title)
    if event_at is not None and event_label:
        axes[0, 0].annotate(event_label, (pd.Timestamp(event_at), 0.95), xycoords=("data", "axes fraction"),
                            xytext=(4, -10), textcoords="offset points", fontsize=9)  # fmt: skip
    axes[-1, 0].set_xlabel("end of the trailing window (by opened_at)")
    fig.autofmt_xdate()
    return fig
