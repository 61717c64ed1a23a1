"""What `/forecast_archive` will call: request records -> both targets with intervals, equal to the batch
prediction; bad records refused naming the field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import config
from ml.archive import backtest
from ml.archive.predict import ArchiveRequestError, forecast_archive, forecast_latest, validate_history
from ml.archive.targets import next_period_targets
from ml.data.gold import archive_grid
from ml.data.synth.archive import make_archive
from ml.features import ARCHIVE_INPUT_COLUMNS

CFG = {**config.section("archive"), "n_threads": 1, "hgb": {"max_iter": 30, "max_leaf_nodes": 7}}


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    return archive_grid(make_archive(seed=8, n_sources=4, days=200, policy_changes=1)[0])


@pytest.fixture(scope="module")
def model(daily):
    fitted = backtest.forecaster(CFG, "hgb").fit(daily, next_period_targets(daily, CFG["horizons"]))
    return fitted.set_intervals({o: np.linspace(-0.2, 0.3, 50) for o in fitted.outputs()})


def request(daily: pd.DataFrame, days: int) -> list[dict]:
    recent = daily[daily["date"] > daily["date"].max() - pd.Timedelta(days=days)].drop(columns="is_filled")
    return recent.assign(date=recent["date"].dt.strftime("%Y-%m-%d")).to_dict("records")


def test_the_answer_equals_the_batch_prediction(daily, model):
    batch = forecast_latest(model, daily)
    answer = pd.DataFrame(forecast_archive(model, request(daily, model.min_history_days())))
    assert list(answer["source_id"]) == list(batch["source_id"]) and set(answer["origin"]) == {"2024-07-18"}
    outputs = [c for c in batch.columns if c not in ("source_id", "origin")]
    assert len(outputs) == 12  # 2 targets x 2 horizons x (forecast, lo, hi)
    pd.testing.assert_frame_equal(answer[outputs], batch[outputs])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r[0].update(share_documents=r[0]["share_documents"] + 0.2), "share_documents"),
        (lambda r: r[3].update(archived_gb=-1.0), "archived_gb"),
        (lambda r: r[1].pop("retention_days"), "retention_days"),
        (lambda r: r[2].update(date="last tuesday"), "date"),
        (lambda r: r[2].update(total_files="many"), "total_files"),
        (lambda r: r[0].update(colour="blue"), "colour"),
        (lambda r: r[5].update(share_video=None), "share_video"),
    ],
)
def test_bad_records_are_refused_naming_the_field(daily, model, change, field):
    records = request(daily, model.min_history_days())
    change(records)
    with pytest.raises(ArchiveRequestError) as err:
        forecast_archive(model, records)
    assert err.value.field == field and field in str(err.value)


def test_too_short_a_history_is_refused(daily, model):
    with pytest.raises(ArchiveRequestError, match="days of history"):
        forecast_archive(model, request(daily, 30))
    with pytest.raises(ArchiveRequestError, match="no records"):
        validate_history([], 92)
    assert set(ARCHIVE_INPUT_COLUMNS) <= set(validate_history(request(daily, 100), 92).columns)
