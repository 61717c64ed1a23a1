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
# # 10 · Archive volume and storage savings, next week and next month
#
# People who run document archives (file shares, mailboxes, content tenants) ask two questions every month:
# **how many GB will each source archive next period, and how much storage will archiving save?** Each
# source reports one row per day: what it holds (`total_files`, `avg_file_size_mb`, the file-type mix), its
# policy (`retention_days`, `archive_frequency_per_day`) and what it archived and saved that day.
#
# The forecast is made at the end of a day (the *origin*) for four outputs: GB archived and GB saved over the
# next **7 days** and the next **30 days**. Three models, simplest first:
#
# - **seasonal naive** (baseline): the next period equals the last period of the same length;
# - **linear** (baseline): per output, a ridge regression correcting the seasonal naive in log space;
# - **gradient boosting** (the candidate): per output, a histogram gradient-boosting regressor making the same
#   correction from the same causal features (`ml.features.ArchiveFeatures`: cyclical month and weekday, days
#   to the month's end, type shares, policy, days since the policy changed, lags and 7/30/91-day sums).
#
# They are compared by a **rolling-origin backtest**: each fold trains only on origins whose targets had ended
# before the fold starts. The last folds are the **holdout**; their 80% intervals come from the residuals of
# the folds before them (conformal), never from the rows they are scored on. Per output: MAE (GB), R², MAPE
# and interval coverage. **Goals** (the registry's gates): beat both baselines on MAE for every output,
# coverage within 5 points of 80%.

# %% tags=["parameters"]
PARAMS_FILE = "params.yaml"
SMOKE = False

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from ml import plots, registry
from ml.archive import backtest, predict, savings
from ml.archive import charts as archive_charts
from ml.archive.targets import next_period_targets
from ml.config import load_params, resolve
from ml.data.synth.archive import SAVINGS_RATIO
from ml.features import ARCHIVE_INPUT_COLUMNS
from ml.monitoring.reference import reference_sample
from ml.reports.notebooks import write_csv, write_record

params = load_params(PARAMS_FILE)
cfg = dict(params["archive"])
CHARTS = resolve(cfg["charts"])
gold_dir = resolve(params["features"]["gold"])
DATA = params["eda"]["data_name"]
plots.use_style()
pd.set_option("display.width", 180, "display.max_columns", 30, "display.precision", 3)

daily = pd.read_parquet(gold_dir / "archive_daily.parquet")
if SMOKE:  # a few sources, fewer folds and boosting rounds: a quick run for tests
    keep = sorted(daily["source_id"].unique())[: cfg["smoke_sources"]]
    daily = daily[daily["source_id"].isin(keep)].reset_index(drop=True)
    cfg.update(folds=cfg["smoke_folds"], holdout_folds=cfg["smoke_holdout_folds"])
    cfg["hgb"] = {**cfg["hgb"], "max_iter": cfg["smoke_max_iter"]}
span = f"{daily['date'].min():%Y-%m-%d} to {daily['date'].max():%Y-%m-%d}"
print(
    f"{daily['source_id'].nunique()} sources, {len(daily):,} source-days ({span}), "
    f"{int(daily['is_filled'].sum())} days without a record filled as no activity"
)
display(
    daily.groupby("source_type")[["archived_gb", "saved_gb"]]
    .sum()
    .assign(savings_share=lambda t: t["saved_gb"] / t["archived_gb"])
    .round(2)
)

# %% [markdown]
# The gold table: every source on a gap-free daily grid. GB archived and saved per kind of source over the
# whole period, and the share of archived GB that dedup and compression saved (mailboxes save most: email
# dedups well).

# %%
bt = backtest.with_intervals(backtest.run_backtest(daily, cfg), cfg["coverage"])
holdout = backtest.score_table(bt, holdout=True)
display(
    holdout.pivot_table(index="output", columns="model", values=["mae", "r2", "mape", "coverage"])
    .reindex(columns=cfg["models"], level=1)
    .round(3)
)
folds = bt.groupby("fold").agg(
    first_origin=("date", "min"), last_origin=("date", "max"), holdout=("holdout", "first")
)
display(folds)

# %% [markdown]
# **Holdout table**: per output (rows) and model (columns), MAE in GB, R², MAPE in % (over periods that
# archived anything) and the share of actuals inside the 80% interval. The folds: 28 days of origins each,
# the last ones the holdout. Both baselines are scored with conformal intervals too, the same way.

# %%
gate_metrics = backtest.gate_metrics(holdout, candidate=cfg["models"][-1], coverage=cfg["coverage"])
verdict = [
    f"- vs **{base}**: MAE lower by {100 * gate_metrics[f'holdout_mae_margin_vs_{base}_min']:.1f}% at least "
    "(the worst of the four outputs)"
    for base in cfg["models"][:-1]
]
verdict.append(f"- 80% coverage off by at most {gate_metrics['holdout_cov80_error_pts_max']:.1f} points")
display(Markdown("\n".join(verdict)))

# %% [markdown]
# The gate numbers: the candidate's relative MAE gain over each baseline, taking the worst output, and the
# largest coverage error.

