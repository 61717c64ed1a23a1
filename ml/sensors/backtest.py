"""Rolling-origin backtest of the forecast candidates, selection by MASE, and the tables and goal numbers.

Also the series preparation they share with `ml.sensors.forecast`: one regular grid per sensor, the values
a model may learn from and the rows that count in the scores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from ml.features import infer_freq
from ml.sensors.forecast_base import season_steps
from ml.sensors.forecast_models import LEVELS, MODEL_ORDER, FittedModel, forecast_params


# --- series preparation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SensorSeries:
    """One sensor on its regular grid: observed values (NaN when missing) and its anomaly-window flags."""

    sensor_id: str
    kind: str | None
    unit: str | None
    step: pd.Timedelta
    timestamps: pd.DatetimeIndex
    observed: np.ndarray
    anomaly: np.ndarray


def split_sensors(series: pd.DataFrame) -> list[SensorSeries]:
    """Per-sensor arrays from a gold `sensor_series` frame (checked: one regular grid per sensor)."""
    missing = sorted({"sensor_id", "timestamp", "value"} - set(series.columns))
    if missing:
        raise ValueError(f"series frame: missing column(s) {missing}")
    if series.empty:
        raise ValueError("series frame: no rows")
    out = []
    for sid, g in series.groupby("sensor_id", sort=True):
        g = g.sort_values("timestamp", kind="stable")
        ts = pd.DatetimeIndex(pd.to_datetime(g["timestamp"]))
        if ts.has_duplicates:
            raise ValueError(f"sensor {sid!r}: repeated timestamp(s) {list(ts[ts.duplicated()][:3])}")
        step = infer_freq(ts.to_series())
        off = ts.to_series().diff().iloc[1:] != step
        if off.any():
            raise ValueError(
                f"sensor {sid!r}: not on a regular {step} grid (first gap at {off.idxmax()}); "
                "put it on one with ml.data.gold.sensor_grid"
            )
        value = pd.to_numeric(g["value"], errors="coerce").to_numpy(dtype=float, copy=True)
        if "is_missing" in g:
            value[g["is_missing"].fillna(False).to_numpy(dtype=bool)] = np.nan
        anomaly = (
            g["is_anomaly"].fillna(False).to_numpy(dtype=bool)
            if "is_anomaly" in g
            else np.zeros(len(g), bool)
        )
        out.append(
            SensorSeries(
                sensor_id=str(sid),
                kind=_first(g, "kind"),
                unit=_first(g, "unit"),
                step=step,
                timestamps=ts,
                observed=value,
                anomaly=anomaly,
            )
        )
    return out


def _first(frame: pd.DataFrame, col: str) -> str | None:
    if col not in frame or frame[col].isna().all():
        return None
    return str(frame[col].dropna().iloc[0])


def mase_scale(values: np.ndarray, season: int) -> float:
    """Hyndman's seasonal MASE scale: mean |y[t] - y[t-m]| over the training part (NaN pairs skipped)."""
    y = np.asarray(values, dtype=float)
    if len(y) <= season:
        return math.nan
    d = np.abs(y[season:] - y[:-season])
    d = d[np.isfinite(d)]
    return float(d.mean()) if len(d) and d.mean() > 0 else math.nan


def resample_series(series: pd.DataFrame, freq: str = "1h") -> pd.DataFrame:
    """Sensors with a finer step averaged onto a coarser regular grid (anomaly flag = any reading flagged).

    Used to bring NAB's 5- and 30-minute files to hourly; sensors already at `freq` pass through unchanged
    in value. Buckets are left-labelled and aligned to midnight.
    """
    target = pd.Timedelta(freq)
    parts = []
    for sid, g in series.sort_values(["sensor_id", "timestamp"], kind="stable").groupby(
        "sensor_id", sort=True
    ):
        step = infer_freq(g["timestamp"])
        if step > target:
            raise ValueError(f"sensor {sid!r}: step {step} is coarser than {target}; no upsampling")
        g = g.set_index("timestamp")
        value = g["value"].astype(float)
        if "is_missing" in g:
            value = value.where(~g["is_missing"].fillna(False).astype(bool))
        mean = value.resample(target).mean()
        out = pd.DataFrame(
            {
                "sensor_id": sid,
                "kind": _first(g, "kind"),
                "unit": _first(g, "unit"),
                "timestamp": mean.index,
                "value": mean.to_numpy(),
                "is_missing": mean.isna().to_numpy(),
            }
        )
        if "is_anomaly" in g:
            flag = g["is_anomaly"].fillna(False).astype(bool).resample(target).max()
            out["is_anomaly"] = (
                flag.reindex(mean.index, fill_value=False).fillna(False).astype(bool).to_numpy()
            )
        if "anomaly_kind" in g:
            kinds = g["anomaly_kind"].resample(target).first().reindex(mean.index).astype(object)
            out["anomaly_kind"] = kinds.where(kinds.notna(), None).to_numpy()
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def fit_values(sensor: SensorSeries, cfg: Mapping) -> np.ndarray:
    """Values a model may learn from: observed readings, blanked inside labelled windows when masking."""
    return (
        np.where(sensor.anomaly, np.nan, sensor.observed) if cfg["mask_anomalies"] else sensor.observed.copy()
    )


