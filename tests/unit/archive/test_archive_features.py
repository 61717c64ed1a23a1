"""ArchiveFeatures: causal (a future row never changes a past feature), exact window sums whatever history is
passed, and bad input refused by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.data.synth.archive import make_archive
from ml.features import ArchiveFeatures, archive_sum_name


@pytest.fixture(scope="module")
def activity() -> pd.DataFrame:
    return make_archive(seed=11, n_sources=3, days=200, policy_changes=2)[0]


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(5, 190), scale=st.floats(0.0, 50.0), shuffle_seed=st.integers(0, 100))
def test_changing_future_rows_changes_no_past_feature(activity, cut, scale, shuffle_seed):
    feats = ArchiveFeatures().fit(activity)
    before = feats.transform(activity)
    later = activity.copy()
    future = later["date"] > later["date"].min() + pd.Timedelta(days=cut)
    later.loc[future, ["archived_gb", "saved_gb"]] *= scale
    later.loc[future, "retention_days"] = 90
    later.loc[future, "share_video"], later.loc[future, "share_documents"] = 0.0, 0.0
    later = later.sample(frac=1.0, random_state=shuffle_seed)  # row order is not a clue either
    after = pd.DataFrame(feats.transform(later), index=later.index).sort_index().to_numpy()
    past = ~future.to_numpy()
    np.testing.assert_array_equal(after[past], before[past])


def test_window_sums_are_exact_and_do_not_depend_on_earlier_history(activity):
    feats = ArchiveFeatures().fit(activity)
    names = list(feats.feature_names_out_)
    full = pd.DataFrame(feats.transform(activity), columns=names, index=activity.index)
    one = activity[activity["source_id"] == activity["source_id"].iloc[0]]
    expected = np.log1p(one["archived_gb"].rolling(30, min_periods=1).sum())
    np.testing.assert_allclose(full.loc[one.index, archive_sum_name("archived_gb", 30)], expected, rtol=1e-12)
    recent = activity[activity["date"] > activity["date"].max() - pd.Timedelta(days=feats.min_history_days())]
    tail = pd.DataFrame(feats.transform(recent), columns=names, index=recent.index)
    last = recent.groupby("source_id")["date"].transform("max") == recent["date"]
    pd.testing.assert_frame_equal(tail[last], full.loc[recent.index[last]])


def test_a_missing_day_archived_nothing(activity):
    one = activity[activity["source_id"] == activity["source_id"].iloc[0]].reset_index(drop=True)
    zeroed = one.copy()
    zeroed.loc[100, ["archived_gb", "saved_gb"]] = 0.0
    feats = ArchiveFeatures().fit(one)
    np.testing.assert_array_equal(feats.transform(one.drop(index=100))[110:], feats.transform(zeroed)[111:])


def test_bad_input_is_refused_by_name(activity):
    feats = ArchiveFeatures()
    with pytest.raises(ValueError, match="archived_gb"):
        feats.fit(activity.drop(columns="archived_gb"))
    with pytest.raises(ValueError, match="more than one row"):
        feats.fit(pd.concat([activity, activity.head(1)]))
    with pytest.raises(TypeError, match="DataFrame"):
        feats.fit(activity.to_numpy())
