"""Rolling-origin backtest of the archive forecasters, conformal intervals, and the scores the gates read.

The last `folds` blocks of `step` origin days (each ending where the month target still is known) are the
folds, oldest first. A fold's models train only on origins whose every target had ended by the fold's first
origin, and forecast each origin in the fold from the records up to it. The last `holdout_folds` folds are
the holdout: each is scored with interval offsets from the out-of-sample residuals of the folds before it,
so no interval is tuned on the rows it is scored on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.archive.model import ArchiveForecaster, interval_offsets, log_residuals
from ml.archive.targets import check_horizons, history_days, next_period_targets, output_names

BT_COLUMNS = ["fold", "holdout", "model", "source_id", "date", "output", "actual", "pred"]


def forecaster(cfg: Mapping[str, Any], regressor: str) -> ArchiveForecaster:
    """An unfitted forecaster from params.yaml's `archive` section."""
    return ArchiveForecaster(
        horizons=dict(cfg["horizons"]),
        windows=tuple(cfg["windows"]),
        lags=tuple(cfg["lags"]),
        regressor=regressor,
        hgb=dict(cfg["hgb"]),
        linear=dict(cfg["linear"]),
        coverage=float(cfg["coverage"]),
        n_threads=cfg.get("n_threads"),
        random_state=int(cfg["seed"]),
    )


@dataclass(frozen=True)
class Fold:
    """One block of forecast origins: `start`..`end` (both included); `holdout` folds give the fair score."""

    index: int
    start: pd.Timestamp
    end: pd.Timestamp
    holdout: bool


def rolling_folds(
    dates: pd.Series, horizon_days: int, folds: int, step: int, holdout_folds: int
) -> list[Fold]:
    """The folds, oldest first: `folds` consecutive blocks of `step` days ending `horizon_days` before the last date."""
    if folds < 2 or step < 1 or not 1 <= holdout_folds < folds:
        raise ValueError(
            f"need folds >= 2, step >= 1 and 1 <= holdout_folds < folds; got {folds}, {step}, {holdout_folds}"
        )
    last = pd.Timestamp(dates.max()).normalize() - pd.Timedelta(days=horizon_days)
    first = last - pd.Timedelta(days=folds * step - 1)
    if first - pd.Timedelta(days=horizon_days) <= pd.Timestamp(dates.min()):
        raise ValueError(
            f"{folds} folds of {step} days plus a {horizon_days}-day horizon leave no training data before "
            f"{first.date()}; the records start {pd.Timestamp(dates.min()).date()}"
        )
    out = []
    for k in range(folds):
        start = first + pd.Timedelta(days=k * step)
        out.append(Fold(k, start, start + pd.Timedelta(days=step - 1), k >= folds - holdout_folds))
    return out


def run_backtest(
    daily: pd.DataFrame, cfg: Mapping[str, Any], models: Sequence[str] | None = None
) -> pd.DataFrame:
    """Out-of-sample forecasts of every model at every origin of every fold, long (BT_COLUMNS)."""
    horizons = check_horizons(cfg["horizons"], cfg["windows"])
    h_max = max(horizons.values())
    targets = next_period_targets(daily, horizons)
    dates = pd.to_datetime(daily["date"])
    outputs = output_names(horizons)
    folds = rolling_folds(dates, h_max, int(cfg["folds"]), int(cfg["step"]), int(cfg["holdout_folds"]))
    need = forecaster(cfg, "seasonal_naive").min_history_days()
    parts = []
    for fold in folds:
        train = daily[dates + pd.Timedelta(days=h_max) <= fold.start]
        seen = daily[dates <= fold.end]
        for name in models or cfg["models"]:
            model = forecaster(cfg, name)
            model.fit(train, targets.loc[train.index])
            test = (dates.loc[seen.index] >= fold.start) & (history_days(seen) >= need)
            test &= targets.loc[seen.index, outputs].notna().all(axis=1)
            rows = seen.index[test.to_numpy()]
            recent = seen[
                dates.loc[seen.index] > fold.start - pd.Timedelta(days=need)
            ]  # enough for the features
            pred = model.predict(recent).loc[rows]
            for out in outputs:
                parts.append(
                    pd.DataFrame(
                        {
                            "fold": fold.index,
                            "holdout": fold.holdout,
                            "model": name,
                            "source_id": daily.loc[rows, "source_id"].to_numpy(),
                            "date": dates.loc[rows].to_numpy(),
                            "output": out,
                            "actual": targets.loc[rows, out].to_numpy(),
                            "pred": pred[out].to_numpy(),
                        }
                    )
                )
    return pd.concat(parts, ignore_index=True)[BT_COLUMNS]