def scored_rows(sensor: SensorSeries) -> np.ndarray:
    """Rows that count in the scores: a reading is present and outside every labelled anomaly window."""
    return np.isfinite(sensor.observed) & ~sensor.anomaly


def map_sensors(func: Any, sensors: Sequence[SensorSeries], cfg: Mapping) -> list[Any]:
    """func(sensor, cfg) for every sensor, in sensor order; across `n_jobs` processes when > 1."""
    n_jobs = int(cfg.get("n_jobs") or 1)
    if n_jobs == 1 or len(sensors) < 2:
        return [func(s, cfg) for s in sensors]
    return Parallel(n_jobs=n_jobs)(delayed(func)(s, cfg) for s in sensors)


# --- backtest -------------------------------------------------------------------------------------
def fold_origins(
    n: int, *, horizon: int, folds: int, step: int, min_train: int, sensor_id: str = "?"
) -> list[int]:
    """Chronological positions of the fold origins: the last fold ends at the series end, `step` apart."""
    h = horizon
    origins = [n - h - k * step for k in range(folds - 1, -1, -1)]
    if origins[0] < min_train:
        need = min_train + h + (folds - 1) * step
        raise ValueError(
            f"sensor {sensor_id!r}: {n} steps are too few for {folds} folds of horizon {h} every {step} "
            f"steps after min_train {min_train} (need {need})"
        )
    return origins


