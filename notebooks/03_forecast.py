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
# # 03 · Sensor forecasting, chosen by rolling-origin backtest
#
# For every sensor five candidates — **seasonal naive** (the baseline: same hour last week), **ETS**
# (statsmodels, damped additive trend + additive weekly season), **ARIMA** (daily and weekly harmonics of
# the timestamp, with statsmodels SARIMAX errors whose (p, d, q) is chosen by AIC from a short list),
# **MSTL** (statsmodels' multi-seasonal decomposition: daily and weekly components repeat their last cycle,
# damped-trend ETS forecasts the rest) and **Prophet** (daily profile split weekday/weekend, weekly season)
# — are fitted at many rolling origins, each fold training only on data
# before its origin and forecasting the next `horizon` steps. The model with the lowest mean **MASE**
# across folds is chosen per sensor (never by in-sample fit), refitted on the full series and saved as one
# artifact (JSON + parquet, no pickle) that the service loads without refitting.
#
# Metrics: MAE, MAPE, sMAPE, MASE (scale = in-sample MAE of the seasonal-naive forecast, so MASE < 1 beats
# "same hour last week"), and coverage of the 80%/95% intervals. Readings inside labelled anomaly windows
# or missing are never scored. **Goals**: MASE < 1 on ≥ 80% of sensors, MAPE ≤ 5% on temperature sensors,
# interval coverage within ±5 points of nominal.

# %% tags=["parameters"]
PARAMS_FILE = "params.yaml"
SMOKE = False

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from ml import plots, registry
from ml.config import SHARED_DATA, load_params, resolve
from ml.monitoring import reference
from ml.reports.notebooks import last_real_results, write_csv, write_record
from ml.sensors import backtest, forecast, forecast_models
from ml.sensors import charts as sensor_charts

params = load_params(PARAMS_FILE)
cfg = params["forecast"]
model_cfg = {k: v for k, v in cfg.items() if k in (*forecast_models.MODEL_KEYS, *forecast_models.RUNTIME_KEYS)}
CHARTS = resolve(cfg["charts"])
gold_dir = resolve(params["features"]["gold"])
DATA = params["eda"]["data_name"]
plots.use_style()
pd.set_option("display.width", 180, "display.max_columns", 30, "display.precision", 3)

series = pd.read_parquet(gold_dir / "sensor_series.parquet")
if SMOKE:  # a few sensors, fewer folds, no Prophet: a quick run for tests
    keep = sorted(series["sensor_id"].unique())[: cfg["smoke_sensors"]]
    series = series[series["sensor_id"].isin(keep)]
    model_cfg = {**model_cfg, "models": ["seasonal_naive", "ets"], "folds": 3}
print(f"{series['sensor_id'].nunique()} sensors, {len(series):,} hourly readings; candidates {model_cfg['models']}")

# %%
forecaster = forecast.SensorForecaster().fit(series, model_cfg)
bt = forecaster.backtest_
overall = backtest.overall_table(bt)
display(overall)

# %% [markdown]
# One row per candidate across all sensors, then **selected** (each sensor's chosen model, scored on the
# same folds it was chosen on — optimistic) and **selected_holdout** (chosen on the first half of the
# folds, scored on the second half — the fair number, and the one the registry gates use).
# `share_mase_lt1` is the share of sensors whose MASE is below 1.

# %%
by_sensor = backtest.backtest_table(bt)
display(forecaster.info()[["sensor_id", "kind", "model", "train_start", "train_end"]].set_index("sensor_id"))
tables = resolve(cfg["tables"])
write_csv(by_sensor, tables, index=False, float_format="%.4f")

# %% [markdown]
# The chosen model per sensor. The full backtest table (every sensor × candidate: MAE, MAPE, sMAPE, MASE,
# coverage) is saved next to the charts as `backtest_by_sensor.csv`.

# %%
examples = series.drop_duplicates("kind")["sensor_id"].tolist()
saved = [plots.save(sensor_charts.plot_forecasts(series, forecaster, examples, data_name=DATA), CHARTS, "forecasts")]
saved.append(plots.save(sensor_charts.plot_error_by_horizon(bt, data_name=DATA), CHARTS, "error_by_horizon"))
saved.append(plots.save(sensor_charts.plot_coverage(bt, data_name=DATA), CHARTS, "coverage"))

# %% [markdown]
# **Forecasts**: the next day after the last week of readings, with 80% (dark) and 95% (light) bands.
# **Error by horizon**: how MAE grows with the steps ahead, per model — the naive forecast is flat
# (it copies last week), the fitted models are best in the first hours. **Coverage**: the share of
# actual readings inside each interval against its nominal level; on the diagonal is honest.

