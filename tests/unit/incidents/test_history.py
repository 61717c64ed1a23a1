"""Causal history / workload features and the HGB models on open-time fields: nothing reads the future,
nothing reads an outcome of the incident itself, censored holdout incidents are scored as such."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.data import schemas
from ml.data.synth.incidents import make_incidents
from ml.incidents import evaluate, hgb, history
from ml.incidents.targets import breach_target, count_cutoff, time_split, ttr_hours_target

CFG = history.HistoryConfig(
    keys=("caller_id", "location", "category", "assignment_group"),
    routing_keys=("caller_id", "location", "category"),
    half_life_days=7.0,
)
CATS = ("contact_type", "location", "category", "subcategory", "assignment_group", "caller_id")
FAST = {"max_iter": 30, "learning_rate": 0.1, "max_leaf_nodes": 7, "min_samples_leaf": 20}
OUTCOMES = ("resolved_at", "closed_at", "made_sla", "sys_updated_at", "state", "reassignment_count")


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    return (
        make_incidents(n_incidents=1500, seed=5).sort_values(["opened_at", "number"]).reset_index(drop=True)
    )


def toy() -> pd.DataFrame:
    t = pd.Timestamp("2024-01-01")
    h = pd.Timedelta("1h")
    return pd.DataFrame(
        {
            "number": ["A", "B", "C", "D"],
            "opened_at": [t, t + h, t + 2 * h, t + 5 * h],
            "resolved_at": [t + 3 * h, t + 2 * h, pd.NaT, t + 9 * h],  # B resolves exactly when C opens
            "closed_at": [pd.NaT] * 4,
            "made_sla": pd.array([False, True, pd.NA, True], dtype="boolean"),
            "caller_id": ["x", "x", "x", "x"],
            "assignment_group": ["g1", "g2", "g1", "g1"],
        }
    )


def test_history_counts_only_outcomes_resolved_strictly_before_opening():
    out = history.add_history(toy(), history.HistoryConfig(("caller_id",), ("caller_id",)))
    # A opens first: nothing known. B: A unresolved. C: B resolved at C's opening time -> not "before".
    assert out["hist_caller_id_n_done"].tolist() == [0, 0, 0, 2]
    assert out["hist_caller_id_n_opened"].tolist() == [0, 1, 2, 3]
    assert np.isnan(out["hist_caller_id_breach"].iloc[2]) and out["hist_caller_id_breach"].iloc[3] == 0.5
    hours_d = np.mean([np.log1p(3.0), np.log1p(1.0)])
    assert out["hist_caller_id_log_hours"].iloc[3] == pytest.approx(hours_d)
    # workload (strictly before, too): at +2h B is still open; D at +5h sees only C open, in group g1
    assert out["open_total"].tolist() == [0, 1, 2, 1] and out["open_group"].iloc[3] == 1
    # routing: the latest RESOLVED earlier ticket of the caller (A resolved at +3h, after B at +2h)
    assert out["last_group_caller_id"].isna().tolist() == [True, True, True, False]
    assert out["last_group_caller_id"].iloc[3] == "g1"


def test_blanking_later_outcomes_changes_no_earlier_feature(incidents):
    """The history leakage test: outcomes that became known at or after t change nothing opened before t."""
    cut = incidents["opened_at"].iloc[len(incidents) // 2]
    later = (history.done_time(incidents) >= cut) | history.done_time(incidents).isna()
    scrambled = incidents.copy()
    rng = np.random.default_rng(0)
    scrambled.loc[later, "made_sla"] = rng.random(int(later.sum())) < 0.5
    scrambled.loc[later, "resolved_at"] = scrambled.loc[later, "opened_at"] + pd.Timedelta("400D")
    scrambled.loc[later, "closed_at"] = pd.NaT
    a, b = history.add_history(incidents, CFG), history.add_history(scrambled, CFG)
    before = (incidents["opened_at"] < cut).to_numpy()
    cols = history.history_columns(a) + history.routing_columns(a)
    pd.testing.assert_frame_equal(a.loc[before, cols], b.loc[before, cols])
    assert not a.loc[~before, cols].equals(b.loc[~before, cols])  # the scramble is visible later on


def test_history_of_a_frame_equals_history_from_a_past_snapshot(incidents):
    """Serving: a request's features from a saved past equal the ones computed over the whole log."""
    whole = history.add_history(incidents, CFG)
    cut = incidents["opened_at"].iloc[1200]
    past, new = incidents[incidents["opened_at"] < cut], incidents[incidents["opened_at"] >= cut].head(20)
    # the snapshot knows only what was known at the cut-off: later outcomes are not in it yet
    snap = past.assign(
        **{c: past[c].where(history.done_time(past) < cut) for c in ("resolved_at", "closed_at")}
    )
    snap["made_sla"] = past["made_sla"].where(history.done_time(past) < cut)
    served = history.add_history(new, CFG, past=snap)
    first = new.index[0]  # opened at the cut-off: nothing after the snapshot could count yet
    cols = [c for c in history.history_columns(whole) if "n_opened" not in c and not c.startswith("open_")]
    pd.testing.assert_series_equal(served.loc[first, cols], whole.loc[first, cols], check_names=False)


