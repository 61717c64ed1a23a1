"""Per-sensor forecasting: the `SensorForecaster` artifact (a model chosen per sensor, saved without pickle).

Its pieces: params and candidate models in `ml.sensors.forecast_models`, backtest, selection and tables in
`ml.sensors.backtest`, charts in `ml.sensors.charts`. Frames in, frames out; the only file I/O is
`SensorForecaster.save` / `.load`. The choices, in one place (values from params.yaml's `forecast:`):

- **Season.** Every model works on each sensor's own grid step. The seasonal period is `season` (default
  `7D`, i.e. lag 168 on hourly data): the series have a weekday/weekend pattern (CPU and request rate drop
  at weekends), so a lag-24 naive forecast predicts Monday from Sunday and Saturday from Friday (measured on
  the synthetic gold data: mean MASE 1.77 for lag 24 vs 1.11 for lag 168). The same period is the MASE
  scale's lag (Hyndman's seasonal MASE), so MASE < 1 means "beats last week's same hour in-sample".
- **Candidates** (simplest first; `MODEL_ORDER`): `seasonal_naive` (y[t+h] = y[t+h-m·k]), `ets`
  (statsmodels `ETSModel`, default additive error, damped additive trend, additive season of period m,
  heuristic initial states, smoothing parameters by maximum likelihood) and `prophet` (linear trend,
  weekly seasonality and a daily profile conditioned on weekday/weekend; MAP fit, seeded, deterministic).
  SARIMAX is not a candidate: with Fourier regressors and AR(1/2) errors it took 1-27 s per fit here and
  often failed to converge; a seasonal order of 168 is out of reach.
- **Transform.** Kinds in `log_kinds` (default: request_rate, whose daily swing and noise scale with the
  level) are modelled on log(y) and forecasts transformed back (the point forecast is then the median).
- **Intervals** are yhat ± z·sd_h (z for 80% and 95%, in model space): seasonal naive sd_h = RMSE of its
  in-sample one-season-ahead errors · sqrt(1 + (h-1)//m) (FPP3); ETS sd_h is its state-space forecast
  variance; Prophet sd is its fitted observation noise (its trend-change simulation is left out: it is
  random and negligible over a horizon of hours).
- **Missing readings and labelled anomaly windows** (`mask_anomalies`, default on) are blanked before
  fitting, so a spike is never copied into next week's naive forecast; ETS and the naive model fill the
  blanks with `fill_gaps` (seasonal profile + interpolated remainder), Prophet skips them natively.
  **Scores skip them too**: metrics are computed only at readings that are present and outside every
  labelled window (a forecaster is judged on normal behaviour; the anomaly detector on the rest).
- **Backtest.** Rolling origin, `folds` origins `step` steps apart, the last one `horizon` steps before
  the series end; each fold fits on the (at most `max_train`) steps before its origin only. The default
  step 25 spreads the origins over 14 different hours of the day without overlapping forecast windows.
- **Metrics** per fold: MAE, MAPE (%, rows with y != 0), sMAPE (%, 200·|e|/(|y|+|ŷ|)), MASE = MAE / scale
  with scale = mean |y[t] - y[t-m]| over the fold's training part (Hyndman & Koehler 2006: in-sample MAE of
  the seasonal naive one-season-ahead forecast; pairs with a blank end are skipped) and interval coverage.
- **Selection** per sensor: lowest mean MASE across backtest folds (a model failing any fold is out);
  a model within `select_tolerance` MASE of a simpler one loses to it. Never by in-sample fit. Then the
  chosen model is refitted on the full series.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.sensors.backtest import (
    Backtest,
    SensorSeries,
    as_selection,
    backtest,
    fit_values,
    map_sensors,
    select_models,
    split_sensors,
)
from ml.sensors.forecast_base import is_int, season_steps
from ml.sensors.forecast_models import MODEL_KEYS, MODEL_ORDER, FittedModel, checked_params, forecast_params

FORECAST_COLUMNS = ["timestamp", "yhat", "lo80", "hi80", "lo95", "hi95", "model"]
INFO_COLUMNS = [
    "sensor_id",
    "kind",
    "unit",
    "model",
    "log",
    "step_seconds",
    "season",
    "train_start",
    "train_end",
    "n_train",
]
ARTIFACT_FORMAT = "opslab-sensor-forecast"
ARTIFACT_VERSION = 1


# --- the artifact ---------------------------------------------------------------------------------
class SensorForecaster:
    """Chosen model per sensor, refitted on the full series; forecasts without refitting; saved without pickle."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}  # set by fit or load
        self.backtest_: Backtest | None = None
        self.selection_: pd.DataFrame | None = None
        self._info: dict[str, dict[str, Any]] = {}
        self._models: dict[str, Any] = {}

    # fitting ---------------------------------------------------------------------------------------
    def fit(
        self,
        series: pd.DataFrame,
        params: Mapping[str, Any] | None = None,
        selection: pd.DataFrame | Mapping[str, str] | None = None,
    ) -> SensorForecaster:
        """Choose a model per sensor (by backtest unless `selection` is given) and refit it on the full series."""
        cfg = forecast_params(params)
        sensors = split_sensors(series)
        if selection is None:
            if len(cfg["models"]) == 1:
                selection = {s.sensor_id: cfg["models"][0] for s in sensors}
            else:
                self.backtest_ = backtest(series, cfg)
                selection = select_models(self.backtest_.scores, cfg)
        chosen = as_selection(selection)
        unknown = sorted({s.sensor_id for s in sensors} - set(chosen))
        if unknown:
            raise KeyError(f"selection has no model for sensor(s) {unknown}")
        bad = sorted({m for m in chosen.values() if m not in MODEL_ORDER})
        if bad:
            raise ValueError(f"selection names unknown model(s) {bad}; known: {list(MODEL_ORDER)}")
        fitted = map_sensors(_fit_final, [s for s in sensors], {**cfg, "_chosen": chosen})
        self.params = cfg
        self.selection_ = (
            selection
            if isinstance(selection, pd.DataFrame)
            else pd.DataFrame({"sensor_id": list(chosen), "model": list(chosen.values())})
        )
        self._info = {info["sensor_id"]: info for info, _ in fitted}
        self._models = {info["sensor_id"]: model for info, model in fitted}
        return self

    @property
    def sensor_ids(self) -> list[str]:
        """Sensors this forecaster can answer for."""
        return sorted(self._info)

    def info(self) -> pd.DataFrame:
        """One row per sensor: kind, unit, chosen model, grid step, season, training start/end and length."""
        return pd.DataFrame([self._info[s] for s in self.sensor_ids], columns=INFO_COLUMNS)

    # forecasting -----------------------------------------------------------------------------------
    def forecast(
        self,
        sensor_id: str,
        horizon: int | None = None,
        history: pd.DataFrame | None = None,
        max_history_steps: int | None = None,
    ) -> pd.DataFrame:
        """Point forecast and 80/95% intervals for steps 1..horizon after the training end (or after `history`).

        `history` (columns timestamp, value; optional sensor_id, is_missing, is_anomaly) holds readings after
        the training end; rows at or before it are ignored. ETS and seasonal naive update their state with it
        using the fitted parameters (no refit); Prophet forecasts are a function of time, so only the
        forecast timestamps move. The model replays every step from the training end to the last history
        reading, so `max_history_steps` (the service passes params serving.max_history_steps) bounds how far
        history may reach: beyond it, a ValueError naming the history.
        """
        if sensor_id not in self._info:
            known = ", ".join(self.sensor_ids[:5]) + (", ..." if len(self._info) > 5 else "")
            raise KeyError(
                f"unknown sensor_id {sensor_id!r}; this forecaster knows {len(self._info)} sensor(s): {known}"
            )
        horizon = self.params["horizon"] if horizon is None else horizon
        max_h = self.params["max_horizon"]
        if not is_int(horizon) or not 1 <= horizon <= max_h:
            raise ValueError(
                f"horizon must be an integer in 1..{max_h} (steps), got {horizon!r} for sensor {sensor_id!r}"
            )
        info = self._info[sensor_id]
        step = pd.Timedelta(seconds=info["step_seconds"])
        extra = None if history is None else self._history_values(sensor_id, history, max_history_steps)
        end = pd.Timestamp(info["train_end"]) + step * (0 if extra is None else len(extra))
        times = pd.date_range(end + step, periods=int(horizon), freq=step)
        model = self._models[sensor_id]
        bands = model.predict(int(horizon), times, extra)
        out = pd.DataFrame({"timestamp": times, **{k: np.asarray(v, dtype=float) for k, v in bands.items()}})
        out["model"] = info["model"]
        return out[FORECAST_COLUMNS]

    def _history_values(
        self, sensor_id: str, history: pd.DataFrame, max_steps: int | None = None
    ) -> np.ndarray:
        """Readings after the training end on the sensor's grid (NaN for gaps, masked anomalies)."""
        missing = sorted({"timestamp", "value"} - set(history.columns))
        if missing:
            raise ValueError(f"history for sensor {sensor_id!r}: missing column(s) {missing}")
        if "sensor_id" in history:
            other = sorted(set(history["sensor_id"].astype(str)) - {sensor_id})
            if other:
                raise ValueError(f"history for sensor {sensor_id!r} has rows of other sensor(s) {other[:5]}")
        info = self._info[sensor_id]
        step = pd.Timedelta(seconds=info["step_seconds"])
        train_end = pd.Timestamp(info["train_end"])
        ts = pd.to_datetime(history["timestamp"])
        keep = (ts > train_end).to_numpy()
        if not keep.any():
            return np.empty(0)
        h = history.loc[keep]
        ts = ts[keep]
        offsets = (ts - train_end) / step
        if max_steps is not None and offsets.max() > max_steps:
            raise ValueError(
                f"history for sensor {sensor_id!r}: timestamp {ts[offsets.to_numpy() > max_steps].iloc[0]} is "
                f"{int(offsets.max())} steps of {step} after the training end {train_end}; at most {max_steps} "
                "are replayed (send recent readings only, or use a newer model)"
            )
        off_grid = (offsets != np.round(offsets)).to_numpy()
        if off_grid.any():
            raise ValueError(
                f"history for sensor {sensor_id!r}: timestamp {ts[off_grid].iloc[0]} is not on its {step} grid "
                f"from {train_end}"
            )
        values = pd.to_numeric(h["value"], errors="coerce").to_numpy(dtype=float, copy=True)
        if "is_missing" in h:
            values[h["is_missing"].fillna(False).to_numpy(dtype=bool)] = np.nan
        if self.params["mask_anomalies"] and "is_anomaly" in h:
            values[h["is_anomaly"].fillna(False).to_numpy(dtype=bool)] = np.nan
        out = np.full(int(offsets.max()), np.nan)
        idx = offsets.to_numpy(dtype=float).astype(int) - 1
        order = np.argsort(ts.to_numpy(), kind="stable")  # a repeated timestamp: the later row stands
        out[idx[order]] = values[order]
        return out

    # persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write manifest.json (params, per-sensor info), models.json (model states) and series.parquet."""
        if not self._models:
            raise ValueError("nothing to save: fit the forecaster first")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": ARTIFACT_FORMAT,
            "version": ARTIFACT_VERSION,
            "params": {k: self.params[k] for k in MODEL_KEYS},
            "sensors": [self._info[s] for s in self.sensor_ids],
        }
        states = {sid: self._models[sid].state() for sid in self.sensor_ids}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (out / "models.json").write_text(json.dumps(states, indent=1, sort_keys=True) + "\n")
        parts = []
        for sid in self.sensor_ids:  # readings ETS / seasonal naive rebuild their state from (model space)
            values, info = self._models[sid].values, self._info[sid]
            if values is not None:
                step = pd.Timedelta(seconds=info["step_seconds"])
                times = pd.date_range(info["train_start"], periods=len(values), freq=step)
                parts.append(pd.DataFrame({"sensor_id": sid, "timestamp": times, "value": values}))
        empty = {"sensor_id": pd.Series(dtype=object), "timestamp": pd.Series(dtype="datetime64[ns]")}
        series = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({**empty, "value": []})
        series.to_parquet(out / "series.parquet", index=False)
        return out

    @classmethod
    def load(cls, path: str | Path) -> SensorForecaster:
        """Rebuild a saved forecaster from its JSON and parquet files (no refit, no pickle)."""
        src = Path(path)
        manifest_path = src / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{src}: no manifest.json (not a saved SensorForecaster)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != ARTIFACT_FORMAT or manifest.get("version") != ARTIFACT_VERSION:
            raise ValueError(
                f"{src}: format {manifest.get('format')!r} v{manifest.get('version')}, expected {ARTIFACT_FORMAT!r} v{ARTIFACT_VERSION}"
            )
        states = json.loads((src / "models.json").read_text())
        series = pd.read_parquet(src / "series.parquet")
        values = {
            sid: g.sort_values("timestamp")["value"].to_numpy(dtype=float)
            for sid, g in series.groupby("sensor_id")
        }
        self = cls()
        self.params = checked_params(manifest["params"])  # as saved: params.yaml is not read
        self._info = {info["sensor_id"]: info for info in manifest["sensors"]}
        for sid, state in states.items():
            self._models[sid] = FittedModel.from_state(state, values.get(sid))
        return self


def _fit_final(sensor: SensorSeries, cfg: Mapping) -> tuple[dict[str, Any], Any]:
    """Refit one sensor's chosen model on its full series (or the last `max_train` steps)."""
    name = cfg["_chosen"][sensor.sensor_id]
    m = season_steps(sensor.step, cfg["season"])
    values = fit_values(sensor, cfg)
    lo = 0 if cfg["max_train"] is None else max(0, len(values) - cfg["max_train"])
    log = sensor.kind in cfg["log_kinds"]
    model = FittedModel.fit(name, values[lo:], sensor.timestamps[lo:], m, cfg, log)
    info = {
        "sensor_id": sensor.sensor_id,
        "kind": sensor.kind,
        "unit": sensor.unit,
        "model": name,
        "log": log,
        "step_seconds": sensor.step.total_seconds(),
        "season": m,
        "train_start": sensor.timestamps[lo].isoformat(),
        "train_end": sensor.timestamps[-1].isoformat(),
        "n_train": len(values) - lo,
    }
    return info, model
