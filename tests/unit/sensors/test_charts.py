"""Sensor charts: each forecast chart is titled and has labelled axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ml.sensors import backtest, charts
from ml.sensors.forecast import SensorForecaster

FAST = {"season": 24, "horizon": 24, "max_horizon": 48, "folds": 3, "step": 24, "min_train": 168, "n_jobs": 1}


def test_forecast_charts_are_titled_and_labelled(hourly):
    series = pd.concat(
        [hourly("cpu-01"), hourly("mem-01", trend=0.02, kind="memory_pct", seed=1)], ignore_index=True
    )
    params = {**FAST, "models": ["seasonal_naive", "ets"]}
    model = SensorForecaster().fit(series, params, selection={"cpu-01": "seasonal_naive", "mem-01": "ets"})
    bt = backtest.backtest(series, params)
    figs = [
        charts.plot_forecasts(series, model, ["cpu-01", "mem-01"], days=3),
        charts.plot_error_by_horizon(bt),
        charts.plot_coverage(bt),
    ]
    for fig in figs:
        assert fig._suptitle is not None or all(ax.get_title() for ax in fig.axes)
        assert all(ax.get_ylabel() for ax in fig.axes)
        plt.close(fig)


def test_nab_category_chart_is_titled_and_labelled():
    m = {"standard": 60.0, "categories": {"a": 50.0, "b": 70.0, "c": None}}
    fig = charts.plot_nab_categories({**m, "published": {"numenta": {**m, "standard": 70.0}}})
    assert fig.axes[0].get_title() and fig.axes[0].get_ylabel()
    plt.close(fig)
