"""The archive forecaster: targets, the backtest's folds, beating both baselines on a small generated set, and a
model file that round-trips through skops with the registry's trusted types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io

from ml import config, registry
from ml.archive import backtest
from ml.archive.model import ArchiveForecaster
from ml.archive.savings import savings_by_type
from ml.archive.targets import next_period_targets
from ml.data.gold import archive_grid
from ml.data.synth.archive import SAVINGS_RATIO, make_archive

pytestmark = pytest.mark.xdist_group("archive-model")  # one worker builds the backtest fixture, not both

CFG = {
    **config.section("archive"),
    "folds": 4, "holdout_folds": 2, "step": 28, "n_threads": 1,
    "hgb": {"max_iter": 60, "learning_rate": 0.15, "max_leaf_nodes": 15, "min_samples_leaf": 40},
}  # fmt: skip


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    return archive_grid(make_archive(seed=4, n_sources=18, days=730, policy_changes=2)[0])


@pytest.fixture(scope="module")
def bt(daily) -> pd.DataFrame:
    return backtest.with_intervals(backtest.run_backtest(daily, CFG), CFG["coverage"])


def test_targets_sum_the_next_days_and_are_missing_past_the_end():
    days = pd.date_range("2024-01-01", periods=10)
    daily = pd.DataFrame({"source_id": "a", "date": days, "archived_gb": np.arange(10.0), "saved_gb": 1.0})
    t = next_period_targets(daily.drop(index=[4]), {"week": 3})  # a missing day archived nothing
    assert t.loc[0, "archived_gb_next_week"] == 1 + 2 + 3 and t.loc[3, "archived_gb_next_week"] == 0 + 5 + 6
    assert t.loc[6, "savings_gb_next_week"] == 3.0 and np.isnan(t.loc[7, "archived_gb_next_week"])


def test_folds_train_only_on_targets_that_had_ended(daily, bt):
    folds = backtest.rolling_folds(daily["date"], 30, CFG["folds"], CFG["step"], CFG["holdout_folds"])
    assert [f.holdout for f in folds] == [False, False, True, True]
    assert folds[-1].end == daily["date"].max() - pd.Timedelta(days=30)
    assert (
        bt.groupby("fold")["date"].agg(["min", "max"]).diff()["min"].dropna().eq(pd.Timedelta(days=28)).all()
    )
    with pytest.raises(ValueError, match="no training data"):
        backtest.rolling_folds(daily["date"], 30, 40, 28, 2)


def test_the_model_beats_both_baselines(bt):
    """Two years of 18 sources and a quick boosting: it wins every week output and each target's MAE over both
    horizons (the full run, 40 sources and 300 rounds, wins every output: metrics/archive.json)."""
    table = backtest.score_table(bt, holdout=True)
    gates = backtest.gate_metrics(table, "hgb", CFG["coverage"])
    for base in ("seasonal_naive", "linear"):
        for out in ("archived_gb_next_week", "savings_gb_next_week"):
            assert gates[f"holdout_mae_margin_vs_{base}_{out}"] > 0.05
    mae = (
        table.assign(target=table["output"].str.split("_next_").str[0])
        .groupby(["target", "model"])["mae"]
        .sum()
    )
    for target in ("archived_gb", "savings_gb"):
        assert mae[target, "hgb"] < min(mae[target, "seasonal_naive"], mae[target, "linear"])
    assert table.query("model == 'hgb'")["r2"].min() > 0.8
    assert (
        gates["holdout_cov80_error_pts_max"] < 10
    )  # two folds of residuals: the full run's gate is 5 points
    assert np.isnan(bt.loc[bt["fold"] == 0, "lo"]).all() and bt.loc[bt["fold"] > 0, "lo"].notna().all()


def test_fitted_model_predicts_intervals_and_round_trips_through_skops(daily, bt):
    targets = next_period_targets(daily, CFG["horizons"])
    model = backtest.forecaster(CFG, "hgb").fit(daily, targets).set_intervals(backtest.residuals(bt, "hgb"))
    pred = model.predict(daily.tail(800))
    for out in model.outputs():
        assert (pred[f"{out}_lo"] <= pred[out]).all() and (pred[out] <= pred[f"{out}_hi"]).all()
    data = skops.io.dumps(model)
    assert skops.io.get_untrusted_types(data=data) == [] or set(
        skops.io.get_untrusted_types(data=data)
    ) <= set(registry.TRUSTED_TYPES)
    again = skops.io.loads(data, trusted=registry.TRUSTED_TYPES)
    pd.testing.assert_frame_equal(again.predict(daily.tail(800)), pred)


def test_bad_configuration_is_refused_by_name(daily):
    targets = next_period_targets(daily, {"week": 7, "month": 30})
    with pytest.raises(ValueError, match="regressor"):
        ArchiveForecaster(regressor="prophet").fit(daily, targets)
    with pytest.raises(ValueError, match="feature windows"):
        ArchiveForecaster(horizons={"quarter": 90}).fit(daily, targets)


def test_savings_ratios_by_type_are_recovered_from_the_records(daily):
    by_type = savings_by_type(daily, truth=SAVINGS_RATIO).set_index("file_type")
    np.testing.assert_allclose(by_type["savings_ratio"], by_type["true_ratio"], atol=0.05)