def forecast_errors(
    y: np.ndarray, yhat: np.ndarray, bands: Mapping[str, np.ndarray], scale: float
) -> dict[str, float]:
    """MAE, MAPE %, sMAPE %, MASE and 80/95% coverage over the given (already scored-only) points."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    n = len(y)
    if n == 0:
        return {
            "n_scored": 0,
            "mae": math.nan,
            "mape": math.nan,
            "smape": math.nan,
            "mase": math.nan,
            "cov80": math.nan,
            "cov95": math.nan,
        }
    err = np.abs(y - yhat)
    nz = y != 0
    denom = np.abs(y) + np.abs(yhat)
    mae = float(err.mean())
    out = {
        "n_scored": n,
        "mae": mae,
        "mape": float(100 * np.mean(err[nz] / np.abs(y[nz]))) if nz.any() else math.nan,
        "smape": float(100 * np.mean(np.where(denom > 0, 2 * err / np.where(denom > 0, denom, 1), 0.0))),
        "mase": mae / scale if scale and np.isfinite(scale) else math.nan,
    }
    for level in LEVELS:
        inside = (y >= bands[f"lo{level}"]) & (y <= bands[f"hi{level}"])
        out[f"cov{level}"] = float(inside.mean())
    return out


def _backtest_sensor(sensor: SensorSeries, cfg: Mapping) -> tuple[list[dict], list[dict], list[dict]]:
    """Every fold x model of one sensor: forecast rows, score rows, timing rows."""
    n, h = len(sensor.observed), cfg["horizon"]
    m = season_steps(sensor.step, cfg["season"])
    learn, scored = fit_values(sensor, cfg), scored_rows(sensor)
    log = sensor.kind in cfg["log_kinds"]
    fc_rows: list[dict] = []
    score_rows: list[dict] = []
    time_rows: list[dict] = []
    keys = ("horizon", "folds", "step", "min_train")
    origins = fold_origins(n, **{k: cfg[k] for k in keys}, sensor_id=sensor.sensor_id)
    for fold, origin in enumerate(origins):
        lo = 0 if cfg["max_train"] is None else max(0, origin - cfg["max_train"])
        train_vals, train_times = learn[lo:origin], sensor.timestamps[lo:origin]
        scale = mase_scale(np.where(scored[lo:origin], sensor.observed[lo:origin], np.nan), m)
        times = sensor.timestamps[origin : origin + h]
        y, ok = sensor.observed[origin : origin + h], scored[origin : origin + h]
        base = {
            "sensor_id": sensor.sensor_id,
            "kind": sensor.kind,
            "fold": fold,
            "origin": sensor.timestamps[origin],
        }
        for name in cfg["models"]:
            t0 = time.perf_counter()
            try:
                model = FittedModel.fit(name, train_vals, train_times, m, cfg, log)
                bands = model.predict(h, times, None)
                error = None
            except Exception as exc:  # a failing candidate is recorded and left out of selection
                bands = {k: np.full(h, np.nan) for k in ("yhat", "lo80", "hi80", "lo95", "hi95")}
                error = f"{type(exc).__name__}: {exc}"
            time_rows.append({**base, "model": name, "seconds": time.perf_counter() - t0})
            fc_rows.append(
                {
                    **base,
                    "model": name,
                    "h": np.arange(1, h + 1),
                    "timestamp": times,
                    "y": y,
                    "scored": ok,
                    "scale": np.full(h, scale),
                    **bands,
                }
            )
            metrics = forecast_errors(y[ok], bands["yhat"][ok], {k: v[ok] for k, v in bands.items()}, scale)
            if error is not None:
                metrics = {**metrics, **{k: math.nan for k in metrics if k != "n_scored"}}
            score_rows.append({**base, "model": name, "scale": scale, **metrics, "error": error})
    return fc_rows, score_rows, time_rows


@dataclass(frozen=True)
class Backtest:
    """A rolling-origin backtest: forecasts (sensor x model x fold x step), fold scores, fit timings."""

    forecasts: pd.DataFrame
    scores: pd.DataFrame
    timings: pd.DataFrame  # wall-clock seconds per fit+forecast; varies run to run, so kept apart
    params: dict


def backtest(series: pd.DataFrame, params: Mapping[str, Any] | None = None) -> Backtest:
    """Rolling-origin backtest of every candidate on every sensor; each fold trains only before its origin."""
    cfg = forecast_params(params)
    sensors = split_sensors(series)
    results = map_sensors(_backtest_sensor, sensors, cfg)
    fc_parts = [pd.DataFrame(r) for res in results for r in res[0]]
    forecasts = pd.concat(fc_parts, ignore_index=True)
    forecasts = forecasts.astype({c: float for c in ("y", "yhat", "lo80", "hi80", "lo95", "hi95", "scale")})
    forecasts["h"] = forecasts["h"].astype(int)
    forecasts["scored"] = forecasts["scored"].astype(bool)
    scores = pd.DataFrame([row for res in results for row in res[1]])
    timings = pd.DataFrame([row for res in results for row in res[2]])
    cols = [
        "sensor_id",
        "kind",
        "model",
        "fold",
        "origin",
        "h",
        "timestamp",
        "y",
        "yhat",
        "lo80",
        "hi80",
        "lo95",
        "hi95",
        "scored",
        "scale",
    ]
    return Backtest(forecasts[cols], scores, timings, cfg)


# --- selection and tables -------------------------------------------------------------------------
def select_models(scores: pd.DataFrame, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per sensor, the model with the lowest mean backtest MASE; within `select_tolerance`, the simpler one."""
    cfg = forecast_params(params)
    tol = float(cfg["select_tolerance"])
    rows = []
    for sid, g in scores.groupby("sensor_id", sort=True):
        failed = g.groupby("model")["error"].agg(lambda s: s.notna().any())
        per_model = g.groupby("model")["mase"].mean().where(~failed)  # folds with nothing scored: skipped
        per_model = per_model.reindex([m for m in MODEL_ORDER if m in per_model.index])
        kind = g["kind"].iloc[0]
        finite = per_model.dropna()
        if finite.empty:  # no MASE anywhere (e.g. a constant training part): the simplest model that ran
            ran = [m for m in per_model.index if not failed[m]]
            if not ran:
                raise ValueError(f"sensor {sid!r}: every candidate failed in the backtest")
            rows.append({"sensor_id": sid, "kind": kind, "model": ran[0], "mase": math.nan})
            continue
        best = finite.min()
        chosen = next(m for m in finite.index if finite[m] <= best + tol)
        rows.append({"sensor_id": sid, "kind": kind, "model": chosen, "mase": float(finite[chosen])})
    return pd.DataFrame(rows, columns=["sensor_id", "kind", "model", "mase"])


def as_selection(selection: pd.DataFrame | Mapping[str, str]) -> dict[str, str]:
    if isinstance(selection, pd.DataFrame):
        return dict(zip(selection["sensor_id"], selection["model"], strict=True))
    return dict(selection)


