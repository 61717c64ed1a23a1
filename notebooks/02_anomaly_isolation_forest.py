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
# # 02 · Sensor anomaly detection with an Isolation Forest
#
# One scikit-learn `Pipeline` turns raw readings `(sensor_id, timestamp, value)` into causal window
# features (`ml.features.SensorWindowFeatures`: deviation from the sensor's normal daily profile, short and
# long z-scores, differences, spread, flat runs, drift, time of day/week) and scores them with an
# Isolation Forest (`ml.sensors.anomaly.CalibratedIsolationForest`). The same fitted object scores here, in batch
# (`data/scores/sensor_anomalies.parquet`), in the NAB runner (`python -m ml.sensors.nab`) and in the service.
#
# **How it is judged.** Time-ordered split per sensor: the first `train_fraction` of each series trains
# (its last part, unseen by the forest, sets the threshold), the rest is scored. Every detector — the
# forest and two simple baselines (rolling z-score, seasonal residual) — gets the **same false-alarm
# budget** (`false_alarm_rate` of normal training readings) and is scored by the same code
# (`ml.sensors.evaluation`): point precision/recall and **event-level** metrics where each labelled window counts
# once, bursts of false alarms count once, and earlier detection earns more credit.

# %% tags=["parameters"]
PARAMS_FILE = "params.yaml"
SMOKE = False

# %%
import json
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from ml import plots, registry
from ml.config import SHARED_DATA, load_params, resolve
from ml.data import eda
from ml.monitoring import reference
from ml.reports.notebooks import last_real_results, write_record
from ml.sensors import anomaly, evaluation, nab
from ml.sensors import charts as sensor_charts

params = load_params(PARAMS_FILE)
cfg = params["anomaly"]
CHARTS = resolve(cfg["charts"])
silver_dir, gold_dir = resolve(params["features"]["silver"]), resolve(params["features"]["gold"])
DATA = params["eda"]["data_name"]
plots.use_style()
pd.set_option("display.width", 180, "display.max_columns", 30, "display.precision", 3)

series = pd.read_parquet(gold_dir / "sensor_series.parquet")
windows = pd.read_parquet(silver_dir / "anomaly_windows.parquet")
if SMOKE:
    keep = sorted(series["sensor_id"].unique())[: cfg["smoke_sensors"]]
    series, windows = series[series["sensor_id"].isin(keep)], windows[windows["sensor_id"].isin(keep)]
    cfg = {**cfg, "n_estimators": 50}
series = series.reset_index(drop=True)
train_mask = anomaly.training_rows(series, cfg["train_fraction"])
eval_start = anomaly.eval_starts(series, cfg["train_fraction"])
print(f"{series['sensor_id'].nunique()} sensors, {len(series):,} readings, {len(windows)} labelled windows; "
      f"training rows {train_mask.mean():.0%}")

# %% [markdown]
# ## The forest against the baselines, same split, same alarm budget

# %%
table, scored, pipe = anomaly.compare_detectors(series, windows, cfg, eval_start=eval_start, train_mask=train_mask,
                                                period=cfg["seasonal_period"])
shown = ["event_f1", "event_precision", "event_recall", "detected", "windows", "false_alarm_events",
         "mean_time_to_detect_h", "early_detection_score", "point_precision", "point_recall", "point_f1"]
display(table[shown])

# %% [markdown]
# `event_recall` is the share of labelled windows with at least one alarm; `false_alarm_events` are
# bursts of alarms outside every window; `event_precision` = detected / (detected + false-alarm events).
# `early_detection_score` follows NAB's idea (1 = alarm at the window start, 0 = missed). Point metrics
# count single readings: they punish an alarm that is late inside a long window, which is why events are
# the headline here.

# %%
threshold = pipe.named_steps["detector"].threshold_
examples = eda.pick_sensors_per_kind(eda.sensor_coverage(series, windows))  # one sensor of each kind
fig = sensor_charts.plot_detections(scored, windows, examples, eval_start, DATA)
saved = [plots.save(fig, CHARTS, "detections")]

# %% [markdown]
# Red dots are the forest's alarms, orange bands the labelled windows, the dashed line where each
# sensor's evaluation starts (everything before it is training).