def test_models_read_only_open_time_fields_and_ignore_outcomes(incidents):
    frame = history.add_history(incidents, CFG)
    train, test = time_split(frame, cutoff=count_cutoff(frame, 0.2), closed_only=False)
    y = breach_target(train)
    model = hgb.BreachClassifier(categorical_columns=CATS, **FAST).fit(train[y.notna()], y[y.notna()])
    scrambled = test.copy()
    for i, col in enumerate([*schemas.OUTCOME_COLUMNS, "owning_team", "root_cause"]):
        if col in scrambled:
            scrambled[col] = scrambled[col].to_numpy()[::-1] if i % 2 else None
    np.testing.assert_array_equal(model.predict_proba(test), model.predict_proba(scrambled))
    with pytest.raises(ValueError, match="resolved_at"):
        hgb.OpenTimeFrame(categorical_columns=("resolved_at",)).fit(train)
    hours = ttr_hours_target(train)
    q = hgb.QuantileHours(categorical_columns=CATS, **FAST).fit(train[hours.notna()], hours[hours.notna()])
    pred = q.predict(test)
    assert pred.shape == (len(test), 3) and (np.diff(pred, axis=1) >= 0).all()
    np.testing.assert_array_equal(pred, q.predict(scrambled))


def test_a_record_without_history_or_optional_columns_still_predicts(incidents):
    frame = history.add_history(incidents, CFG)
    y = frame["assignment_group"]
    model = hgb.GroupClassifier(categorical_columns=("location", "category", "opened_by"), **FAST)
    model.fit(frame[y.notna()], y[y.notna()])
    bare = incidents[["opened_at", "location", "category", "impact", "urgency", "priority"]].head(5)
    ranked = model.ranked(bare, 3)
    assert len(ranked) == 5 and all(len(r) == 3 and len(set(r)) == 3 for r in ranked)


def test_count_cutoff_splits_by_incident_count(incidents):
    cut = count_cutoff(incidents, 0.2)
    train, test = time_split(incidents, cutoff=cut, closed_only=False)
    assert len(train) == int(len(incidents) * 0.8) and len(train) + len(test) == len(incidents)
    with pytest.raises(ValueError, match="test_fraction"):
        count_cutoff(incidents, 1.5)


def test_censored_incidents_count_with_the_least_error_consistent_with_the_truth():
    pred = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    hours = np.array([3.0, np.nan, np.nan])
    censored = np.array([np.nan, 10.0, 1.0])  # still open: at least 10 h (P90 4 h: a miss), at least 1 h
    m = evaluate.censored_ttr_metrics(pred, hours, censored)
    assert m["n"] == 3 and m["n_censored"] == 2
    assert m["mae_p50_hours"] == pytest.approx((1.0 + 8.0 + 0.0) / 3)
    assert m["coverage"] == pytest.approx(2 / 3)


def test_holdout_targets_keep_open_incidents_as_censored():
    t = pd.Timestamp("2024-01-01")
    test = pd.DataFrame({
        "opened_at": [t, t, t + pd.Timedelta("20h")], "resolved_at": [t + pd.Timedelta("2h"), pd.NaT, pd.NaT],
        "closed_at": [pd.NaT] * 3, "made_sla": pd.array([True, pd.NA, pd.NA], dtype="boolean"),
        "sla_target_hours": [8.0, 8.0, 8.0],
    })  # fmt: skip
    out = evaluate.holdout_targets(test, t + pd.Timedelta("24h"))
    assert out["hours"].iloc[0] == 2 and np.isnan(out["censored_hours"].iloc[0])
    assert out["censored_hours"].tolist()[1:] == [24.0, 4.0]
    assert out["breach"].iloc[1] == 1.0 and np.isnan(out["breach"].iloc[2])  # 24 h > 8 h target: breached


def test_losses_are_told_in_a_generated_sentence():
    result = {
        "sla": {"model": {"roc_auc": 0.80}, "hgb": {"roc_auc": 0.82}, "majority": {"roc_auc": 0.5}},
        "ttr": {"model": {"median_ae_p50_hours": 10.0}, "hgb": {"median_ae_p50_hours": 12.0}},
    }
    assert evaluate.losses_to_baselines(result) == ["sla: the model's roc_auc 0.800 loses to hgb (0.820)."]
