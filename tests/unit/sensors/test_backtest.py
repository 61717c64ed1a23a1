"""Backtest behaviour: folds never peek, MASE and the other errors, anomalies never scored, selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from ml.sensors import backtest, forecast_models

# Small, fast settings: daily season (24 h) so three weeks of hourly data is plenty; one process.
FAST = {"season": 24, "horizon": 24, "max_horizon": 48, "folds": 3, "step": 24, "min_train": 168, "n_jobs": 1}


@settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: a failure must stay fast
)
@given(fold=st.integers(0, 2), seed=st.integers(0, 2**16), shift=st.floats(-50, 50))
def test_backtest_never_trains_on_data_at_or_after_the_origin(hourly, fold, seed, shift):
    """Perturbing every reading from fold k's origin on leaves folds 0..k's forecasts untouched."""
    series = hourly(trend=0.01)
    params = {**FAST, "models": ["seasonal_naive", "ets"]}
    base = backtest.backtest(series, params)
    origin = base.scores.loc[base.scores["fold"] == fold, "origin"].iloc[0]
    after = series["timestamp"] >= origin
    rng = np.random.default_rng(seed)
    changed = series.assign(
        value=series["value"].where(~after, series["value"] + shift + rng.normal(0, 5, len(series)))
    )
    bumped = backtest.backtest(changed, params)
    cols = ["yhat", "lo80", "hi80", "lo95", "hi95", "scale"]
    keep = base.forecasts["fold"] <= fold
    pd.testing.assert_frame_equal(
        base.forecasts.loc[keep, cols], bumped.forecasts.loc[keep, cols], check_exact=True
    )


def test_each_fold_sees_only_readings_before_its_origin(hourly, monkeypatch):
    seen: list[tuple[pd.Timestamp, int]] = []
    real_fit = forecast_models.SeasonalNaiveModel.fit.__func__

    def spy(cls, values, timestamps, season, cfg):
        seen.append((timestamps.max(), len(values)))
        return real_fit(cls, values, timestamps, season, cfg)

    monkeypatch.setattr(forecast_models.SeasonalNaiveModel, "fit", classmethod(spy))
    bt = backtest.backtest(hourly(), {**FAST, "models": ["seasonal_naive"], "folds": 4})
    origins = bt.scores.sort_values("fold")["origin"].tolist()
    assert len(seen) == 4
    for (last_seen, n), origin in zip(seen, origins, strict=True):
        assert last_seen == origin - pd.Timedelta("1h") and n == (
            origin - pd.Timestamp("2024-01-01")
        ) / pd.Timedelta("1h")
    assert sorted(origins) == origins and bt.forecasts.groupby("fold")["timestamp"].min().tolist() == origins


def test_too_short_series_fails_naming_the_sensor(hourly):
    with pytest.raises(ValueError, match="cpu-01.*too few"):
        backtest.backtest(hourly(days=8), {**FAST, "folds": 3})


def test_seasonal_naive_mase_is_zero_on_a_pure_seasonal_series(hourly):
    """Noise only in the first days (so the MASE scale is defined); after that the season repeats exactly."""
    series = hourly(noise=1.0, noisy_until=72)
    bt = backtest.backtest(series, {**FAST, "models": ["seasonal_naive"]})
    assert bt.scores["scale"].gt(0).all()
    assert bt.scores["mase"].max() < 1e-9 and bt.scores["cov95"].eq(1).all()


def test_ets_beats_seasonal_naive_on_a_trended_seasonal_series(hourly):
    series = hourly(trend=0.05, noise=0.2)
    bt = backtest.backtest(series, {**FAST, "models": ["seasonal_naive", "ets"]})
    mase = bt.scores.groupby("model")["mase"].mean()
    assert mase["ets"] < 0.5 < 0.8 < mase["seasonal_naive"]


def test_anomaly_windows_and_missing_readings_are_never_scored(hourly):
    series = hourly()
    last = series.index[-24:]
    series.loc[last[:6], "is_anomaly"] = True
    series.loc[last[:6], "value"] += 100  # a spike inside the labelled window
    series.loc[last[10], ["value", "is_missing"]] = [np.nan, True]
    bt = backtest.backtest(series, {**FAST, "models": ["seasonal_naive"]})
    final = bt.forecasts[bt.forecasts["fold"] == 2]
    assert final["scored"].sum() == 17 and bt.scores.loc[bt.scores["fold"] == 2, "n_scored"].item() == 17
    assert bt.scores["mase"].max() < 2  # the spike did not enter any score


def test_backtest_is_deterministic_and_the_same_across_processes(hourly):
    series = pd.concat([hourly(), hourly("mem-01", trend=0.02, seed=3)], ignore_index=True)
    params = {**FAST, "models": ["seasonal_naive", "ets", "prophet"]}
    a, b = backtest.backtest(series, params), backtest.backtest(series, {**params, "n_jobs": 2})
    pd.testing.assert_frame_equal(a.forecasts, b.forecasts, check_exact=True)
    pd.testing.assert_frame_equal(a.scores, b.scores, check_exact=True)


# --- selection --------------------------------------------------------------------------------------
def scores_frame(rows: dict[str, dict[str, float | None]]) -> pd.DataFrame:
    """Two folds per (sensor, model) with the given mean MASE (None = the model failed)."""
    out = []
    for sid, by_model in rows.items():
        for model, mase in by_model.items():
            for fold, d in enumerate((-0.01, 0.01)):
                failed = mase is None
                out.append(
                    {
                        "sensor_id": sid,
                        "kind": "cpu_pct",
                        "model": model,
                        "fold": fold,
                        "mase": np.nan if failed else mase + d,
                        "error": "boom" if failed else None,
                    }
                )
    return pd.DataFrame(out)


def test_selection_takes_lowest_backtest_mase_ties_go_to_the_simpler_model():
    scores = scores_frame(
        {
            "a": {"seasonal_naive": 1.0, "ets": 0.5, "prophet": 0.7},
            "b": {"seasonal_naive": 0.80, "ets": 0.79, "prophet": 0.9},  # within tolerance: simpler wins
            "c": {"seasonal_naive": 1.2, "ets": None, "prophet": 1.1},  # ets failed a fold: out
        }
    )
    chosen = backtest.select_models(scores, {"select_tolerance": 0.02}).set_index("sensor_id")["model"]
    assert chosen.to_dict() == {"a": "ets", "b": "seasonal_naive", "c": "prophet"}
    strict = backtest.select_models(scores, {"select_tolerance": 0.0}).set_index("sensor_id")["model"]
    assert strict["b"] == "ets"


# --- pieces ------------------------------------------------------------------------------------------
def test_forecast_errors_follow_their_definitions():
    y, yhat = np.array([10.0, 20.0]), np.array([12.0, 18.0])
    bands = {"lo80": yhat - 1, "hi80": yhat + 1, "lo95": yhat - 3, "hi95": yhat + 3}
    m = backtest.forecast_errors(y, yhat, bands, scale=4.0)
    assert m["mae"] == 2 and m["mase"] == 0.5 and m["mape"] == pytest.approx(15.0)
    assert m["smape"] == pytest.approx(100 * (2 * 2 / 22 + 2 * 2 / 38) / 2)
    assert m["cov80"] == 0 and m["cov95"] == 1
    assert backtest.mase_scale(np.array([1.0, 2, 3, 5, np.nan, 9]), 2) == pytest.approx(
        np.mean([3 - 1, 5 - 2, 9 - 5])
    )


def test_resample_averages_onto_the_coarser_grid_and_keeps_anomaly_flags(hourly):
    fine = hourly(days=1).assign(timestamp=pd.date_range("2024-01-01", periods=24, freq="5min"))
    fine.loc[3, "is_anomaly"] = True
    out = backtest.resample_series(fine, "1h")
    assert len(out) == 2 and out["value"].iloc[0] == pytest.approx(fine["value"].iloc[:12].mean())
    assert out["is_anomaly"].tolist() == [True, False]