# %% [markdown]
# ## Is the win an artefact of the chosen alarm budget?
#
# The same comparison over a range of false-alarm budgets. A detector that only wins at one budget is
# tuned, not better.

# %%
sweep = anomaly.false_alarm_sweep(scored, series, windows, rates=cfg["sweep_rates"], train_mask=train_mask,
                                  eval_start=eval_start, merge_gap=cfg["merge_gap"])
saved.append(plots.save(sensor_charts.plot_false_alarm_sweep(sweep, DATA), CHARTS, "false_alarm_sweep"))
display(sweep.pivot(index="false_alarm_rate", columns="detector", values="event_f1"))

# %% [markdown]
# ## Which anomalies it finds, and how fast

# %%
by_kind = evaluation.event_metrics_by_kind(scored, windows, alarm_col="is_anomaly", eval_start=eval_start)
display(by_kind)
saved.append(plots.save(sensor_charts.plot_recall_by_kind(by_kind, DATA), CHARTS, "recall_by_kind"))

# %% [markdown]
# Spikes and level shifts are found at once; drifts are found late (they start small) and stuck values
# only once the flat run is longer than normal noise allows. That is the expected order of difficulty.

# %% [markdown]
# ## Why a reading was flagged
#
# Each alarm names the feature furthest from its normal training value (in robust standard
# deviations). Inside labelled windows the named feature should match the kind of anomaly: spikes →
# differences/z-scores, stuck → flat run, variance bursts → spread, drifts and level shifts → drift or
# deviation from the daily profile.

# %%
saved.append(plots.save(sensor_charts.plot_explanations(scored, windows, DATA), CHARTS, "explanations"))
in_window = series["is_anomaly"].astype(bool)  # gold already marks readings inside labelled windows
fig = sensor_charts.plot_score_distribution(scored, in_window, threshold, DATA)
saved.append(plots.save(fig, CHARTS, "score_distribution"))

# %% [markdown]
# ## Real data: the NAB sample (when `../shared/data` is present)
#
# Each of the four NAB files trains on its own probationary period (first 15%, at most 750 rows) and is
# scored on the rest, forest and baselines alike, with the NAB windows as truth. These are long, noisy
# real series whose windows span days; the numbers are reported as they fall.

# %%
nab_dir = SHARED_DATA / "nab_sample"
nab_table = pd.DataFrame()
if nab_dir.exists():
    nab_table = nab.nab_sample_comparison(nab_dir, cfg)
    display(nab_table.pivot(index="sensor_id", columns="detector", values="event_f1"))
    display(nab_table.groupby("detector")[["detected", "windows", "false_alarm_events"]].sum())
else:
    display(Markdown("`../shared/data` is not here (a fresh clone): NAB sample not recomputed; the results "
                     "last recorded with it follow."))
    display(last_real_results(resolve(cfg["metrics"])))

# %% [markdown]
# ## Real data: NAB's own score on the whole corpus, next to published detectors
#
# `make bench-nab` runs the same detector (same features, calibration and hold; the forest trained on each
# file's probationary period only, every score causal) over all 58 NAB files and scores it with NAB's own
# rules (`ml.sensors.nab_score`, checked against NAB's published results to ±0.05): one threshold for the
# whole corpus per cost profile, earlier detections in a window worth more, each alarm outside a window
# charged. 0 is the null detector, 100 the perfect one. The published detectors' rows are computed by the
# same scorer from their published scores. The values come from `metrics/nab.json` as last recorded
# (the corpus is not re-scored here: it takes a couple of minutes).

# %%
nab_metrics_path, ablation_path = resolve(cfg["nab_metrics"]), resolve(cfg["nab_ablation"])
if nab_metrics_path.exists():
    nab_metrics = json.loads(nab_metrics_path.read_text())
    display(nab.category_table(nab_metrics).round(1))
    saved.append(plots.save(sensor_charts.plot_nab_categories(nab_metrics), CHARTS, "nab_categories"))
else:
    display(Markdown("No `metrics/nab.json` yet: run `make bench-nab` (needs `../shared/data/nab`)."))

