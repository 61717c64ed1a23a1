"""The compiled request paths (ml/serving/fast/) give the fitted models' own numbers, to 1e-9, on thousands
of records with missing values and unseen categories; a model shape the compiler does not know falls back
to the fitted object; reloads reach every worker through the reload log."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from ml.incidents import sla, system_team, triage
from ml.sensors import anomaly
from ml.serving import broadcast, predict, schemas
from ml.serving.fast import compile_model
from ml.serving.fast import endpoints as fast_endpoints
from ml.testing import models as fixtures

TOL = 1e-9


@pytest.fixture(scope="module")
def data():
    return fixtures.make_data(n_sensors=4, days=21, n_incidents=2500, seed=11)


@pytest.fixture(scope="module")
def split(data):
    return fixtures.incident_split(data)


def _records(frame: pd.DataFrame, seed: int = 0) -> list[schemas.Incident]:
    """Request records from silver rows, with holes: missing text and categories, unseen values."""
    rng = np.random.default_rng(seed)
    out = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        r = schemas.incident_payload(row)
        if i % 7 == 0:
            for key in ("category", "description", "location"):
                r.pop(key, None)
        if i % 11 == 0:
            r |= {"location": "Atlantis", "assignment_group": "Nobody", "contact_type": "pigeon"}
        if i % 13 == 0:
            r.pop("short_description", None)
        if i % 17 == 0:
            r["subcategory"] = f"brand new {rng.integers(1000)}"
        if i % 5 == 0:
            r.pop("group_load_24h", None)
        out.append(schemas.Incident.model_validate_json(json.dumps(r)))
    return out


def test_sensor_detector_equals_score_readings(data):
    pipe = anomaly.fit_detector(data.sensors, fixtures.SENSOR_PARAMS)
    fast = compile_model("sensor-anomaly", pipe)
    assert fast is not None
    frame = data.sensors[["sensor_id", "timestamp", "value"]].copy()
    rng = np.random.default_rng(3)
    frame.loc[rng.random(len(frame)) < 0.05, "value"] = np.nan
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)  # request order is not time order
    assert len(frame) > 2000
    for explain in ("flagged", "all", "none"):
        expected = anomaly.score_readings(pipe, frame, explain=explain)
        score, flagged, top = fast.score(
            frame["sensor_id"].tolist(),
            frame["timestamp"].to_numpy("datetime64[ns]"),
            frame["value"].to_numpy(float),
            explain,
        )
        want = expected["score"].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(score), np.isnan(want))
        np.testing.assert_allclose(score, want, rtol=0, atol=TOL, equal_nan=True)
        np.testing.assert_array_equal(flagged, expected["is_anomaly"].to_numpy(bool))
        assert top == [t if isinstance(t, str) else None for t in expected["top_feature"]]


@pytest.mark.parametrize("max_features", [1.0, 0.6], ids=["all-features", "subsampled"])
def test_packed_forest_equals_sklearn_bit_for_bit_also_on_its_thresholds(max_features):
    from sklearn.ensemble import IsolationForest

    from ml.serving.fast.trees import PackedIsolationForest

    rng = np.random.default_rng(5)
    forest = IsolationForest(n_estimators=40, max_samples=64, max_features=max_features, random_state=0)
    forest.fit(rng.normal(size=(500, 6)))
    packed = PackedIsolationForest(forest)
    assert packed.levels is not None  # the level layout, not the general walk
    X = rng.normal(size=(600, 6)) * 2
    thresholds = packed.threshold[packed.children[::2] != np.arange(len(packed.threshold))]
    on = rng.choice(thresholds, size=(200, 6)).astype(np.float32)  # inputs equal to a split value,
    X[:200] = on  # and the next float32 above it: the comparisons at the edge of every split
    X[200:400] = np.nextafter(on, np.float32(np.inf))
    want = IsolationForest.score_samples(forest, X)
    np.testing.assert_array_equal(packed.score_samples(X), want)
    packed.levels = None
    np.testing.assert_array_equal(packed.score_samples(X), want)
    np.testing.assert_array_equal(packed.score_samples(X[:1]), want[:1])


def test_sensor_endpoint_short_requests_equal_the_slow_path(data):
    pipe = anomaly.fit_detector(data.sensors, fixtures.SENSOR_PARAMS)
    fast = compile_model("sensor-anomaly", pipe)
    sensors = data.sensors
    for sid in sensors["sensor_id"].unique()[:3]:
        part = sensors[sensors["sensor_id"] == sid].tail(24)
        body = {
            "readings": [
                {"sensor_id": sid, "timestamp": t.isoformat(), "value": None if v != v else float(v)}
                for t, v in zip(part["timestamp"], part["value"], strict=True)
            ],
            "explain": "all",
        }
        request = schemas.DetectAnomalyRequest.model_validate_json(json.dumps(body))
        slow = predict.detect_anomaly(pipe, request)
        quick = fast_endpoints.detect_anomaly(fast, pipe, request)
        for a, b in zip(slow["results"], quick["results"], strict=True):
            assert a.keys() == b.keys()
            for k in a:
                if isinstance(a[k], float) and b[k] is not None:
                    assert abs(a[k] - b[k]) <= TOL, k
                else:
                    assert a[k] == b[k], k
    # an unknown sensor: the slow path's 4xx
    bad = schemas.DetectAnomalyRequest.model_validate_json(
        json.dumps({"readings": [{"sensor_id": "nope", "timestamp": "2024-01-01T00:00:00", "value": 1.0}]})
    )
    with pytest.raises(predict.ClientError):
        fast_endpoints.detect_anomaly(fast, pipe, bad)


@pytest.mark.parametrize("extreme", [1e200, -1.7e308])
def test_an_extreme_finite_reading_is_flagged_without_numpy_warnings(data, extreme):
    pipe = anomaly.fit_detector(data.sensors, fixtures.SENSOR_PARAMS)
    fast = compile_model("sensor-anomaly", pipe)
    sid = data.sensors["sensor_id"].iloc[0]
    part = data.sensors[data.sensors["sensor_id"] == sid].dropna(subset=["value"]).tail(24)
    ts = part["timestamp"].to_numpy(dtype="datetime64[ns]")
    values = part["value"].to_numpy(dtype=float).copy()
    values[-4] = extreme
    with np.errstate(all="raise"):  # a warning anywhere on the path raises here
        score, flagged, _ = fast.score([sid] * len(values), ts, values, "all")
    assert flagged[-4] and score[-4] == 1.0


@pytest.mark.parametrize("fit", [sla.fit_sla, sla.fit_logistic], ids=["calibrated-hgb", "logistic"])
def test_sla_equals_breach_probability(split, fit):
    train, test = split
    model = fit(train, fixtures.INCIDENT_PARAMS)
    fast = compile_model("incident-sla", model)
    assert fast is not None
    items = _records(pd.concat([test, train.head(1500)]))
    assert len(items) >= 2000
    expected = sla.breach_probability(model, predict.incidents_frame(items))
    np.testing.assert_allclose(fast.breach_probability(items), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize(
    ("fit", "heads"),
    [
        (triage.fit_triage, ("assignment_group", "category")),
        (system_team.fit_system_team, ("cmdb_ci", "owning_team")),
    ],
    ids=["triage", "system-team"],
)
def test_classifier_heads_equal_predict_frame(split, fit, heads):
    train, test = split
    model = fit(train, fixtures.TEXT_PARAMS)
    fast = compile_model("incident-triage", model)
    assert fast is not None
    items = _records(pd.concat([test, train.head(1500)]), seed=1)
    assert len(items) >= 2000
    for got, want in zip(fast.proba(items), model.predict_proba(predict.incidents_frame(items)), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    request = schemas.TopKRequest.model_construct(incidents=items[:400], top_k=3)
    slow = predict.classify_heads(model, request, heads)
    quick = fast_endpoints.classify_heads(fast, model, request, heads)
    assert quick == slow


def test_unknown_model_shapes_fall_back_with_a_logged_reason(split, caplog):
    train, test = split
    model = sla.fit_sla(train, fixtures.INCIDENT_PARAMS)
    model.calibrated_classifiers_[0].method = "isotonic"  # a calibration the compiler does not know
    with caplog.at_level(logging.WARNING, logger="opslab.serving"):
        assert compile_model("incident-sla", model) is None
    assert "no fast path" in caplog.text and "isotonic" in caplog.text
    assert compile_model("incident-sla", object()) is None
    items = _records(test.head(20))
    request = schemas.IncidentsRequest.model_construct(incidents=items)
    model.calibrated_classifiers_[0].method = "sigmoid"
    slow = predict.predict_sla(model, request, threshold=0.3)
    assert fast_endpoints.predict_sla(None, model, request, threshold=0.3) == slow


def test_reload_log_reaches_every_follower(tmp_path):
    path = tmp_path / "reload.json"
    path.write_text(json.dumps({"generation": 0, "reloads": []}))
    seen: dict[str, list] = {"a": [], "b": []}
    a = broadcast.Follower(lambda n, u: seen["a"].append((n, u)), path)
    b = broadcast.Follower(lambda n, u: seen["b"].append((n, u)), path)
    a.overrides(), b.overrides()
    a.publish(["sensor-anomaly"], {"sensor-anomaly": "models:/sensor-anomaly/1"})
    a.check()
    b.check()
    assert seen["a"] == [] and seen["b"] == [
        (["sensor-anomaly"], {"sensor-anomaly": "models:/sensor-anomaly/1"})
    ]
    b.check()  # nothing new: nothing replayed
    assert len(seen["b"]) == 1
    late = broadcast.Follower(lambda n, u: None, path)
    assert late.overrides() == {"sensor-anomaly": "models:/sensor-anomaly/1"} and late.applied == 1