# %%
outputs = list(holdout["output"].unique())
examples = daily.drop_duplicates("source_type")["source_id"].tolist()[: cfg["example_sources"]]
week = [o for o in outputs if o.endswith("_next_week")]
saved = [
    plots.save(
        archive_charts.plot_forecast_vs_actual(bt, examples, week, cfg["models"][-1], DATA),
        CHARTS,
        "forecast_vs_actual",
    )
]
errors = backtest.error_by_horizon(holdout)
saved.append(plots.save(archive_charts.plot_error_by_horizon(errors, DATA), CHARTS, "error_by_horizon"))
by_type = savings.savings_by_type(daily, truth=SAVINGS_RATIO if DATA == "synthetic" else None)
saved.append(plots.save(archive_charts.plot_savings_by_type(by_type, DATA), CHARTS, "savings_by_type"))
write_csv(holdout, CHARTS / "holdout_scores.csv", index=False, float_format="%.4f")
display(by_type.round(3))

# %% [markdown]
# **Forecast vs actual**: one source of each kind, GB archived and saved in the week after each holdout
# origin, with the 80% band; the dashed line is the seasonal naive, which echoes last week's month-end close
# or holiday into the next one, while the model expects them from the calendar. **Error by horizon**: MAE as a
# share of the mean actual; the month is relatively easier (day-to-day noise averages out) but only the
# model uses the calendar to tell which months hold a quarter-end close or the Christmas weeks.
# **Savings by file type**: the share of an archived GB saved, estimated from the daily records alone
# (non-negative least squares of GB saved on GB archived per type); on synthetic data the generator's ratio
# is marked. Documents and email save about half; images and video, already compressed, almost nothing.

# %% [markdown]
# ## Refit on every origin and score every source
#
# The registered model is the candidate refitted on every origin with a complete month target, its interval
# offsets taken from all of its out-of-sample backtest residuals. Batch scores: each source forecast from its
# last day, the same function (`ml.archive.predict.forecast_latest`) the service's `/forecast_archive` uses.

# %%
targets = next_period_targets(daily, cfg["horizons"])
model = backtest.forecaster(cfg, cfg["models"][-1]).fit(daily, targets)
model.set_intervals(backtest.residuals(bt, cfg["models"][-1]))
scores = predict.forecast_latest(model, daily)
scores_path = resolve(cfg["scores"])
scores_path.parent.mkdir(parents=True, exist_ok=True)
scores.to_parquet(scores_path, index=False)
display(scores.head(6).round(1))
print(f"{len(scores)} sources scored -> {cfg['scores']}; trained on {model.n_train_rows_:,} origins")

# %% [markdown]
# ## Register the forecaster (gates decide `champion`)
#
# Logged to MLflow with skops (the model, its `ArchiveFeatures` and interval offsets in one file whose sha256 is
# `model_sha256`). Gates (in `params.yaml`) read the holdout numbers above. A seeded sample of the daily records
# it learned from, stratified by source (`monitoring.reference_rows`), is saved inside the model as its drift
# reference.

# %%
metrics = dict(gate_metrics)
metrics["train_rows"] = model.n_train_rows_
example = daily[daily["source_id"] == examples[0]].tail(model.min_history_days())[list(ARCHIVE_INPUT_COLUMNS)]
ref = reference_sample(
    daily[list(ARCHIVE_INPUT_COLUMNS)],
    n=int(params["monitoring"]["reference_rows"]),
    seed=int(params["monitoring"]["seed"]),
    stratify="source_id",
)
model_params = {
    k: cfg[k]
    for k in (
        "horizons",
        "windows",
        "lags",
        "models",
        "folds",
        "step",
        "holdout_folds",
        "coverage",
        "linear",
        "hgb",
        "seed",
    )
}
reg = registry.log_and_register(
    "archive-forecast",
    model,
    params={"archive": model_params},
    metrics=metrics,
    gates=registry.gates_from_params(cfg["gates"]),
    input_example=example.reset_index(drop=True),
    charts=saved,
    data_paths=[params["features"]["gold"]],
    comparison_path=CHARTS / "comparison.md",
    training_data=registry.describe_training(daily, "date"),
    reference=ref,
)
display(pd.Series(reg.to_dict()).to_frame("registration"))

# %% tags=["opslab-record"]
record = {
    "data": DATA,
    "smoke": SMOKE,
    "sources": int(daily["source_id"].nunique()),
    "source_days": len(daily),
    "holdout": {
        f"{r.model}.{r.output}": {k: getattr(r, k) for k in ("mae", "r2", "mape", "coverage")}
        for r in holdout.itertuples()
    },
    "goals": gate_metrics,
    "savings_ratio_by_type": by_type.set_index("file_type")["savings_ratio"].round(4).to_dict(),
    "registry": {"version": reg.version, "alias": reg.alias, "promoted": reg.promoted, "gates": reg.gates},
    "model_sha256": reg.model_sha256,
    "charts": sorted(Path(p).name for p in saved),
}
record = write_record(resolve(cfg["metrics"]), record)