# %% [markdown]
# **Ablation: one lever at a time** (`ml.sensors.nab_ablation`, each row adds one lever to the row above;
# the last row switches the forest off to show that it earns its place). Before #13 the forest's score
# was its rank among the file's own training readings: it does not mean the same on every series, so no
# single corpus threshold beats "never alarm". The anomaly likelihood gives every series the same scale,
# the hold stops one episode from raising a string of alarms, and the novelty rule catches readings
# beyond anything the sensor has shown.

# %%
if ablation_path.exists():
    display(pd.DataFrame(json.loads(ablation_path.read_text())).set_index("configuration").round(2))
else:
    display(Markdown("No ablation recorded: `python -m ml.sensors.nab_ablation --data-dir ../shared/data/nab`."))

# %% [markdown]
# ## Register the model (gates decide `champion`)
#
# The run logs params, metrics, charts, the git commit and the DVC hash of the input data; the model is
# saved with skops (a safe format) and its sha256 is recorded. It becomes `champion` only if it passes
# every gate in `params.yaml` (absolute event F1, beats the best baseline, no worse than the current
# champion); otherwise it stays `challenger`. The new-vs-champion table is written to
# `docs/ml/anomaly/comparison.md`; `make promote` / `make rollback` move `champion` by hand.
#
# A seeded sample of the training records (`monitoring.reference_rows`) is saved inside the model as its
# drift reference: `/check_drift` and the monitoring compare new batches with exactly what it learned from.
# Each sampled reading keeps the score the detector gave it in training (in its series' context), which the
# monitoring job compares the served scores with (output drift).

# %%
best_baseline = table.loc[list(anomaly.BASELINES), "event_f1"].max()
metrics = {f"{k}": float(v) for k, v in table.loc["isolation_forest"].items() if v is not None and k != "threshold"}
metrics["event_f1_margin_vs_best_baseline"] = float(table.loc["isolation_forest", "event_f1"] - best_baseline)
for name in anomaly.BASELINES:
    metrics[f"baseline_{name}_event_f1"] = float(table.loc[name, "event_f1"])
reg = registry.log_and_register(
    "sensor-anomaly", pipe, params={"anomaly": cfg}, metrics=metrics, gates=registry.gates_from_params(cfg["gates"]),
    input_example=series.loc[series["value"].notna(), ["sensor_id", "timestamp", "value"]].head(48),
    charts=saved, data_paths=[params["features"]["gold"]], comparison_path=CHARTS / "comparison.md",
    training_data=registry.describe_training(series[train_mask], "timestamp"),
    reference=reference.training_reference(series[train_mask], "sensors", params["monitoring"],
                                           outputs=anomaly.score_readings(pipe, series[train_mask], explain="none")[["score"]]))
display(pd.Series(reg.to_dict()).to_frame("registration"))

# %% [markdown]
# ## Batch scores for every sensor
#
# The registered pipeline scores every reading; the result is the "scores" layer the service and the
# monitoring read.

# %%
batch = anomaly.score_readings(pipe, series)
batch["model_version"], batch["model_sha256"] = reg.version, reg.model_sha256
scores_path = resolve(cfg["scores"])
scores_path.parent.mkdir(parents=True, exist_ok=True)
batch.to_parquet(scores_path, index=False)
print(f"{len(batch):,} readings scored, {int(batch['is_anomaly'].sum())} flagged -> {scores_path}")

# %% tags=["opslab-record"]
record = {
    "data": DATA,
    "smoke": SMOKE,
    "synthetic": table.to_dict(orient="index"),
    "event_f1_margin_vs_best_baseline": metrics["event_f1_margin_vs_best_baseline"],
    "recall_by_kind": dict(zip(by_kind["anomaly_kind"], by_kind["recall"].astype(float), strict=True)),
}
real_record = {
    "nab_sample": {f"{r.sensor_id}|{r.detector}": {"event_f1": float(r.event_f1), "detected": int(r.detected),
                                                  "windows": int(r.windows),
                                                  "false_alarm_events": int(r.false_alarm_events)}
                   for r in nab_table.itertuples()},
} if len(nab_table) else {}
record |= {
    "registry": {"version": reg.version, "alias": reg.alias, "promoted": reg.promoted, "gates": reg.gates},
    "model_sha256": reg.model_sha256,
    "charts": sorted(Path(p).name for p in saved),
}
record = write_record(resolve(cfg["metrics"]), record, real=real_record)
