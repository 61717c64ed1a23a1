"""Incident clustering: open-time inputs only, k chosen by the stated rule, stable assignments, recurring root
causes recovered better than a subcategory baseline, bursting clusters flagged, featurizer robust, skops round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml import registry
from ml.data import schemas
from ml.data.synth.incidents import make_incidents
from ml.incidents import clusters as C

SMALL = {"k_grid": [20, 30, 40, 50, 60], "silhouette_sample": 800, "n_components": 50, "seed": 5}


@pytest.fixture(scope="module")
def incidents() -> pd.DataFrame:
    """2,500 synthetic incidents over a year (~300 of them from the 7 recurring root causes)."""
    return make_incidents(n_incidents=2500, seed=21)


@pytest.fixture(scope="module")
def model(incidents) -> C.IncidentClusterer:
    return C.fit_clusterer(incidents, SMALL)


def scramble_non_inputs(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every outcome column (root_cause included) and the other non-inputs shuffled across rows or blanked."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    others = [c for c in frame.columns if c not in C.IncidentClusterer().input_columns()]
    for i, col in enumerate(dict.fromkeys([*schemas.OUTCOME_COLUMNS, *others])):
        if col in out:
            out[col] = out[col].to_numpy()[rng.permutation(len(out))] if i % 2 else None
    return out


# --- inputs: open-time only --------------------------------------------------------------------------
def test_input_columns_are_open_time_fields_only():
    cols = C.IncidentClusterer().input_columns()
    assert set(cols) <= set(schemas.OPEN_TIME_COLUMNS)
    assert "root_cause" not in cols and not set(cols) & set(schemas.OUTCOME_COLUMNS)


@pytest.mark.parametrize("col", ["root_cause", "owning_team", "resolved_at"])
def test_asking_for_a_column_not_known_at_open_time_raises(col, incidents):
    with pytest.raises(ValueError, match=col):
        C.IncidentClusterer(meta_columns=("category", col), k_grid=(4,)).fit(incidents.head(200))
    with pytest.raises(ValueError, match=col):
        C.baseline_labels(incidents, ["category", col])


def test_outcomes_and_root_cause_never_change_the_clusters(incidents, model):
    labels = model.predict(incidents)
    np.testing.assert_array_equal(labels, model.predict(scramble_non_inputs(incidents)))
    np.testing.assert_array_equal(labels, model.predict(incidents[model.input_columns()]))
    # fitting does not read them either: scrambled outcomes give the very same clustering
    refit = C.fit_clusterer(scramble_non_inputs(incidents, seed=1), SMALL)
    np.testing.assert_array_equal(refit.labels_, model.labels_)


# --- k selection -----------------------------------------------------------------------------------------
def test_k_is_chosen_from_the_grid_by_the_recorded_rule(model):
    grid = sorted(SMALL["k_grid"])
    assert model.k_ in grid and sorted(int(k) for k in model.k_scores_) == grid
    assert "silhouette" in model.criterion_ and str(model.tie_tolerance) in model.criterion_
    scores = {int(k): s for k, s in model.k_scores_.items()}
    best = max(scores.values())
    assert scores[model.k_] >= best - model.tie_tolerance  # within the tolerance of the best ...
    assert all(scores[k] < best - model.tie_tolerance for k in grid if k < model.k_)  # ... and the smallest
    assert model.silhouette_ == scores[model.k_] > 0.1
    assert len(model.cluster_sizes_) == model.k_ and (np.diff(model.cluster_sizes_) <= 0).all()  # 0 = largest


def test_ties_go_to_the_smaller_k(incidents):
    m = C.fit_clusterer(incidents.head(600), {**SMALL, "k_grid": [6, 12], "tie_tolerance": 1.0})
    assert m.k_ == 6


def test_a_grid_with_no_usable_k_is_a_readable_error(incidents):
    with pytest.raises(ValueError, match="k_grid"):
        C.IncidentClusterer(k_grid=(1, 5000)).fit(incidents.head(100))


# --- assignments: stable and reproducible -------------------------------------------------------------------
def test_predict_matches_the_fit_labels_and_is_deterministic(incidents, model):
    labels = model.predict(incidents)
    np.testing.assert_array_equal(labels, model.labels_)
    np.testing.assert_array_equal(labels, model.predict(incidents))
    assert labels.min() >= 0 and labels.max() < model.k_
    # one at a time or in a batch, as records or a frame: the same answer
    rows = incidents.iloc[[3, 500, 1999]]
    single = [int(model.predict(rows.iloc[[i]])[0]) for i in range(len(rows))]
    assert single == labels[[3, 500, 1999]].tolist()
    assert model.predict(rows[model.input_columns()].to_dict("records")).tolist() == single


def test_duplicates_of_a_ticket_land_in_the_same_cluster(incidents, model):
    ticket = incidents.iloc[[42]]
    batch = pd.concat([incidents.iloc[100:130], ticket, incidents.iloc[200:230], ticket, ticket])
    labels = model.predict(batch)
    assert labels[30] == labels[-1] == labels[-2]
    # duplicated training rows get one cluster too
    doubled = pd.concat([incidents.head(600), incidents.head(600).iloc[::3]], ignore_index=True)
    m = C.fit_clusterer(doubled, {**SMALL, "k_grid": [8, 12]})
    np.testing.assert_array_equal(m.labels_[600:], m.labels_[:600][::3])


def test_training_row_order_does_not_matter(incidents, model):
    perm = np.random.default_rng(3).permutation(len(incidents))
    shuffled = C.fit_clusterer(incidents.iloc[perm], SMALL)
    np.testing.assert_array_equal(shuffled.labels_, model.labels_[perm])


# --- what the clusters mean ------------------------------------------------------------------------------
def test_clusters_recover_recurring_root_causes_better_than_the_subcategory_baseline(incidents, model):
    table = C.compare_with_baselines(model.labels_, incidents, incidents["root_cause"])
    print(table.round(3).to_string())
    ours, base = table.loc["clusters"], table.loc["baseline_subcategory"]
    assert ours["purity"] > base["purity"] + 0.02
    assert ours["recurring_f1"] > base["recurring_f1"] + 0.1
    assert ours["purity_lift"] > 0.2 and base["purity_lift"] < 0.1


def test_root_cause_scores_on_known_partitions():
    truth = np.array(["a"] * 4 + ["b"] * 4 + [C.ONE_OFF] * 12)
    perfect = C.root_cause_scores(np.array([0] * 4 + [1] * 4 + [2] * 12), truth)
    assert perfect["purity"] == perfect["recurring_f1"] == perfect["nmi"] == perfect["purity_lift"] == 1.0
    lumped = C.root_cause_scores(np.zeros(20, dtype=int), truth)
    assert lumped["purity"] == 0.6 and lumped["purity_lift"] == 0.0 and lumped["recurring_recall"] == 1.0
    assert lumped["recurring_precision"] == 0.2


def test_cluster_table_describes_every_cluster(incidents, model):
    table = C.cluster_table(model, incidents, root_cause=incidents["root_cause"])
    assert table["size"].sum() == len(incidents) and set(table.index) <= set(range(model.k_))
    assert (table["example_1"] != "").all() and table["top_terms"].str.len().gt(0).all()
    assert {"category", "system", "group", "root_cause", "root_cause_share"} <= set(table.columns)
    assert table.loc[0, "size"] == model.cluster_sizes_[0]


def test_a_bursting_cluster_is_flagged_and_a_steady_one_is_not():
    weeks = pd.date_range("2024-01-01", periods=20, freq="7D")
    steady = [(w + pd.Timedelta(hours=h), 0) for w in weeks for h in range(0, 120, 24)]  # 5 a week
    burst = [(weeks[9] + pd.Timedelta(hours=h), 1) for h in range(40)] + [(weeks[2], 1), (weeks[15], 1)]
    t, labels = zip(*(steady + burst), strict=True)
    table = C.burst_table(np.array(labels), pd.Series(t), factor=4, min_count=10)
    assert bool(table.loc[1, "recurring"]) and not bool(table.loc[0, "recurring"])
    assert table.loc[1, "peak_week"] == weeks[9].date().isoformat() and table.loc[1, "peak_count"] == 40
    assert table.index[0] == 1  # bursting clusters first
    truth = np.where(np.array(labels) == 1, "cause", C.ONE_OFF)
    scores = C.burst_scores(np.array(labels), pd.Series(t), truth, factor=4, min_count=10)
    assert scores["burst_recall"] == scores["burst_precision"] == 1.0


# --- the featurizer never crashes -------------------------------------------------------------------------
# ~10-30k characters, cheap to draw
_long = st.text(min_size=1, max_size=12).map(lambda s: (s + " vpn ") * 2000)
_text = st.one_of(
    st.none(), st.just(""), st.text(max_size=60), _long, st.just("🔥 ÜBER-ärger — 証明書の期限切れ VPN")
)
_category = st.one_of(st.none(), st.sampled_from(["Network", "Software", "never seen"]), st.text(max_size=10))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(short=_text, desc=_text, cat=_category, sub=_category, ci=_category)
def test_any_text_and_categories_get_a_finite_embedding_and_a_cluster(model, short, desc, cat, sub, ci):
    row = pd.DataFrame(
        [
            {
                "short_description": short,
                "description": desc,
                "category": cat,
                "subcategory": sub,
                "cmdb_ci": ci,
            }
        ]
    )
    emb = model.transform(row)
    assert emb.shape == (1, model.n_features_out_) and np.isfinite(emb).all()
    assert np.linalg.norm(emb) <= 1.0 + 1e-9
    label = model.predict(row)
    assert 0 <= label[0] < model.k_
    np.testing.assert_array_equal(emb, model.transform(row.copy()))
    np.testing.assert_array_equal(label, model.predict(row.copy()))


def test_records_without_text_cannot_train_and_missing_columns_are_named(incidents, model):
    no_text = incidents.head(200).assign(short_description=None, description="")
    with pytest.raises(ValueError, match="no usable text"):
        C.IncidentClusterer(k_grid=(4,)).fit(no_text)
    with pytest.raises(ValueError, match="cmdb_ci"):
        model.predict(incidents.drop(columns="cmdb_ci"))


# --- saved and loaded with skops -------------------------------------------------------------------------
def test_skops_round_trip_gives_identical_predictions_and_bytes(tmp_path, incidents, model):
    sha = registry.save_sklearn(model, tmp_path / "a")
    loaded = registry.load_sklearn(tmp_path / "a", expected_sha256=sha)
    np.testing.assert_array_equal(loaded.predict(incidents), model.predict(incidents))
    np.testing.assert_array_equal(loaded.embed_2d(incidents.head(50)), model.embed_2d(incidents.head(50)))
    assert loaded.k_scores_ == model.k_scores_ and loaded.top_terms_ == model.top_terms_
    # a second fit of the same data gives the same (canonical) model bytes
    again = C.fit_clusterer(incidents, SMALL)
    assert registry.save_sklearn(again, tmp_path / "b") == sha
    assert (tmp_path / "b" / registry.MODEL_FILE).read_bytes() == (
        tmp_path / "a" / registry.MODEL_FILE
    ).read_bytes()
