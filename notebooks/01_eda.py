# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Exploratory data analysis: sensors and incidents
#
# What the data looks like before any model touches it. Two domains:
#
# * **Sensors**: telemetry readings `(sensor_id, timestamp, value)` with labelled anomaly windows.
# * **Incidents**: ServiceNow-style tickets with open-time fields, free text and outcomes (SLA, time to resolve).
#
# The notebook reads the silver/gold tables built by `dvc repro ingest featurize` (synthetic by
# default; `params.yaml → ingest.sources` points at real exports). Every chart is saved to
# `docs/ml/eda/` and the headline numbers are recorded in `metrics/eda.json`.
# When `../shared/data` is present, the last section repeats the key views on the **real** samples
# (NAB sensor files and the UCI ServiceNow event log) through the same loaders.

# %% tags=["parameters"]
PARAMS_FILE = "params.yaml"
SMOKE = False

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

from ml import plots
from ml.config import SHARED_DATA, load_params, resolve
from ml.data import eda, sources
from ml.data.gold import label_windows, sensor_grid
from ml.reports.notebooks import last_real_results, write_record

params = load_params(PARAMS_FILE)
cfg = params["eda"]
CHARTS = resolve(cfg["charts"])
REAL_CHARTS = resolve(cfg["real_charts"])  # real-data charts: their own folder, kept when the data is absent
silver_dir, gold_dir = resolve(params["features"]["silver"]), resolve(params["features"]["gold"])
plots.use_style()
pd.set_option("display.width", 160, "display.max_columns", 20)

series = pd.read_parquet(gold_dir / "sensor_series.parquet")
windows = pd.read_parquet(silver_dir / "anomaly_windows.parquet")
incidents = pd.read_parquet(silver_dir / "incidents.parquet")
if SMOKE:  # a quick look for tests: a few sensors, a slice of tickets
    keep = sorted(series["sensor_id"].unique())[: cfg["smoke_sensors"]]
    series, windows = series[series["sensor_id"].isin(keep)], windows[windows["sensor_id"].isin(keep)]
    incidents = incidents.sort_values("opened_at").tail(cfg["smoke_incidents"]).reset_index(drop=True)
DATA = cfg["data_name"]
saved = []
print(f"{series['sensor_id'].nunique()} sensors, {len(series):,} grid rows; {len(incidents):,} incidents")

# %% [markdown]
# ## Sensors: coverage and missing readings
#
# One row per sensor. `expected_rows` is the regular grid between a sensor's first and last reading;
# `missing_pct` the share of that grid with no reading. Models must tolerate these gaps (the feature
# transforms forward-fill causally; forecasting resamples). `windows` counts labelled anomaly windows.

# %%
coverage = eda.sensor_coverage(series, windows)
display(coverage)
saved.append(plots.save(eda.plot_missingness(series, DATA), CHARTS, "sensor_missingness"))

# %% [markdown]
# The heatmap shows **where** readings are missing: isolated dots are dropped readings, horizontal
# runs are outages. Missing readings are absent rows in the feed, not zeros.

# %% [markdown]
# ## Sensors: seasonality
#
# Each reading divided by its sensor's mean, averaged by hour of day and by day of week (band = middle
# 50% of readings). A flat line means no seasonality; CPU and request rate follow working hours and
# drop at weekends, which is why the forecasters use daily and weekly seasonal terms and the anomaly
# features include time-of-day encodings.

# %%
saved.append(plots.save(eda.plot_seasonality(series, DATA), CHARTS, "sensor_seasonality"))

# %% [markdown]
# ## Sensors: stationarity (ADF and KPSS)
#
# Per sensor on hourly means: the augmented Dickey-Fuller test (null hypothesis: a unit root, so a
# small p-value says stationary) and KPSS (null: stationary around a level, so a small p-value says
# not). Where both say stationary, the forecasters can model the level directly; a unit root asks for
# one difference, which the ARIMA candidate offers through its `(0, 1, 1)` order; where they disagree,
# a trend or level shifts are likely, which ETS's damped trend and the rolling backtest handle. The
# forecast notebook does not act on this table: the backtest decides per sensor, and this says why.

# %%
stationarity = eda.stationarity_table(series)
display(stationarity.round(4))
display(stationarity["verdict"].value_counts().to_frame("sensors"))

# %% [markdown]
# ## Sensors: distributions, normal vs anomalous
#
# Readings inside labelled windows against the rest, per kind. Spikes and level shifts sit in the
# tails; stuck values and slow drifts hide *inside* the normal range, so a per-value threshold cannot
# find them: they need window features (rolling spread, differences).

# %%
saved.append(plots.save(eda.plot_distributions(series, DATA), CHARTS, "sensor_distributions"))

# %% [markdown]
# ## Sensors: labelled anomaly windows
#
# One sensor per kind with its windows shaded and named by anomaly kind. These windows are the
# ground truth for the event-level scores of the anomaly notebook.

# %%
examples = eda.pick_sensors_per_kind(coverage)
saved.append(
    plots.save(eda.plot_anomaly_windows(series, windows, examples, DATA), CHARTS, "sensor_anomaly_windows")
)
display(windows.groupby("anomaly_kind").size().rename("windows").to_frame())

# %% [markdown]
# ## Incidents: headline numbers and volume

# %%
summary = eda.incident_summary(incidents)
display(summary.to_frame("value"))
saved.append(plots.save(eda.plot_incident_volume(incidents, DATA), CHARTS, "incident_volume"))