def _sensor_model_metrics(forecasts: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per sensor x model: MAE/MAPE/sMAPE/coverage pooled over scored points, MASE = mean over folds."""
    rows = []
    failed = scores.groupby(["sensor_id", "model"])["error"].agg(lambda s: int(s.notna().sum()))
    fold_mase = scores.groupby(["sensor_id", "model"])["mase"].mean().where(failed == 0)
    for (sid, model), g in forecasts[forecasts["scored"]].groupby(["sensor_id", "model"], sort=True):
        bands = {c: g[c].to_numpy() for c in ("lo80", "hi80", "lo95", "hi95")}
        m = forecast_errors(g["y"].to_numpy(), g["yhat"].to_numpy(), bands, math.nan)
        m["mase"] = float(fold_mase.get((sid, model), math.nan))
        if failed.get((sid, model), 0):
            m = {**m, **{k: math.nan for k in ("mae", "mape", "smape", "cov80", "cov95")}}
        rows.append(
            {
                "sensor_id": sid,
                "kind": g["kind"].iloc[0],
                "model": model,
                "n_folds": int(g["fold"].nunique()),
                "failed_folds": int(failed.get((sid, model), 0)),
                **m,
            }
        )
    cols = [
        "sensor_id",
        "kind",
        "model",
        "n_folds",
        "failed_folds",
        "n_scored",
        "mae",
        "mape",
        "smape",
        "mase",
        "cov80",
        "cov95",
    ]
    return pd.DataFrame(rows, columns=cols)


def backtest_table(bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per sensor x candidate: pooled MAE/MAPE/sMAPE/coverage, mean fold MASE, and which model was chosen."""
    chosen = as_selection(select_models(bt.scores, bt.params) if selection is None else selection)
    table = _sensor_model_metrics(bt.forecasts, bt.scores)
    table.insert(2, "chosen_model", table["sensor_id"].map(chosen))
    table.insert(4, "is_chosen", table["model"] == table["chosen_model"])
    return table.reset_index(drop=True)


def _overall_rows(table: pd.DataFrame, label: str, forecasts: pd.DataFrame) -> dict[str, Any]:
    """One overall row: MASE mean/median/share < 1, MAPE (all, temperature), pooled interval coverage."""
    temp = table[table["kind"] == "temperature"]
    pts = forecasts[forecasts["scored"]]
    return {
        "model": label,
        "n_sensors": len(table),
        "mase_mean": table["mase"].mean(),
        "mase_median": table["mase"].median(),
        "share_mase_lt1": float((table["mase"] < 1).mean()) if len(table) else math.nan,
        "mape_mean": table["mape"].mean(),
        "smape_mean": table["smape"].mean(),
        "mape_temperature": temp["mape"].mean() if len(temp) else math.nan,
        "cov80": float(((pts["y"] >= pts["lo80"]) & (pts["y"] <= pts["hi80"])).mean())
        if len(pts)
        else math.nan,
        "cov95": float(((pts["y"] >= pts["lo95"]) & (pts["y"] <= pts["hi95"])).mean())
        if len(pts)
        else math.nan,
    }


def chosen_points(forecasts: pd.DataFrame, chosen: Mapping[str, str]) -> pd.DataFrame:
    return forecasts[forecasts["model"] == forecasts["sensor_id"].map(chosen)]


def overall_table(bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per candidate, for the per-sensor choice, and for a holdout check of that choice: the goal numbers.

    `selected` scores each sensor's chosen model on the same folds it was chosen on (optimistic);
    `selected_holdout` chooses on the first half of the folds and scores on the second half (honest).
    """
    chosen = as_selection(select_models(bt.scores, bt.params) if selection is None else selection)
    per = _sensor_model_metrics(bt.forecasts, bt.scores)
    rows = [
        _overall_rows(per[per["model"] == m], m, bt.forecasts[bt.forecasts["model"] == m])
        for m in bt.params["models"]
    ]
    picked = per[per["model"] == per["sensor_id"].map(chosen)]
    rows.append(_overall_rows(picked, "selected", chosen_points(bt.forecasts, chosen)))
    folds = int(bt.scores["fold"].max()) + 1
    if folds >= 2 and len(bt.params["models"]) > 1:
        half = folds // 2
        early = select_models(bt.scores[bt.scores["fold"] < half], bt.params)
        late_fc, late_sc = bt.forecasts[bt.forecasts["fold"] >= half], bt.scores[bt.scores["fold"] >= half]
        late = _sensor_model_metrics(late_fc, late_sc)
        pick = as_selection(early)
        rows.append(
            _overall_rows(
                late[late["model"] == late["sensor_id"].map(pick)],
                "selected_holdout",
                chosen_points(late_fc, pick),
            )
        )
    return pd.DataFrame(rows)


def goal_metrics(
    bt: Backtest, selection: pd.DataFrame | Mapping[str, str] | None = None
) -> dict[str, float | None]:
    """The forecast goals as flat numbers for metrics JSON (selected model per sensor, and holdout check)."""
    overall = overall_table(bt, selection).set_index("model")
    out: dict[str, float | None] = {}
    for label in overall.index:
        row = overall.loc[label]
        for key in ("share_mase_lt1", "mase_median", "mape_temperature", "cov80", "cov95"):
            value = float(row[key])
            out[f"{label}.{key}"] = round(value, 6) if np.isfinite(value) else None
    return out