def with_intervals(bt: pd.DataFrame, coverage: float) -> pd.DataFrame:
    """A copy with `lo` / `hi`: each fold's interval from the log residuals of the same model and output in
    the folds before it (NaN in the first fold, which has none)."""
    out = bt.copy()
    out["lo"], out["hi"] = np.nan, np.nan
    resid = log_residuals(out["actual"], out["pred"])
    for (_, output), g in out.groupby(["model", "output"], sort=False):
        for k in sorted(g["fold"].unique())[1:]:
            earlier = g.index[g["fold"] < k]
            lo, hi = interval_offsets({output: resid[earlier]}, [output], coverage)[output]
            now = g.index[g["fold"] == k]
            log_pred = np.log1p(out.loc[now, "pred"].to_numpy())
            out.loc[now, "lo"] = np.maximum(np.expm1(log_pred + lo), 0.0)
            out.loc[now, "hi"] = np.maximum(np.expm1(log_pred + hi), 0.0)
    return out


def residuals(bt: pd.DataFrame, model: str) -> dict[str, np.ndarray]:
    """Every out-of-sample log residual of `model`, per output: what the final model's intervals come from."""
    rows = bt[bt["model"] == model]
    return {o: log_residuals(g["actual"], g["pred"]) for o, g in rows.groupby("output", sort=False)}


def scores(frame: pd.DataFrame) -> dict[str, float]:
    """MAE (GB), R², MAPE (% over actuals > 0), interval coverage and the mean actual of forecast rows."""
    y, p = frame["actual"].to_numpy(float), frame["pred"].to_numpy(float)
    err = np.abs(y - p)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    pos = y > 0
    out = {
        "mae": float(err.mean()),
        "r2": float(1 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "mape": float(100 * (err[pos] / y[pos]).mean()) if pos.any() else float("nan"),
        "mean_actual": float(y.mean()),
        "n": int(len(y)),
    }
    if "lo" in frame and frame["lo"].notna().any():
        has = frame["lo"].notna().to_numpy()
        inside = (y[has] >= frame["lo"].to_numpy()[has]) & (y[has] <= frame["hi"].to_numpy()[has])
        out["coverage"] = float(inside.mean())
    return out


def score_table(bt: pd.DataFrame, holdout: bool = True) -> pd.DataFrame:
    """One row per model and output: `scores` over the holdout folds (or over the others)."""
    rows = bt[bt["holdout"] == holdout]
    table = [
        {"model": m, "output": o, **scores(g)} for (m, o), g in rows.groupby(["model", "output"], sort=False)
    ]
    return pd.DataFrame(table)


def gate_metrics(table: pd.DataFrame, candidate: str, coverage: float) -> dict[str, float]:
    """The registry's numbers from a holdout `score_table`: the candidate's MAE, R², MAPE and coverage per output;
    its relative MAE gain over each other model, per output and the minimum over outputs; the largest
    coverage error in points."""
    mine = table[table["model"] == candidate].set_index("output")
    out: dict[str, float] = {}
    for o, row in mine.iterrows():
        out.update({f"holdout_{k}_{o}": float(row[k]) for k in ("mae", "r2", "mape", "coverage") if k in row})
    for base in [m for m in table["model"].unique() if m != candidate]:
        theirs = table[table["model"] == base].set_index("output")["mae"]
        gains = {o: float(1 - mine.loc[o, "mae"] / theirs[o]) for o in mine.index if theirs.get(o, 0) > 0}
        out.update({f"holdout_mae_margin_vs_{base}_{o}": g for o, g in gains.items()})
        out[f"holdout_mae_margin_vs_{base}_min"] = min(gains.values())
    if "coverage" in mine:
        out["holdout_cov80_error_pts_max"] = float((100 * (mine["coverage"] - coverage)).abs().max())
    return out


def error_by_horizon(table: pd.DataFrame) -> pd.DataFrame:
    """MAE as a share of the mean actual per model, target and horizon (the error-by-horizon chart's data)."""
    out = table.copy()
    out["target"] = out["output"].str.split("_next_").str[0]
    out["horizon"] = out["output"].str.split("_next_").str[1]
    out["relative_mae"] = out["mae"] / out["mean_actual"]
    return out[["model", "target", "horizon", "mae", "relative_mae", "r2"]]