# %% [markdown]
# Weekly volume by priority. Most tickets are P3–P4; P1s are rare. A change in mix over time (for
# example a new system going live) is what the drift monitoring later has to notice.

# %% [markdown]
# ## Incidents: SLA breach rates
#
# Share of **closed** incidents that missed their SLA target, by priority and by assignment group
# (`n` = closed tickets). Differences between groups are what makes breach risk learnable from
# open-time fields; open incidents have no outcome yet and are left out.

# %%
saved.append(plots.save(eda.plot_breach_rates(incidents, DATA), CHARTS, "incident_breach_rates"))

# %% [markdown]
# ## Incidents: the resolution-time tail
#
# Share of incidents not yet resolved after *x* hours, per priority, on log–log axes. A straight-ish
# descent on these axes is a heavy (power-law-like) tail: a few tickets take weeks. That is why the
# time-to-resolve model works on log-hours and reports quantiles rather than a mean.

# %%
saved.append(plots.save(eda.plot_ttr_tail(incidents, DATA), CHARTS, "incident_ttr_tail"))

# %% [markdown]
# ## Incidents: ticket text
#
# Text length by category, and the words most over-represented in each assignment group (lift over
# all tickets). Distinct top terms per group mean the text carries the routing signal; shared words
# ("error", "slow", "not working") and vague tickets are why triage must be allowed to abstain.

# %%
saved.append(plots.save(eda.plot_text_lengths(incidents, DATA), CHARTS, "incident_text_length"))
display(eda.top_terms_by(incidents, "assignment_group"))

# %% [markdown]
# ## Real data samples (when `../shared/data` is present)
#
# The same loaders on real exports: four NAB files (realKnownCause) with their labelled windows, and
# the first 3,000 incidents of the UCI ServiceNow event log collapsed to one row per incident with
# open-time fields from the first event and outcomes from the last. The UCI log has no ticket text
# and almost no CI, and this early slice breaches far more often than the full log (README): it proves
# the pipeline, it does not measure model quality.

# %%
real, real_saved = {}, []
nab_dir, uci_file = (
    SHARED_DATA / "nab_sample",
    SHARED_DATA / "incidents_uci_sample" / "incident_event_log_sample.csv",
)
if nab_dir.exists() and uci_file.exists():
    nab_readings, nab_windows = sources.load_nab_dir(nab_dir)
    nab_series = label_windows(sensor_grid(nab_readings), nab_windows)
    nab_cov = eda.sensor_coverage(nab_series, nab_windows)
    display(nab_cov)
    nab_stationarity = eda.stationarity_table(nab_series)
    display(nab_stationarity.round(4))
    real_saved.append(
        plots.save(
            eda.plot_anomaly_windows(nab_series, nab_windows, list(nab_cov.index), "NAB sample"),
            REAL_CHARTS,
            "nab_anomaly_windows",
        )
    )
    uci = sources.load_incident_event_log(uci_file)
    uci_summary = eda.incident_summary(uci)
    display(pd.concat({DATA: summary, "UCI event-log sample": uci_summary}, axis=1))
    real_saved.append(plots.save(eda.plot_breach_rates(uci, "UCI sample"), REAL_CHARTS, "uci_breach_rates"))
    real_saved.append(plots.save(eda.plot_ttr_tail(uci, "UCI sample"), REAL_CHARTS, "uci_ttr_tail"))
    real = {
        "nab_sensors": int(nab_cov.shape[0]),
        "nab_windows": int(len(nab_windows)),
        "uci_incidents": int(len(uci)),
        "uci_breach_rate_pct": float(uci_summary["SLA breach rate (closed, %)"]),
        "nab_stationarity": nab_stationarity["verdict"].to_dict(),
        "charts": sorted(Path(p).name for p in real_saved),
    }
else:
    display(Markdown("`../shared/data` is not here (a fresh clone): real-data views not recomputed; the results "
                     "last recorded with it follow."))
    display(last_real_results(resolve(cfg["metrics"])))
    for png in sorted(REAL_CHARTS.glob("*.png")):
        display(Image(filename=str(png)))

# %% [markdown]
# ## Recorded results
#
# The numbers below go to `metrics/eda.json` (a DVC metric) and are read back by the notebook smoke test.
# The real-data numbers go to `metrics/real/eda.json` and their charts to `docs/ml/real/eda/`, written only
# when `../shared/data` is here: a run without it leaves the committed real-data results as they are.

# %% tags=["opslab-record"]
record = {
    "data": DATA,
    "smoke": SMOKE,
    "sensors": int(series["sensor_id"].nunique()),
    "sensor_kinds": int(series["kind"].nunique()),
    "sensor_grid_rows": int(len(series)),
    "sensor_missing_pct": round(float(100 * series["is_missing"].mean()), 3),
    "stationarity": stationarity["verdict"].value_counts().to_dict(),
    "anomaly_windows": int(len(windows)),
    "anomaly_kinds": int(windows["anomaly_kind"].nunique()),
    "incidents": int(summary["incidents"]),
    "incidents_open": int(summary["still open"]),
    "sla_breach_rate_pct": float(summary["SLA breach rate (closed, %)"]),
    "ttr_median_hours": float(summary["median hours to resolve"]),
    "ttr_p90_hours": float(summary["P90 hours to resolve"]),
    "charts": sorted(Path(p).name for p in saved),
}
real_record = real
record = write_record(resolve(cfg["metrics"]), record, real=real_record)
