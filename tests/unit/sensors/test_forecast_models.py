"""Forecast params and candidate pieces: params from params.yaml, checked; gap filling keeps the season."""

from __future__ import annotations

import numpy as np
import pytest

from ml import config
from ml.sensors import forecast_models as fm


def test_params_reject_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="foldz"):
        fm.forecast_params({"foldz": 3})
    with pytest.raises(ValueError, match="sarimax"):
        fm.forecast_params({"models": ["sarimax"]})
    with pytest.raises(ValueError, match="horizon"):
        fm.forecast_params({"horizon": 0})
    with pytest.raises(ValueError, match="changepoint_priorz"):
        fm.forecast_params({"prophet": {"changepoint_priorz": 0.1}})
    assert fm.forecast_params({"models": ["prophet", "seasonal_naive"]})["models"] == [
        "seasonal_naive",
        "prophet",
    ]


def test_params_default_to_the_project_section_and_given_keys_win():
    declared = config.load_params()["forecast"]
    cfg = fm.forecast_params({"folds": 3, "ets": {"trend": None}})
    assert cfg["folds"] == 3 and cfg["ets"]["trend"] is None
    assert cfg["ets"]["seasonal"] == declared["ets"]["seasonal"] and cfg["season"] == declared["season"]
    assert set(fm.MODEL_KEYS) | set(fm.RUNTIME_KEYS) <= set(declared)


def test_saved_params_are_checked_without_params_yaml():
    saved = {k: v for k, v in fm.forecast_params().items() if k in fm.MODEL_KEYS}
    assert fm.checked_params(saved) == saved
    with pytest.raises(ValueError, match="missing key"):
        fm.checked_params({k: v for k, v in saved.items() if k != "season"})


def test_fill_gaps_keeps_the_seasonal_shape_through_a_long_gap(hourly):
    truth = hourly(noise=0.0)["value"].to_numpy()
    holed = truth.copy()
    holed[200:230] = np.nan
    filled = fm.fill_gaps(holed, 24)
    assert np.abs(filled - truth).max() < 1e-9 and np.isnan(holed[200])  # input untouched
