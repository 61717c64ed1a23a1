"""Incident SLA-breach and time-to-resolution models: no leakage, time-ordered split, calibrated
probabilities, well-formed quantiles, beating the baselines, skops round trip, the real UCI sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml import config, registry
from ml.data import schemas
from ml.data.synth.incidents import make_incidents
from ml.features import GROUP_LOAD, INPUT_COLUMNS, add_group_load
from ml.incidents import sla, ttr
from ml.incidents.targets import breach_target, time_split, ttr_hours_target

FAST = {"max_iter": 100, "seed": 3, "text_components": 10}  # smaller than params.yaml: the module stays fast


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    """3,000 synthetic incidents over a year, with the group load computed over the whole history."""
    return add_group_load(make_incidents(n_incidents=3000, seed=11))


@pytest.fixture(scope="module")
def split(incidents):
    return time_split(incidents, test_fraction=0.2)


@pytest.fixture(scope="module")
def sla_models(split):
    train, _ = split
    return {
        "model": sla.fit_sla(train, FAST),
        "uncalibrated": sla.fit_uncalibrated(train, FAST),
        "majority": sla.fit_majority(train),
    }


@pytest.fixture(scope="module")
def ttr_model(split):
    return ttr.fit_ttr(split[0], FAST)


def blank_outcomes(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every outcome column shuffled across rows or blanked (alternating), plus the other non-inputs."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for i, col in enumerate([*schemas.OUTCOME_COLUMNS, "owning_team", "number", "source"]):
        if col not in out:
            continue
        out[col] = out[col].to_numpy()[rng.permutation(len(out))] if i % 2 else None
    return out


def test_outcome_columns_never_change_predictions(split, sla_models, ttr_model):
    _, test = split
    scrambled = blank_outcomes(test)
    inputs_only = test[[*INPUT_COLUMNS, GROUP_LOAD]]
    model = sla_models["model"]
    p = sla.breach_probability(model, test)
    np.testing.assert_array_equal(p, sla.breach_probability(model, scrambled))
    np.testing.assert_array_equal(p, sla.breach_probability(model, inputs_only))
    q = ttr.predict_ttr(ttr_model, test).to_numpy()
    np.testing.assert_array_equal(q, ttr.predict_ttr(ttr_model, scrambled).to_numpy())
    np.testing.assert_array_equal(q, ttr.predict_ttr(ttr_model, inputs_only).to_numpy())


# --- fitting --------------------------------------------------------------------------------------
def test_training_row_order_does_not_matter(split):
    train, test = split
    shuffled = train.sample(frac=1.0, random_state=1)
    a = sla.breach_probability(sla.fit_sla(train, {**FAST, "max_iter": 20}), test)
    b = sla.breach_probability(sla.fit_sla(shuffled, {**FAST, "max_iter": 20}), test)
    np.testing.assert_array_equal(a, b)


# --- SLA -------------------------------------------------------------------------------------------------
def test_sla_model_is_calibrated_and_beats_the_majority_baseline(split, sla_models):
    _, test = split
    m = {name: sla.evaluate_sla(model, test) for name, model in sla_models.items()}
    p = sla.breach_probability(sla_models["model"], test)
    assert ((p >= 0) & (p <= 1)).all()
    print({k: {x: round(v[x], 4) for x in ("roc_auc", "pr_auc", "brier", "log_loss")} for k, v in m.items()})
    assert m["model"]["roc_auc"] > 0.62  # the generator's ceiling is ~0.73 (see the module report)
    # stable data: gradient boosting is already close to calibrated, so calibration (on later slices, with
    # classifiers that saw fewer rows) may only keep the Brier score, within a small tolerance: measured
    # +0.0061 / +0.0008 / +0.0022 / +0.0001 over generator seeds 11-14 (the floating point of the CPU moves
    # the trees' ties, so a 0.005 bound passed on one machine and failed on another)
    assert m["model"]["brier"] <= m["uncalibrated"]["brier"] + 0.01
    assert m["model"]["brier"] < m["majority"]["brier"]
    assert m["model"]["roc_auc"] > m["majority"]["roc_auc"] + 0.1
    table = m["model"]["reliability"]
    assert table["n"].sum() == len(test) and list(table.columns[:2]) == ["bin_low", "bin_high"]


def test_time_respecting_calibration_tracks_a_drifting_breach_rate(incidents):
    """Breaches become far more common late in the year (as in the UCI log): the calibrators, fitted on the
    latest training slices, follow; a model fitted on the whole period without them lags behind."""
    t = incidents["opened_at"]
    late = (t >= t.min() + (t.max() - t.min()) * 0.55).to_numpy()
    met = incidents["made_sla"].fillna(False).to_numpy(dtype=bool)
    flip = late & met & (np.random.default_rng(0).random(len(incidents)) < 0.4)
    drifted = incidents.copy()
    drifted.loc[flip, "made_sla"] = False
    train, test = time_split(drifted, test_fraction=0.2)
    calibrated = sla.evaluate_sla(sla.fit_sla(train, FAST), test)
    plain = sla.evaluate_sla(sla.fit_uncalibrated(train, FAST), test)
    assert calibrated["brier"] < plain["brier"] - 0.01
    assert abs(calibrated["mean_predicted"] - calibrated["breach_rate"]) < abs(
        plain["mean_predicted"] - plain["breach_rate"]
    )


def test_choose_threshold_matches_a_hand_computed_cost():
    probs = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    y = np.array([0, 0, 1, 0, 1, 1])
    # cost_fp=1, cost_fn=4; flag when p >= t:
    # t=0.1 -> 3 FP = 3; t=0.2 -> 2 FP = 2; t=0.35 -> 1 FP = 1; t=0.4 -> FN 0.35 = 4 + FP 0.4 = 5;
    # t=0.8 -> 1 FN = 4; t=0.9 -> 2 FN = 8; flag nothing -> 3 FN = 12.  Minimum: t = 0.35.
    assert sla.choose_threshold(probs, y, cost_fp=1, cost_fn=4) == 0.35
    assert sla.expected_cost(probs, y, 0.35, 1, 4) == 1
    # misses cheap, alarms dear: flag only the near-certain ones
    # t=0.8 -> 1 FN (0.35) = 1; t=0.35 -> 1 FP = 10: the higher threshold wins
    assert sla.choose_threshold(probs, y, cost_fp=10, cost_fn=1) == 0.8


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.booleans()), min_size=1, max_size=30),
    cost_fp=st.floats(0.1, 10),
    cost_fn=st.floats(0.1, 10),
)
def test_choose_threshold_is_the_cheapest_candidate(data, cost_fp, cost_fn):
    probs = np.array([d[0] for d in data])
    y = np.array([int(d[1]) for d in data])
    t = sla.choose_threshold(probs, y, cost_fp, cost_fn)
    candidates = [*np.unique(probs), np.inf]
    best = min(sla.expected_cost(probs, y, c, cost_fp, cost_fn) for c in candidates)
    assert sla.expected_cost(probs, y, t, cost_fp, cost_fn) == pytest.approx(best)


# --- TTR ----------------------------------------------------------------------------------------------
def test_ttr_quantiles_are_ordered_cover_and_beat_the_priority_baseline(split, ttr_model):
    train, test = split
    pred = ttr.predict_ttr(ttr_model, test)
    assert list(pred.columns) == ["p10", "p50", "p90"] and (pred.to_numpy() >= 0).all()
    assert (pred["p10"] <= pred["p50"]).all() and (pred["p50"] <= pred["p90"]).all()
    m = ttr.evaluate_ttr(ttr_model, test)
    hours = ttr_hours_target(test).dropna()
    base_table = ttr.fit_priority_baseline(train)
    base = ttr.ttr_metrics(hours, ttr.predict_priority_baseline(base_table, test.loc[hours.index]))
    print(
        {k: round(m[k], 3) for k in ("mae_p50_hours", "coverage", "mean_width_hours")},
        "baseline",
        {k: round(base[k], 3) for k in ("mae_p50_hours", "coverage", "mean_width_hours")},
    )
    assert 0.65 <= m["coverage"] <= 0.95
    assert m["mae_p50_hours"] < base["mae_p50_hours"]
    assert m["pinball_p50_log1p"] < base["pinball_p50_log1p"]


@settings(max_examples=10, deadline=None)
@given(rows=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_ttr_quantiles_never_cross_even_far_from_the_data(ttr_model, rows, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 50, size=(rows, len(ttr_model[0].get_feature_names_out())))
    pred = ttr_model[-1].predict(X)
    assert (np.diff(pred, axis=1) >= 0).all() and np.isfinite(pred).all()


def test_conformal_shift_uses_the_latest_slice_only():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3))
    y = np.exp(1 + X[:, 0] + rng.normal(0, 0.5, 1000))
    late = y.copy()
    late[-200:] *= 5  # later incidents take longer: the conformal slice must widen the upper quantiles
    base = ttr.TTRQuantileModel(max_iter=30, refit=False).fit(X, y)
    shifted = ttr.TTRQuantileModel(max_iter=30, refit=False).fit(X, late)
    assert shifted.n_calibration_ == 200 and shifted.shifts_[2] > base.shifts_[2] + 1.0


def test_comparison_tables_put_every_model_on_the_same_holdout(split):
    train, test = split
    quick = {**FAST, "max_iter": 30}
    table, models = sla.compare_sla(train, test, quick)
    assert list(table.index) == ["model", "uncalibrated", "logistic", "majority"]
    assert (table["n"] == breach_target(test).notna().sum()).all() and table["passes_gate"].dtype == bool
    assert 0 < table.loc["model", "threshold"] < 1 and table.loc["majority", "roc_auc"] == 0.5
    table, models = ttr.compare_ttr(train, test, quick)
    assert list(table.index) == ["model", "no_conformal", "priority_baseline"]
    assert {"mae_p50_hours", "pinball_p90_hours", "coverage", "mean_width_hours"} <= set(table.columns)
    assert models["no_conformal"][-1].n_calibration_ == 0 < models["model"][-1].n_calibration_


# --- skops round trip ---------------------------------------------------------------------------------
def test_models_survive_a_skops_round_trip(split, sla_models, ttr_model, tmp_path):
    """The registry's own trusted-type list loads both models (no extra trust granted in the test)."""
    _, test = split
    rows = test.head(200)
    for name, model, predict in (
        ("sla", sla_models["model"], sla.breach_probability),
        ("ttr", ttr_model, lambda m, x: ttr.predict_ttr(m, x).to_numpy()),
    ):
        sha = registry.save_sklearn(model, tmp_path / name)
        loaded = registry.load_sklearn(tmp_path / name, sha)
        np.testing.assert_array_equal(predict(model, rows), predict(loaded, rows))


