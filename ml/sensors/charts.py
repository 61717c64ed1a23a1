"""Charts for the sensor notebooks: detections, false-alarm trade-offs, explanations; forecasts and their errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ml import plots
from ml.sensors.backtest import Backtest, as_selection, chosen_points, select_models
from ml.sensors.forecast import SensorForecaster
from ml.sensors.forecast_models import LEVELS

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


# --- forecasts --------------------------------------------------------------------------------------
def plot_forecasts(
    series: pd.DataFrame,
    forecaster: SensorForecaster,
    sensor_ids: Sequence[str],
    *,
    days: float = 7,
    horizon: int | None = None,
    data_name: str = "synthetic",
) -> plt.Figure:
    """Last `days` of readings and the forecast with 80/95% bands, one panel per sensor."""
    fig, axes = plt.subplots(len(sensor_ids), 1, figsize=(10, 2.6 * len(sensor_ids) + 0.6), squeeze=False)
    info = forecaster.info().set_index("sensor_id")
    for ax, sid in zip(axes[:, 0], sensor_ids, strict=True):
        fc = forecaster.forecast(sid, horizon)
        g = series[series["sensor_id"] == sid].sort_values("timestamp")
        g = g[g["timestamp"] > g["timestamp"].max() - pd.Timedelta(days=days)]
        ax.plot(g["timestamp"], g["value"], color="0.25", lw=1, label="readings")
        if "is_anomaly" in g:
            a = g[g["is_anomaly"].fillna(False).astype(bool)]
            ax.scatter(a["timestamp"], a["value"], s=8, color="C3", label="labelled anomaly window", zorder=3)
        ax.fill_between(fc["timestamp"], fc["lo95"], fc["hi95"], color="C0", alpha=0.18, label="95% interval")
        ax.fill_between(fc["timestamp"], fc["lo80"], fc["hi80"], color="C0", alpha=0.35, label="80% interval")
        ax.plot(fc["timestamp"], fc["yhat"], color="C0", lw=1.5, label="forecast")
        kind, unit = info.loc[sid, "kind"], info.loc[sid, "unit"]
        ax.set_ylabel(f"{kind or 'value'} ({unit or 'units'})")
        ax.set_title(f"{sid} - {info.loc[sid, 'model']}", loc="left", fontsize=10)
    axes[-1, 0].set_xlabel("time")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(labels), fontsize=8, frameon=False)
    fig.suptitle(
        f"Forecast with 80/95% intervals after the last {days:g} days of readings ({data_name} sensors)"
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _with_selected(bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None) -> pd.DataFrame:
    """Scored backtest points of every candidate plus the per-sensor choice as model `selected`."""
    chosen = as_selection(select_models(bt.scores, bt.params) if selection is None else selection)
    pts = bt.forecasts[bt.forecasts["scored"]]
    picked = chosen_points(pts, chosen).assign(model="selected")
    return pd.concat([pts, picked], ignore_index=True)


def plot_error_by_horizon(
    bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None, *, data_name: str = "synthetic"
) -> plt.Figure:
    """Backtest scaled absolute error (|e| / MASE scale, averaged over points) by steps ahead, per model."""
    pts = _with_selected(bt, selection)
    pts = pts.assign(ase=(pts["y"] - pts["yhat"]).abs() / pts["scale"])
    by_h = pts.groupby(["model", "h"])["ase"].mean().reset_index()
    fig, ax = plt.subplots()
    for i, model in enumerate([*bt.params["models"], "selected"]):
        d = by_h[by_h["model"] == model]
        style = {"color": "0.1", "lw": 2.2} if model == "selected" else {"color": f"C{i}", "lw": 1.2}
        ax.plot(d["h"], d["ase"], marker="o", ms=3, label=model, **style)
    ax.axhline(1.0, color="0.4", ls="--", lw=1, label="in-sample seasonal naive error (MASE = 1)")
    ax.set_xlabel(f"horizon (steps ahead; {_step_label(bt)})")
    ax.set_ylabel("mean absolute scaled error (MASE units)")
    folds = bt.forecasts["fold"].nunique()
    ax.set_title(f"Backtest error by horizon per model ({data_name} sensors, {folds} rolling origins)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def plot_coverage(
    bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None, *, data_name: str = "synthetic"
) -> plt.Figure:
    """Empirical coverage of the 80% and 95% intervals per model (and per-sensor choice) against nominal."""
    pts = _with_selected(bt, selection)
    models = [*bt.params["models"], "selected"]
    fig, ax = plt.subplots()
    width = 0.8 / len(LEVELS)
    for j, level in enumerate(LEVELS):
        inside = (pts["y"] >= pts[f"lo{level}"]) & (pts["y"] <= pts[f"hi{level}"])
        cov = inside.groupby(pts["model"]).mean().reindex(models) * 100
        x = np.arange(len(models)) + (j - (len(LEVELS) - 1) / 2) * width
        bars = ax.bar(x, cov.to_numpy(), width=width, color=f"C{j}", label=f"{level}% interval")
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.axhline(level, color=f"C{j}", ls="--", lw=1)
        ax.axhspan(level - 5, level + 5, color=f"C{j}", alpha=0.08)
    ax.set_xticks(np.arange(len(models)), models)
    ax.set_ylim(0, 105)
    ax.set_ylabel("actuals inside the interval (%)")
    ax.set_xlabel("model (dashed: nominal level, band: +/- 5 points)")
    ax.set_title(f"Prediction interval coverage vs nominal, backtest ({data_name} sensors)")
    ax.legend(loc="lower right")
    return fig


def _step_label(bt: Backtest) -> str:
    """'1 step = 1 h' when every sensor shares a step, else a note that steps differ."""
    steps = bt.forecasts.groupby("sensor_id")["timestamp"].apply(
        lambda t: pd.Series(t.unique()).sort_values().diff().min()
    )
    uniq = steps.dropna().unique()
    if len(uniq) != 1:
        return "each sensor's own step"
    minutes = pd.Timedelta(uniq[0]) / pd.Timedelta("1min")
    return f"1 step = {minutes / 60:g} h" if minutes % 60 == 0 else f"1 step = {minutes:g} min"


def plot_nab_categories(metrics: Mapping, ours: str = "opslab") -> plt.Figure:
    """NAB standard score per category: ours next to the published detectors (from `metrics/nab.json`)."""
    rows = {ours: metrics.get("categories", {})}
    rows.update({name: m.get("categories", {}) for name, m in metrics.get("published", {}).items()})
    frame = pd.DataFrame(rows).dropna(how="all")
    totals = {ours: metrics.get("standard")} | {
        n: m.get("standard") for n, m in metrics.get("published", {}).items()
    }
    fig, ax = plt.subplots(figsize=(11, 4.5))
    frame.astype(float).plot.bar(ax=ax, width=0.8, legend=False)
    ax.legend(
        ax.containers,
        [f"{n} (corpus {totals[n]:.1f})" for n in frame.columns],
        loc="upper left",
        ncol=len(frame.columns),
        fontsize=8,
    )
    ax.set_ylim(min(0.0, float(np.nanmin(frame.astype(float).to_numpy())) * 1.1), 105)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_ylabel("NAB standard score\n(0 = null, 100 = perfect)")
    ax.set_xlabel("")
    ax.set_xticklabels([t.get_text().replace("artificial", "art.") for t in ax.get_xticklabels()], rotation=0)
    ax.set_title("NAB score per category at each detector's corpus threshold")
    return fig


def save_nab_categories(metrics: Mapping, path) -> None:
    """`plot_nab_categories` written to `path` (a .png)."""
    path = Path(path)
    fig = plot_nab_categories(metrics)
    plots.save(fig, path.parent, path.stem)
    plt.close(fig)