# %% [markdown]
# ## Real data: the NAB sample (when `../shared/data` is present)
#
# The four NAB series, resampled to hourly means, through the same backtest and selection.

# %%
nab_goals, nab_overall = {}, pd.DataFrame()
nab_dir = SHARED_DATA / "nab_sample"
if nab_dir.exists() and not SMOKE:
    from ml.data import sources
    from ml.data.gold import label_windows, sensor_grid

    readings, windows = sources.load_nab_dir(nab_dir)
    nab_series = backtest.resample_series(label_windows(sensor_grid(readings), windows), "1h")
    nab_bt = backtest.backtest(nab_series, model_cfg)
    nab_overall = backtest.overall_table(nab_bt)
    display(backtest.backtest_table(nab_bt).query("is_chosen")[["sensor_id", "model", "mase", "mape", "cov80", "cov95"]])
    display(nab_overall)
    nab_goals = backtest.goal_metrics(nab_bt)
    nab_table = backtest.backtest_table(nab_bt)
    temperature_mape = (nab_table[nab_table["kind"] == "temperature"]
                        .pivot_table(index="sensor_id", columns="model", values="mape").round(2))
    display(temperature_mape)
    for sid, row in temperature_mape.iterrows():
        best = row.idxmin()
        verdict = "under" if row[best] <= 5.0 else "above"
        display(Markdown(f"**{sid}**: the best candidate is `{best}` at {row[best]:.2f}% MAPE, {verdict} the 5% "
                         f"target; the others: " + ", ".join(f"`{m}` {v:.2f}%" for m, v in row.drop(best).items())
                         + "."))
else:
    display(Markdown("NAB sample not recomputed (no `../shared/data`, or a smoke run); the results last recorded "
                     "with it follow."))
    display(last_real_results(resolve(cfg["metrics"])))

# %% [markdown]
# ## Register the forecaster (gates decide `champion`)
#
# Logged to MLflow as a pyfunc built from code (`ml/sensors/forecast_pyfunc.py`) with the JSON/parquet state as
# its artifact; the sha256 of that state is `model_sha256`. Gates (in `params.yaml`) use the holdout
# numbers: MASE < 1 on ≥ 80% of sensors, temperature MAPE ≤ 5%, 80% coverage within 5 points.
#
# A seeded sample of the training records (`monitoring.reference_rows`) is saved inside the model as its
# drift reference: `/check_drift` and the monitoring compare new batches with exactly what it learned from.

# %%
goals = backtest.goal_metrics(bt)
metrics = {k.replace(".", "_"): v for k, v in goals.items() if v is not None}
metrics["holdout_share_mase_lt1"] = goals["selected_holdout.share_mase_lt1"]
metrics["holdout_mape_temperature"] = goals["selected_holdout.mape_temperature"] or 0.0
metrics["holdout_cov80_error_pts"] = abs(100 * goals["selected_holdout.cov80"] - 80.0)  # coverage is a share
metrics["holdout_cov95_error_pts"] = abs(100 * goals["selected_holdout.cov95"] - 95.0)
reg = registry.log_and_register(
    "sensor-forecast", forecaster, params={"forecast": model_cfg}, metrics=metrics,
    gates=registry.gates_from_params(cfg["gates"]), input_example=pd.DataFrame({"sensor_id": examples, "horizon": 24}),
    charts=saved, data_paths=[params["features"]["gold"]], comparison_path=CHARTS / "comparison.md", saver=registry.save_forecaster,
    training_data=registry.describe_training(series, "timestamp"),
    reference=reference.training_reference(series, "sensors", params["monitoring"]))
display(pd.Series(reg.to_dict()).to_frame("registration"))

# %% tags=["opslab-record"]
record = {
    "data": DATA,
    "smoke": SMOKE,
    "sensors": int(series["sensor_id"].nunique()),
    "chosen_models": forecaster.info()["model"].value_counts().to_dict(),
    "goals": goals,
    "registry": {"version": reg.version, "alias": reg.alias, "promoted": reg.promoted, "gates": reg.gates},
    "model_sha256": reg.model_sha256,
    "charts": sorted(Path(p).name for p in saved),
}
real_record = (
    {"nab_sample": nab_goals, "nab_temperature_mape_by_model": temperature_mape.to_dict(orient="index")}
    if nab_goals
    else {}
)
record = write_record(resolve(cfg["metrics"]), record, real=real_record)