# --- the real UCI event-log sample ---------------------------------------------------------------------
@pytest.mark.realdata
def test_both_models_run_end_to_end_on_the_uci_sample(shared_data: Path):
    from ml.data.sources import load_incident_event_log

    uci = load_incident_event_log(shared_data / "incidents_uci_sample" / "incident_event_log_sample.csv")
    uci = add_group_load(uci)
    train, test = time_split(uci, test_fraction=0.2)
    params = {**FAST, "use_text": False}
    model = sla.fit_sla(train, params)
    m = sla.evaluate_sla(model, test, threshold=sla.threshold_from_training(model, train, params))
    print("UCI SLA", {k: round(v, 4) for k, v in m.items() if isinstance(v, float)})
    assert 0 <= m["brier"] <= 1 and m["n"] == len(test) and 0 <= m["threshold"] <= 1
    q = ttr.fit_ttr(train, params)
    t = ttr.evaluate_ttr(q, test)
    print("UCI TTR", {k: round(v, 3) for k, v in t.items()})
    pred = ttr.predict_ttr(q, test)
    assert (np.diff(pred.to_numpy(), axis=1) >= 0).all() and 0 < t["coverage"] <= 1


def test_params_default_to_params_yaml_and_a_typo_is_refused():
    cfg = config.section("sla")
    assert sla.make_features().text_components == cfg["text_components"]
    assert ttr.make_model()[-1].quantiles == tuple(config.section("ttr")["quantiles"])
    with pytest.raises(ValueError, match="max_iters"):
        sla.fit_sla(pd.DataFrame(), {"max_iters": 3})
