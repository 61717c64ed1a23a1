"""Exploratory summaries and charts for notebook 01: each function takes frames and returns a table or a figure."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.feature_extraction.text import CountVectorizer

from ml.data.gold import incident_targets
from ml.features import incident_text

PRIORITY_NAMES = {1: "P1 critical", 2: "P2 high", 3: "P3 moderate", 4: "P4 low", 5: "P5 planning"}

# --- sensors ----------------------------------------------------------------------------------


def sensor_coverage(series: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Per sensor: span, expected vs present readings, missing share, labelled windows and anomalous share."""
    g = series.groupby("sensor_id")
    table = pd.DataFrame(
        {
            "kind": g["kind"].first(),
            "unit": g["unit"].first(),
            "first": g["timestamp"].min(),
            "last": g["timestamp"].max(),
            "expected_rows": g.size(),
            "present_rows": g["is_missing"].apply(lambda s: int((~s).sum())),
        }
    )
    table["missing_pct"] = 100 * (1 - table["present_rows"] / table["expected_rows"])
    table["windows"] = windows.groupby("sensor_id").size().reindex(table.index, fill_value=0)
    table["anomalous_pct"] = 100 * g["is_anomaly"].mean()
    return table.round(2)


def plot_missingness(series: pd.DataFrame, data_name: str) -> plt.Figure:
    """Heatmap of the share of missing readings per sensor and day."""
    daily = (
        series.assign(day=series["timestamp"].dt.floor("D"))
        .pivot_table(index="sensor_id", columns="day", values="is_missing", aggfunc="mean")
        .mul(100)
    )
    fig, ax = plt.subplots(figsize=(11, max(3, 0.25 * len(daily))))
    sns.heatmap(
        daily,
        ax=ax,
        cmap="rocket_r",
        vmin=0,
        vmax=max(5, float(np.nanmax(daily.to_numpy()))),
        cbar_kws={"label": "missing readings (%)"},
        xticklabels=max(1, daily.shape[1] // 10),
    )
    ax.set_xticklabels(
        [pd.Timestamp(t.get_text()).strftime("%Y-%m-%d") for t in ax.get_xticklabels()],
        rotation=45,
        ha="right",
    )
    ax.set(title=f"Missing readings per sensor and day ({data_name})", xlabel="day", ylabel="sensor")
    return fig


def seasonal_profile(series: pd.DataFrame) -> pd.DataFrame:
    """Mean reading by kind and hour of day / day of week, relative to each sensor's mean (1.0 = average)."""
    s = series.dropna(subset=["value"]).copy()
    s["relative"] = s["value"] / s.groupby("sensor_id")["value"].transform("mean")
    s["hour"] = s["timestamp"].dt.hour
    s["weekday"] = s["timestamp"].dt.dayofweek
    return s[["kind", "hour", "weekday", "relative"]]


def plot_seasonality(series: pd.DataFrame, data_name: str) -> plt.Figure:
    """Daily and weekly profiles per sensor kind: the seasonality a forecaster must capture."""
    prof = seasonal_profile(series)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    sns.lineplot(prof, x="hour", y="relative", hue="kind", ax=a, errorbar=("pi", 50))
    a.set(
        title=f"Daily profile by sensor kind ({data_name})",
        xlabel="hour of day",
        ylabel="reading / sensor mean (ratio)",
    )
    sns.lineplot(prof, x="weekday", y="relative", hue="kind", ax=b, errorbar=("pi", 50), legend=False)
    b.set(
        title="Weekly profile by sensor kind",
        xlabel="day of week (0 = Monday)",
        ylabel="reading / sensor mean (ratio)",
    )
    return fig


def plot_distributions(series: pd.DataFrame, data_name: str) -> plt.Figure:
    """Histogram of readings per kind (each in its own unit), normal vs labelled-anomalous."""
    kinds = sorted(series["kind"].unique())
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        part = series[(series["kind"] == kind) & series["value"].notna()]
        sns.histplot(
            part,
            x="value",
            hue="is_anomaly",
            stat="density",
            common_norm=False,
            bins=50,
            ax=ax,
            element="step",
        )
        unit = part["unit"].dropna().iloc[0] if part["unit"].notna().any() else "value"
        ax.set(title=f"{kind} ({data_name})", xlabel=f"reading ({unit})", ylabel="density")
    fig.suptitle("Reading distributions by kind: normal vs inside anomaly windows", fontweight="bold")
    return fig


def plot_anomaly_windows(
    series: pd.DataFrame, windows: pd.DataFrame, sensors: list[str], data_name: str
) -> plt.Figure:
    """Sensor series with their labelled anomaly windows shaded and named by kind."""
    fig, axes = plt.subplots(len(sensors), 1, figsize=(12, 2.4 * len(sensors)), squeeze=False, sharex=False)
    kinds = sorted(windows["anomaly_kind"].unique()) if len(windows) else []
    colours = dict(zip(kinds, sns.color_palette(n_colors=max(1, len(kinds))), strict=False))
    for ax, sid in zip(axes[:, 0], sensors, strict=True):
        part = series[series["sensor_id"] == sid]
        ax.plot(part["timestamp"], part["value"], lw=0.7, color="0.25")
        for w in windows[windows["sensor_id"] == sid].itertuples():
            ax.axvspan(w.start, w.end, color=colours[w.anomaly_kind], alpha=0.35, label=w.anomaly_kind)
        unit = part["unit"].dropna().iloc[0] if part["unit"].notna().any() else "value"
        ax.set(title=f"{sid} ({data_name})", ylabel=unit)
        handles, labels = ax.get_legend_handles_labels()
        if labels:
            uniq = dict(zip(labels, handles, strict=True))
            ax.legend(uniq.values(), uniq.keys(), loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("time")
    fig.suptitle("Labelled anomaly windows over the series", fontweight="bold")
    fig.tight_layout()
    return fig


def pick_sensors_per_kind(coverage: pd.DataFrame, per_kind: int = 1) -> list[str]:
    """A few sensors per kind that have labelled windows, for the window chart."""
    with_w = coverage[coverage["windows"] > 0]
    pool = with_w if len(with_w) else coverage
    return [sid for _, g in pool.groupby("kind") for sid in g.index[:per_kind]]


# --- incidents --------------------------------------------------------------------------------


def incident_summary(incidents: pd.DataFrame) -> pd.Series:
    """Headline numbers of an incident table: size, span, open share, breach rate, resolution time."""
    t = incident_targets(incidents)
    closed = ~t["is_open"]
    return pd.Series(
        {
            "incidents": len(incidents),
            "first opened": incidents["opened_at"].min(),
            "last opened": incidents["opened_at"].max(),
            "still open": int(t["is_open"].sum()),
            "SLA breach rate (closed, %)": round(100 * float(t.loc[closed, "target_breached"].mean()), 1),
            "median hours to resolve": round(float(t["target_ttr_hours"].median()), 1),
            "P90 hours to resolve": round(float(t["target_ttr_hours"].quantile(0.9)), 1),
            "assignment groups": incidents["assignment_group"].nunique(),
            "systems (cmdb_ci)": incidents["cmdb_ci"].nunique(),
        }
    )


def plot_incident_volume(incidents: pd.DataFrame, data_name: str, freq: str = "W") -> plt.Figure:
    """Incidents opened per week, stacked by priority."""
    counts = incidents.assign(
        period=incidents["opened_at"].dt.to_period(freq).dt.start_time,
        priority=incidents["priority"].map(PRIORITY_NAMES),
    ).pivot_table(index="period", columns="priority", values="number", aggfunc="count", fill_value=0)
    fig, ax = plt.subplots()
    ax.stackplot(counts.index, counts.T.to_numpy(), labels=counts.columns, alpha=0.85)
    ax.legend(loc="upper left", fontsize=8)
    ax.set(
        title=f"Incidents opened per week by priority ({data_name})",
        xlabel="week",
        ylabel="incidents opened (count / week)",
    )
    return fig


def plot_breach_rates(incidents: pd.DataFrame, data_name: str) -> plt.Figure:
    """SLA breach rate of closed incidents by priority and by assignment group (with counts)."""
    t = incidents.join(incident_targets(incidents).drop(columns="number"))
    closed = t[~t["is_open"] & t["target_breached"].notna()].copy()
    closed["breached_pct"] = 100 * closed["target_breached"].astype(float)
    closed["priority_name"] = closed["priority"].map(PRIORITY_NAMES)
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    order_p = sorted(closed["priority_name"].dropna().unique())
    sns.barplot(closed, x="priority_name", y="breached_pct", order=order_p, ax=a, errorbar=None)
    a.set(title=f"SLA breach rate by priority ({data_name})", xlabel="priority", ylabel="breached (%)")
    a.tick_params(axis="x", rotation=30)
    by_group = closed.groupby("assignment_group")["breached_pct"].agg(["mean", "size"]).sort_values("mean")
    b.barh(by_group.index, by_group["mean"])
    for y, (m, n) in enumerate(by_group.itertuples(index=False)):
        b.text(m + 0.5, y, f"n={n}", va="center", fontsize=8)
    b.set(title="SLA breach rate by assignment group", xlabel="breached (%)", ylabel="assignment group")
    fig.tight_layout()
    return fig


def plot_ttr_tail(incidents: pd.DataFrame, data_name: str) -> plt.Figure:
    """Survival curve of hours to resolve per priority on log axes: how heavy the tail is."""
    t = incidents.join(incident_targets(incidents).drop(columns="number"))
    fig, ax = plt.subplots()
    for p, g in t.dropna(subset=["target_ttr_hours"]).groupby("priority"):
        hours = np.sort(g["target_ttr_hours"].clip(lower=1 / 60).to_numpy())
        surv = 1.0 - np.arange(len(hours)) / len(hours)
        ax.step(hours, surv, where="post", label=f"{PRIORITY_NAMES.get(p, p)} (n={len(hours)})")
    ax.set(
        xscale="log",
        yscale="log",
        title=f"Time to resolve: share still open after x hours ({data_name})",
        xlabel="hours since opened (log)",
        ylabel="share not yet resolved (log)",
    )
    ax.legend(fontsize=8)
    return fig


def text_stats(incidents: pd.DataFrame) -> pd.DataFrame:
    """Per incident: words and characters of the ticket text."""
    text = incident_text(incidents)
    return pd.DataFrame({"words": text.str.split().str.len().fillna(0), "chars": text.str.len()})


def top_terms_by(incidents: pd.DataFrame, column: str, n_terms: int = 6, min_df: int = 5) -> pd.DataFrame:
    """The most over-represented words of each class (lift vs all tickets): does the text carry the label?"""
    text = incident_text(incidents)
    has = text.str.len() > 0
    if has.sum() < min_df:
        return pd.DataFrame(columns=[column, "tickets", "top terms"])
    vec = CountVectorizer(stop_words="english", min_df=min_df, binary=True)
    X = vec.fit_transform(text[has])
    terms = np.array(vec.get_feature_names_out())
    overall = np.asarray(X.mean(axis=0)).ravel() + 1e-6
    rows = []
    labels = incidents.loc[has, column].fillna("(none)").to_numpy()
    for label in sorted(set(labels)):
        mask = labels == label
        share = np.asarray(X[mask].mean(axis=0)).ravel()
        lift = share / overall * (share > 0.05)
        rows.append(
            {
                column: label,
                "tickets": int(mask.sum()),
                "top terms": ", ".join(terms[np.argsort(-lift)[:n_terms]]),
            }
        )
    return pd.DataFrame(rows)


def plot_text_lengths(incidents: pd.DataFrame, data_name: str) -> plt.Figure:
    """Distribution of ticket text length in words, by category."""
    stats = text_stats(incidents).assign(category=incidents["category"].fillna("(none)").to_numpy())
    fig, ax = plt.subplots()
    sns.histplot(stats, x="words", hue="category", multiple="stack", bins=40, ax=ax)
    ax.set(
        title=f"Ticket text length by category ({data_name})",
        xlabel="words per ticket (count)",
        ylabel="tickets (count)",
    )
    return fig


def stationarity_table(
    series: pd.DataFrame, freq: str = "1h", alpha: float = 0.05, max_lag: int = 24
) -> pd.DataFrame:
    """Per sensor, on its `freq` means: the ADF test (null: a unit root) and KPSS (null: stationary around a
    level), their p-values and a verdict. Both say stationary: model the level; both say unit root:
    difference once (ARIMA's d = 1); they disagree: trend-stationary or too short to tell."""
    # imported here: statsmodels takes seconds to import and only this table needs it in the EDA
    from statsmodels.tools.sm_exceptions import InterpolationWarning
    from statsmodels.tsa.stattools import adfuller, kpss

    rows = []
    for sid, part in series.dropna(subset=["value"]).groupby("sensor_id", sort=True):
        y = part.set_index("timestamp")["value"].resample(freq).mean().interpolate(limit_direction="both")
        if len(y) < 20:
            continue
        adf_stat, adf_p, lags, *_ = adfuller(y.to_numpy(), maxlag=max_lag, autolag="AIC", result_object=False)
        with warnings.catch_warnings():  # KPSS p-values outside its table are clipped to 0.01 / 0.1
            warnings.simplefilter("ignore", InterpolationWarning)
            kpss_stat, kpss_p, *_ = kpss(y.to_numpy(), regression="c", nlags="auto", result_object=False)
        unit_root, level = adf_p >= alpha, kpss_p < alpha
        verdict = {
            (False, False): "stationary",
            (True, True): "unit root: difference once",
            (False, True): "tests disagree: trend or level shifts",
            (True, False): "tests disagree: too little evidence",
        }[(bool(unit_root), bool(level))]
        rows.append(
            {
                "sensor_id": sid,
                "kind": part["kind"].iloc[0] if "kind" in part else None,
                "points": len(y),
                "adf_stat": adf_stat,
                "adf_p": adf_p,
                "adf_lags": lags,
                "kpss_stat": kpss_stat,
                "kpss_p": kpss_p,
                "verdict": verdict,
            }  # fmt: skip
        )
    return pd.DataFrame(rows).set_index("sensor_id")
