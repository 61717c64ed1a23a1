"""Forecasting behaviour: interval shape, a backtest that never peeks, MASE, selection, artifact round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from ml.sensors import forecast as fc

# Small, fast settings: daily season (24 h) so three weeks of hourly data is plenty.
FAST = {"season": 24, "horizon": 24, "max_horizon": 48, "folds": 3, "step": 24, "min_train": 168}
BANDS = ["lo95", "lo80", "yhat", "hi80", "hi95"]


def hourly(
    sensor_id: str = "cpu-01",
    *,
    days: int = 21,
    trend: float = 0.0,
    noise: float = 0.3,
    kind: str = "cpu_pct",
    level: float = 50.0,
    seed: int = 0,
    noisy_until: int | None = None,
) -> pd.DataFrame:
    """A daily sine (+ trend, + Gaussian noise) on an hourly grid, as a gold `sensor_series` frame."""
    n = 24 * days
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    eps = noise * rng.standard_normal(n)
    if noisy_until is not None:
        eps[noisy_until:] = 0.0
    value = level + 10 * np.sin(2 * np.pi * t / 24) + trend * t + eps
    return pd.DataFrame(
        {
            "sensor_id": sensor_id,
            "kind": kind,
            "unit": "pct",
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="1h"),
            "value": value,
            "is_missing": False,
            "is_anomaly": False,
            "anomaly_kind": None,
        }
    )


def check_forecast(frame: pd.DataFrame, start: pd.Timestamp, horizon: int, step: str = "1h") -> None:
    assert list(frame.columns) == fc.FORECAST_COLUMNS
    assert len(frame) == horizon
    expected = pd.date_range(start + pd.Timedelta(step), periods=horizon, freq=step)
    assert (pd.DatetimeIndex(frame["timestamp"]) == expected).all()
    assert not frame[BANDS].isna().any().any()
    for lower, upper in zip(BANDS, BANDS[1:], strict=False):
        assert (frame[lower] <= frame[upper]).all(), (lower, upper)


@pytest.fixture(scope="module")
def three_models() -> tuple[pd.DataFrame, fc.SensorForecaster]:
    """One sensor per candidate (selection fixed), one of them log-transformed (request rate)."""
    series = pd.concat(
        [
            hourly("cpu-01"),
            hourly("mem-01", trend=0.02, kind="memory_pct", seed=1),
            hourly("req-01", kind="request_rate", level=80, seed=2),
        ],
        ignore_index=True,
    )
    chosen = {"cpu-01": "seasonal_naive", "mem-01": "ets", "req-01": "prophet"}
    return series, fc.SensorForecaster().fit(series, FAST, selection=chosen)


# --- forecasts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sensor_id", ["cpu-01", "mem-01", "req-01"])
def test_forecast_continues_the_grid_with_nested_intervals(three_models, sensor_id):
    series, model = three_models
    out = model.forecast(sensor_id, 24)
    check_forecast(out, series["timestamp"].max(), 24)
    assert set(out["model"]) == {model.info().set_index("sensor_id").loc[sensor_id, "model"]}


def test_info_records_training_end_step_and_transform(three_models):
    series, model = three_models
    info = model.info().set_index("sensor_id")
    assert (pd.to_datetime(info["train_end"]) == series["timestamp"].max()).all()
    assert (info["step_seconds"] == 3600).all() and (info["season"] == 24).all()
    assert info["log"].to_dict() == {"cpu-01": False, "mem-01": False, "req-01": True}


def test_unknown_sensor_and_bad_horizon_are_named(three_models):
    _, model = three_models
    with pytest.raises(KeyError, match="nope-01"):
        model.forecast("nope-01", 24)
    for bad in (0, 49, 2.5, True, "24"):
        with pytest.raises(ValueError, match=r"horizon must be an integer in 1\.\.48"):
            model.forecast("cpu-01", bad)


def test_history_moves_the_forecast_without_refitting(three_models, monkeypatch):
    series, model = three_models
    end = series["timestamp"].max()
    ts = pd.date_range(end + pd.Timedelta("1h"), periods=30, freq="1h")
    history = pd.DataFrame({"timestamp": ts, "value": 80 + 10 * np.sin(2 * np.pi * np.arange(1, 31) / 24)})

    def no_refit(*args, **kwargs):
        raise AssertionError("forecast must not refit")

    for cls in (fc._SeasonalNaive, fc._Ets, fc._Prophet):
        monkeypatch.setattr(cls, "fit", no_refit)
    for sid in ("cpu-01", "mem-01"):
        before, after = model.forecast(sid, 24), model.forecast(sid, 24, history=history)
        check_forecast(after, ts[-1], 24)
        assert after["yhat"].mean() > before["yhat"].mean() + 15  # the level moved up by ~30
    naive = model.forecast("cpu-01", 24, history=history)  # seasonal naive: the latest day of history
    np.testing.assert_allclose(naive["yhat"], history["value"].iloc[-24:].to_numpy())
    check_forecast(model.forecast("req-01", 24, history=history), ts[-1], 24)  # Prophet: times move only
    stale = history.assign(timestamp=history["timestamp"] - pd.Timedelta("30h"))  # all at/before train end
    pd.testing.assert_frame_equal(model.forecast("mem-01", 24, history=stale), model.forecast("mem-01", 24))


def test_history_off_grid_or_of_another_sensor_is_refused(three_models):
    series, model = three_models
    end = series["timestamp"].max()
    with pytest.raises(ValueError, match="mem-01.*not on its"):
        model.forecast(
            "mem-01", 24, history=pd.DataFrame({"timestamp": [end + pd.Timedelta("90min")], "value": [1.0]})
        )
    other = pd.DataFrame({"sensor_id": ["cpu-01"], "timestamp": [end + pd.Timedelta("1h")], "value": [1.0]})
    with pytest.raises(ValueError, match="cpu-01"):
        model.forecast("mem-01", 24, history=other)


def test_save_load_round_trip_gives_identical_forecasts_without_pickle(three_models, tmp_path):
    series, model = three_models
    model.save(tmp_path / "fc")
    files = sorted(p.name for p in (tmp_path / "fc").iterdir())
    assert files == ["manifest.json", "models.json", "series.parquet"]
    loaded = fc.SensorForecaster.load(tmp_path / "fc")
    end = series["timestamp"].max()
    history = pd.DataFrame(
        {
            "timestamp": pd.date_range(end + pd.Timedelta("1h"), periods=5, freq="1h"),
            "value": [51, 55, np.nan, 60, 58.0],
        }
    )
    for sid in model.sensor_ids:
        pd.testing.assert_frame_equal(loaded.forecast(sid, 48), model.forecast(sid, 48), check_exact=True)
        pd.testing.assert_frame_equal(
            loaded.forecast(sid, 24, history=history),
            model.forecast(sid, 24, history=history),
            check_exact=True,
        )
    pd.testing.assert_frame_equal(loaded.info(), model.info())


# --- backtest ---------------------------------------------------------------------------------------
@settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: a failure must stay fast
)
@given(fold=st.integers(0, 2), seed=st.integers(0, 2**16), shift=st.floats(-50, 50))
def test_backtest_never_trains_on_data_at_or_after_the_origin(fold, seed, shift):
    """Perturbing every reading from fold k's origin on leaves folds 0..k's forecasts untouched."""
    series = hourly(trend=0.01)
    params = {**FAST, "models": ["seasonal_naive", "ets"]}
    base = fc.backtest(series, params)
    origin = base.scores.loc[base.scores["fold"] == fold, "origin"].iloc[0]
    after = series["timestamp"] >= origin
    rng = np.random.default_rng(seed)
    changed = series.assign(
        value=series["value"].where(~after, series["value"] + shift + rng.normal(0, 5, len(series)))
    )
    bumped = fc.backtest(changed, params)
    cols = ["yhat", "lo80", "hi80", "lo95", "hi95", "scale"]
    keep = base.forecasts["fold"] <= fold
    pd.testing.assert_frame_equal(
        base.forecasts.loc[keep, cols], bumped.forecasts.loc[keep, cols], check_exact=True
    )


def test_each_fold_sees_only_readings_before_its_origin(monkeypatch):
    seen: list[tuple[pd.Timestamp, int]] = []
    real_fit = fc._SeasonalNaive.fit.__func__

    def spy(cls, values, timestamps, season, cfg):
        seen.append((timestamps.max(), len(values)))
        return real_fit(cls, values, timestamps, season, cfg)

    monkeypatch.setattr(fc._SeasonalNaive, "fit", classmethod(spy))
    bt = fc.backtest(hourly(), {**FAST, "models": ["seasonal_naive"], "folds": 4})
    origins = bt.scores.sort_values("fold")["origin"].tolist()
    assert len(seen) == 4
    for (last_seen, n), origin in zip(seen, origins, strict=True):
        assert last_seen == origin - pd.Timedelta("1h") and n == (
            origin - pd.Timestamp("2024-01-01")
        ) / pd.Timedelta("1h")
    assert sorted(origins) == origins and bt.forecasts.groupby("fold")["timestamp"].min().tolist() == origins


def test_too_short_series_fails_naming_the_sensor():
    with pytest.raises(ValueError, match="cpu-01.*too few"):
        fc.backtest(hourly(days=8), {**FAST, "folds": 3})


def test_seasonal_naive_mase_is_zero_on_a_pure_seasonal_series():
    """Noise only in the first days (so the MASE scale is defined); after that the season repeats exactly."""
    series = hourly(noise=1.0, noisy_until=72)
    bt = fc.backtest(series, {**FAST, "models": ["seasonal_naive"]})
    assert bt.scores["scale"].gt(0).all()
    assert bt.scores["mase"].max() < 1e-9 and bt.scores["cov95"].eq(1).all()


def test_ets_beats_seasonal_naive_on_a_trended_seasonal_series():
    series = hourly(trend=0.05, noise=0.2)
    bt = fc.backtest(series, {**FAST, "models": ["seasonal_naive", "ets"]})
    mase = bt.scores.groupby("model")["mase"].mean()
    assert mase["ets"] < 0.5 < 0.8 < mase["seasonal_naive"]


def test_anomaly_windows_and_missing_readings_are_never_scored():
    series = hourly()
    last = series.index[-24:]
    series.loc[last[:6], "is_anomaly"] = True
    series.loc[last[:6], "value"] += 100  # a spike inside the labelled window
    series.loc[last[10], ["value", "is_missing"]] = [np.nan, True]
    bt = fc.backtest(series, {**FAST, "models": ["seasonal_naive"]})
    final = bt.forecasts[bt.forecasts["fold"] == 2]
    assert final["scored"].sum() == 17 and bt.scores.loc[bt.scores["fold"] == 2, "n_scored"].item() == 17
    assert bt.scores["mase"].max() < 2  # the spike did not enter any score


def test_backtest_is_deterministic():
    series = pd.concat([hourly(), hourly("mem-01", trend=0.02, seed=3)], ignore_index=True)
    params = {**FAST, "models": ["seasonal_naive", "ets", "prophet"]}
    a, b = fc.backtest(series, params), fc.backtest(series, params)
    pd.testing.assert_frame_equal(a.forecasts, b.forecasts, check_exact=True)
    pd.testing.assert_frame_equal(a.scores, b.scores, check_exact=True)


# --- selection and tables ---------------------------------------------------------------------------
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
    chosen = fc.select_models(scores, {"select_tolerance": 0.02}).set_index("sensor_id")["model"]
    assert chosen.to_dict() == {"a": "ets", "b": "seasonal_naive", "c": "prophet"}
    strict = fc.select_models(scores, {"select_tolerance": 0.0}).set_index("sensor_id")["model"]
    assert strict["b"] == "ets"


def test_fit_selects_by_backtest_and_tables_agree():
    series = pd.concat(
        [hourly("mem-01", trend=0.05, noise=0.2), hourly("cpu-01", noise=1.0, seed=5)], ignore_index=True
    )
    params = {**FAST, "models": ["seasonal_naive", "ets"]}
    model = fc.SensorForecaster().fit(series, params)
    table = fc.backtest_table(model.backtest_)
    best = table.loc[table.groupby("sensor_id")["mase"].idxmin()].set_index("sensor_id")["model"]
    chosen = model.info().set_index("sensor_id")["model"]
    assert chosen["mem-01"] == "ets" == best["mem-01"]
    assert set(table.columns) >= {
        "sensor_id",
        "kind",
        "model",
        "chosen_model",
        "mae",
        "mape",
        "smape",
        "mase",
        "cov80",
        "cov95",
    }
    assert (
        table.loc[table["is_chosen"], "model"].to_numpy()
        == chosen.loc[table.loc[table["is_chosen"], "sensor_id"]].to_numpy()
    ).all()
    overall = fc.overall_table(model.backtest_).set_index("model")
    assert {"seasonal_naive", "ets", "selected", "selected_holdout"} <= set(overall.index)
    assert overall.loc["ets", "mase_mean"] < overall.loc["seasonal_naive", "mase_mean"]
    goals = fc.goal_metrics(model.backtest_)
    assert 0 <= goals["selected.cov80"] <= 1 and "selected_holdout.share_mase_lt1" in goals


# --- pieces ------------------------------------------------------------------------------------------
def test_metrics_follow_their_definitions():
    y, yhat = np.array([10.0, 20.0]), np.array([12.0, 18.0])
    bands = {"lo80": yhat - 1, "hi80": yhat + 1, "lo95": yhat - 3, "hi95": yhat + 3}
    m = fc.point_metrics(y, yhat, bands, scale=4.0)
    assert m["mae"] == 2 and m["mase"] == 0.5 and m["mape"] == pytest.approx(15.0)
    assert m["smape"] == pytest.approx(100 * (2 * 2 / 22 + 2 * 2 / 38) / 2)
    assert m["cov80"] == 0 and m["cov95"] == 1
    assert fc.mase_scale(np.array([1.0, 2, 3, 5, np.nan, 9]), 2) == pytest.approx(
        np.mean([3 - 1, 5 - 2, 9 - 5])
    )


def test_fill_gaps_keeps_the_seasonal_shape_through_a_long_gap():
    truth = hourly(noise=0.0)["value"].to_numpy()
    holed = truth.copy()
    holed[200:230] = np.nan
    filled = fc.fill_gaps(holed, 24)
    assert np.abs(filled - truth).max() < 1e-9 and np.isnan(holed[200])  # input untouched


def test_params_reject_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="foldz"):
        fc.forecast_params({"foldz": 3})
    with pytest.raises(ValueError, match="sarimax"):
        fc.forecast_params({"models": ["sarimax"]})
    with pytest.raises(ValueError, match="horizon"):
        fc.forecast_params({"horizon": 0})
    assert fc.forecast_params({"models": ["prophet", "seasonal_naive"]})["models"] == [
        "seasonal_naive",
        "prophet",
    ]


def test_resample_averages_onto_the_coarser_grid_and_keeps_anomaly_flags():
    fine = hourly(days=1).assign(timestamp=pd.date_range("2024-01-01", periods=24, freq="5min"))
    fine.loc[3, "is_anomaly"] = True
    out = fc.resample_series(fine, "1h")
    assert len(out) == 2 and out["value"].iloc[0] == pytest.approx(fine["value"].iloc[:12].mean())
    assert out["is_anomaly"].tolist() == [True, False]


def test_charts_are_titled_and_labelled(three_models):
    import matplotlib.pyplot as plt

    series, model = three_models
    bt = fc.backtest(series[series["sensor_id"] != "req-01"], {**FAST, "models": ["seasonal_naive", "ets"]})
    figs = [
        fc.plot_forecasts(series, model, ["cpu-01", "mem-01"], days=3),
        fc.plot_error_by_horizon(bt),
        fc.plot_coverage(bt),
    ]
    for fig in figs:
        assert fig._suptitle is not None or all(ax.get_title() for ax in fig.axes)
        assert all(ax.get_ylabel() for ax in fig.axes)
        plt.close(fig)


# --- real data ---------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_nab_slice_backtests_and_forecasts(shared_data: Path):
    from ml.data.sources import load_nab_dir
    from ml.features import label_windows, sensor_grid

    readings, windows = load_nab_dir(shared_data / "nab_sample")
    sid = "realKnownCause/machine_temperature_system_failure"  # 5-minute readings
    readings = readings[readings["sensor_id"] == sid]
    readings = readings[readings["timestamp"] < readings["timestamp"].min() + pd.Timedelta(days=24)]
    series = fc.resample_series(label_windows(sensor_grid(readings), windows), "1h")
    params = {**FAST, "season": "1D", "models": ["seasonal_naive", "ets"]}
    model = fc.SensorForecaster().fit(series, params)
    assert model.backtest_.scores["error"].isna().all()
    out = model.forecast(sid, 24)
    check_forecast(out, series["timestamp"].max(), 24)
    assert out["yhat"].between(0, 200).all()  # degrees Fahrenheit of an industrial machine
