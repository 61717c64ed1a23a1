"""The BentoML service over real HTTP: `bentoml serve` subprocesses on free loopback ports.

Server A: a scratch MLflow registry with small real models (sensor-anomaly v1 and champion v2, forecaster,
SLA, TTR, triage, system/team, similar incidents, clusters), API keys (one in the env, one in a key file),
and `OPSLAB_MODEL_URI_SENSOR_ANOMALY` pinning v1 (the env-var rollback). Server B (one worker): the registry
unreachable, so the exported copies are served; the TTR, system/team and clusters copies are missing and the
SLA copy tampered with, so only their endpoints answer 503; no keys (open, loopback).
A third `bentoml serve --host 0.0.0.0` without keys must refuse to start.

The scratch registry takes a minute or two to train and register; it is cached under
build/test-cache/service-<hash of the code it depends on>/ (set OPSLAB_TEST_NO_CACHE=1 to rebuild).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from ml import registry
from ml.config import ROOT
from ml.monitoring import reference
from ml.serving import accel, guard, runtime, schemas, settings, table, telemetry
from ml.testing import models as testing_models
from ml.testing import server

pytestmark = [pytest.mark.xdist_group("service"), pytest.mark.slow]

PREDICT_KEY = "predict-key-for-tests-0123456789"
ADMIN_KEY = "admin-key-for-tests-0123456789"
P = {"X-API-Key": PREDICT_KEY}
A = {"X-API-Key": ADMIN_KEY}
CACHE_INPUTS = [  # what the scratch models are built from (the serving code is not: it does not change them)
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "ml").rglob("*.py") if "serving" not in p.parts),
    "uv.lock",
]


# testing_models.build_registry's keys -> registered model names (besides sensor-anomaly's two versions)
REGISTERED = {
    "forecast": "sensor-forecast",
    "sla": "incident-sla",
    "ttr": "incident-ttr",
    "triage": "incident-triage",
    "system_team": "incident-system-team",
    "similar": "incident-similar",
    "clusters": "incident-clusters",
    "archive": "archive-forecast",
}
MISSING_ON_B = ("incident-ttr", "incident-system-team", "incident-clusters")  # exported copies removed


# --- the scratch registry (cached) -------------------------------------------------------------------
def _cache_key() -> str:
    h = hashlib.sha256()
    for rel in CACHE_INPUTS:
        h.update(rel.encode())
        h.update((ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


def _registry_env(root: Path) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_ARTIFACT_ROOT": (root / "artifacts").as_uri(),
        "OPSLAB_MODELS_DIR": str(root / "models"),
    }


def _build(root: Path) -> None:
    for old in root.parent.glob("service-*"):  # registries of code versions older than a day
        if old != root and time.time() - old.stat().st_mtime > 86_400:
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)  # a build that did not complete
    root.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in _registry_env(root).items():
            mp.setenv(k, v)
        built = testing_models.build_registry(root / "models")
    built["data"].sensors.to_parquet(root / "sensors.parquet")
    built["data"].incidents.to_parquet(root / "incidents.parquet")
    built["data"].archive.to_parquet(root / "archive.parquet")
    meta = {
        "anomaly": [r.to_dict() for r in built["anomaly"]],
        **{k: built[k].to_dict() for k in REGISTERED},
    }
    (root / "registry.json").write_text(json.dumps(meta, indent=1))
    (root / "COMPLETE").write_text("ok\n")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    if os.environ.get("OPSLAB_TEST_NO_CACHE"):
        root = tmp_path_factory.mktemp("service-registry")
    else:
        root = ROOT / "build" / "test-cache" / f"service-{_cache_key()}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".lock", "w") as lock:  # another test run building it: wait for that one
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "COMPLETE").exists():
            _build(root)
    return root


@pytest.fixture(scope="module")
def meta(scratch) -> dict:
    return json.loads((scratch / "registry.json").read_text())


# --- servers -----------------------------------------------------------------------------------------
class Server:
    def __init__(self, name: str, env: dict[str, str], workdir: Path, host: str = "127.0.0.1"):
        self.name, self.port = name, server.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("OPSLAB_", "MLFLOW_", "BENTOML_"))
        }
        self.predictions = workdir / f"{name}-predictions"
        self.state = workdir / f"{name}-monitoring"  # the operations jobs' files this server's /metrics reads
        full_env |= {"BENTOML_HOME": str(workdir / "bentoml"), "PYTHONUNBUFFERED": "1",
                     settings.ENV_PREDICTION_LOG: str(self.predictions), telemetry.ENV_STATE: str(self.state),
                     telemetry.ENV_INGEST_ROOT: str(workdir / f"{name}-ingest"), **env}  # fmt: skip
        self.started = time.monotonic()
        self.proc = server.start_server(full_env, self.log, self.port, host=host)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def wait(self, path: str = "/readyz", timeout: float = 240) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if self.client.get(path, timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.name} not answering 200 on {path} after {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    def stop(self) -> None:
        self.client.close()
        server.stop_server(self.proc)

    def post(self, path: str, body=None, headers=None, **kw) -> httpx.Response:
        return self.client.post(path, json=body if body is not None else {}, headers=headers, **kw)


@pytest.fixture(scope="module")
def servers(scratch, tmp_path_factory):
    work = tmp_path_factory.mktemp("servers")
    keyfile = work / "keys.txt"
    keyfile.write_text(f"# admin key for the tests\nadmin:sha256:{guard.hash_key(ADMIN_KEY).hex()}\n")
    env_a = _registry_env(scratch) | {
        settings.ENV_API_KEYS: f"predict:sha256:{guard.hash_key(PREDICT_KEY).hex()}",
        settings.ENV_API_KEYS_FILE: str(keyfile),
        settings.uri_env_var("sensor-anomaly"): "models:/sensor-anomaly/1",
    }
    fallback_models = work / "exported"
    shutil.copytree(scratch / "models", fallback_models)
    for name in MISSING_ON_B:
        shutil.rmtree(fallback_models / name)  # missing entirely
    tampered = fallback_models / "incident-sla" / registry.MODEL_FILE
    tampered.write_bytes(tampered.read_bytes() + b"\0")  # bytes no longer match the manifest's sha256
    ref_meta = fallback_models / "sensor-anomaly" / reference.REFERENCE_DIR / reference.REFERENCE_META
    ref_meta.write_text(
        ref_meta.read_text().replace('"model"', '"edited"')
    )  # reference_sha256 no longer matches
    env_b = {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{server.free_port()}",  # nothing listens there
        "OPSLAB_MODELS_DIR": str(fallback_models),
        settings.ENV_REQUIRED: "sensor-anomaly,sensor-forecast",
        settings.ENV_WORKERS: "1",  # its tests are about sources, not workers: one process loads less
    }
    a = Server("server-a", env_a, work)  # one worker per core: metrics and reloads across workers
    b = Server("server-b", env_b, work)
    refuse = Server("refuse", {settings.ENV_WORKERS: "1"}, work, host="0.0.0.0")
    try:
        started = {"a": a.wait("/readyz"), "b": b.wait("/readyz")}
        print(f"\nserver start (both at once on a shared box): A {started['a']:.0f}s, B {started['b']:.0f}s")
        yield {"a": a, "b": b, "refuse": refuse, "started": started}
    finally:
        for s in (a, b, refuse):
            s.stop()


def settled(srv: Server, headers=None, timeout: float = 180) -> Server:
    """Ready means the required models are up; wait until the others have been tried too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {m["name"]: m["state"] for m in srv.post("/models", headers=headers).json()["models"]}
        if "loading" not in states.values():
            return srv
        time.sleep(0.5)
    raise AssertionError(f"{srv.name}: models still loading after {timeout}s: {states}")


@pytest.fixture(scope="module")
def a(servers) -> Server:
    return settled(servers["a"], P)


@pytest.fixture(scope="module")
def b(servers) -> Server:
    return settled(servers["b"])


# --- data for requests ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sensors(scratch) -> pd.DataFrame:
    return pd.read_parquet(scratch / "sensors.parquet")


@pytest.fixture(scope="module")
def incidents(scratch) -> pd.DataFrame:
    from ml.incidents.targets import time_split

    _, test = time_split(pd.read_parquet(scratch / "incidents.parquet"), test_fraction=0.2)
    return test.head(25)


def readings_body(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            "sensor_id": r.sensor_id,
            "timestamp": r.timestamp.isoformat(),
            "value": None if pd.isna(r.value) else float(r.value),
        }
        for r in frame.itertuples()
    ]


def incidents_body(frame: pd.DataFrame) -> list[dict]:
    return [schemas.incident_payload(rec) for rec in frame.to_dict("records")]


def two_sensor_window(sensors: pd.DataFrame, n: int = 36) -> pd.DataFrame:
    ids = sorted(sensors["sensor_id"].unique())[:2]
    part = sensors[sensors["sensor_id"].isin(ids)]
    start = part["timestamp"].min() + pd.Timedelta(days=12)
    window = part[(part["timestamp"] >= start) & (part["timestamp"] < start + pd.Timedelta(hours=n))]
    return window[["sensor_id", "timestamp", "value"]].reset_index(drop=True)


def load_version(name: str, version: str, scratch: Path):
    """A registered version loaded the batch way (no service code involved)."""
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        for k, v in _registry_env(scratch).items():
            mp.setenv(k, v)
        c = registry.client()
        mv = c.get_model_version(name, version)
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
        if name == "sensor-forecast":
            return registry.load_forecaster(local, mv.tags["model_sha256"])
        return registry.load_sklearn(local, mv.tags["model_sha256"])


# --- fast, in-process -----------------------------------------------------------------------------------
def test_model_table_is_consistent():
    table.check()
    assert {"/detect_anomaly", "/forecast", "/predict_sla", "/predict_ttr"} <= set(table.ENDPOINTS)
    assert {"/triage", "/system_team", "/similar_incidents", "/cluster"} <= set(table.ENDPOINTS)
    assert set(GOOD_BODIES) == {r for r, e in table.ENDPOINTS.items() if e.pick_model is None}


def test_key_ring_parses_hashed_and_plain_keys_and_scopes():
    ring = guard.KeyRing.parse(
        f"predict:sha256:{guard.hash_key('p' * 20).hex()}\n# comment\nadmin:{'a' * 20}", origin="t"
    )
    assert ring.enabled and ring.plaintext_entries == 1
    assert ring.scopes_of("p" * 20) == {"predict"}
    assert ring.scopes_of("a" * 20) == {"admin", "predict"}
    assert ring.scopes_of("nope" * 5) == set()
    for bad in ("root:sha256:" + "0" * 64, "predict:sha256:xyz", "predict:short", "predict"):
        with pytest.raises(guard.KeyConfigError):
            guard.KeyRing.parse(bad)
    assert guard.required_scope("/models/reload") == "admin"
    assert guard.required_scope("/readyz") is None and guard.required_scope("/forecast") == "predict"
    assert guard.required_scope("//models/reload") == guard.required_scope("/models/reload/") == "admin"
    assert guard.is_loopback("127.0.0.1") and guard.is_loopback("::1") and not guard.is_loopback("0.0.0.0")


def test_fast_isolation_forest_scores_equal_sklearn_bit_for_bit(scratch, sensors):
    from sklearn.ensemble import IsolationForest

    pipe = load_version("sensor-anomaly", "2", scratch)
    X = pipe.named_steps["features"].transform(sensors[["sensor_id", "timestamp", "value"]].head(500))
    forest = pipe.named_steps["detector"]
    assert np.array_equal(accel.fast_score_samples(forest, X), IsolationForest.score_samples(forest, X))


# --- server A: health, models, parity -----------------------------------------------------------------
def test_health_endpoints_are_open_and_metrics_name_the_models(a, servers):
    assert servers["started"]["a"] < 240
    for path in ("/livez", "/readyz", "/healthz"):
        assert a.client.get(path).status_code == 200, path
    metrics = a.client.get("/metrics").text
    assert 'opslab_model_loaded{model="incident-sla"' in metrics and "opslab_ready 1" in metrics
    assert "bentoml_service_request_total" in metrics


def test_metrics_count_predictions_per_model_version_across_workers_and_read_the_alert_state(a, meta):
    from prometheus_client.parser import text_string_to_metric_families

    def value(name: str, **labels) -> float:
        text = a.client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for smp in family.samples:
                if smp.name == name and all(smp.labels.get(k) == v for k, v in labels.items()):
                    return smp.value
        return 0.0

    labels = {"endpoint": "/predict_sla", "model": "incident-sla", "version": meta["sla"]["version"]}
    before = value("opslab_predictions_total", **labels)
    for _ in range(6):  # two workers: the requests spread over both, the scrape sums them
        assert a.post("/predict_sla", {"incidents": [GOOD_INCIDENT] * 2}, headers=P).status_code == 200
    assert value("opslab_predictions_total", **labels) == before + 12
    assert value("opslab_prediction_latency_seconds_count", **labels) >= 6
    a.state.mkdir(exist_ok=True)
    (a.state / telemetry.ALERT_FILE).write_text(
        json.dumps({"active": {"drift:incident-sla": {"severity": "warning", "message": "test"}}})
    )
    assert value("opslab_alert_active", alert="drift:incident-sla") == 1
    (a.state / telemetry.ALERT_FILE).unlink()


def test_models_lists_versions_sources_and_the_env_rollback(a, meta):
    r = a.post("/models", headers=P)
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert r.json()["ready"] is True
    assert set(models) == set(table.MODELS)
    anomaly = models["sensor-anomaly"]
    # champion is v2, the env var pins v1: that is the rollback
    assert meta["anomaly"][1]["alias"] == "champion" and meta["anomaly"][1]["version"] == "2"
    assert anomaly["version"] == "1" and anomaly["source"] == "override"
    assert anomaly["model_sha256"] == meta["anomaly"][0]["model_sha256"]
    for key, name in REGISTERED.items():
        m = models[name]
        assert m["loaded"] and m["source"] == "registry" and m["alias"] == "champion"
        assert (m["version"], m["model_sha256"]) == (meta[key]["version"], meta[key]["model_sha256"])
        assert m["metrics"], name


def test_detect_anomaly_equals_batch_scoring(a, sensors, scratch, meta):
    from ml.sensors import anomaly

    window = two_sensor_window(sensors)
    window.loc[5, "value"] = np.nan  # a missing reading gets no score
    window.loc[20, "value"] = window["value"].max() * 3  # and a spike
    r = a.post("/detect_anomaly", {"readings": readings_body(window)}, headers=P)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model_name"], body["model_version"]) == ("sensor-anomaly", "1")
    assert body["model_sha256"] == meta["anomaly"][0]["model_sha256"]
    batch = anomaly.score_readings(load_version("sensor-anomaly", "1", scratch), window, explain="all")
    got = pd.DataFrame(body["results"])
    assert len(got) == len(batch)
    assert got["score"].isna().tolist() == batch["score"].isna().tolist()
    assert np.array_equal(got["score"].dropna().to_numpy(), batch["score"].dropna().to_numpy())
    assert got["is_anomaly"].tolist() == batch["is_anomaly"].tolist()
    assert got["top_feature"].fillna("-").tolist() == batch["top_feature"].fillna("-").tolist()
    assert bool(got.loc[20, "is_anomaly"])
    assert all(0.0 <= s <= 1.0 for s in got["score"].dropna())


def test_forecast_equals_the_artifact_with_and_without_history(a, scratch, sensors):
    fc = load_version("sensor-forecast", "1", scratch)
    sid = fc.sensor_ids[0]
    end = pd.Timestamp(fc.info().set_index("sensor_id").loc[sid, "train_end"])
    history = pd.DataFrame(
        {
            "timestamp": pd.date_range(end + pd.Timedelta("1h"), periods=5, freq="1h"),
            "value": [50.0, 51.0, None, 49.0, 48.5],
        }
    )
    items = [
        {"sensor_id": sid, "horizon": 6},
        {
            "sensor_id": fc.sensor_ids[1],
            "horizon": 3,
            "history": [
                {"timestamp": t.isoformat(), "value": None if pd.isna(v) else v}
                for t, v in zip(history["timestamp"], history["value"], strict=True)
            ],
        },
    ]
    r = a.post("/forecast", {"items": items}, headers=P)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    expected = [
        fc.forecast(sid, 6),
        fc.forecast(fc.sensor_ids[1], 3, history.assign(value=history["value"].astype(float))),
    ]
    for got, exp in zip(res, expected, strict=True):
        pts = pd.DataFrame(got["forecast"])
        assert len(pts) == len(exp) and got["model"] == exp["model"].iloc[0]
        assert (pd.to_datetime(pts["timestamp"]) == exp["timestamp"].reset_index(drop=True)).all()
        for col in ("yhat", "lo80", "hi80", "lo95", "hi95"):
            assert np.array_equal(pts[col].to_numpy(dtype=float), exp[col].to_numpy(dtype=float)), col
        assert (pts["lo95"] <= pts["lo80"]).all() and (pts["lo80"] <= pts["yhat"]).all()
        assert (pts["yhat"] <= pts["hi80"]).all() and (pts["hi80"] <= pts["hi95"]).all()


def test_predict_sla_equals_batch_probabilities_and_decides_at_the_model_threshold(
    a, scratch, incidents, meta
):
    from ml.incidents import sla

    r = a.post("/predict_sla", {"incidents": incidents_body(incidents)}, headers=P)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model_name"], body["model_version"]) == ("incident-sla", meta["sla"]["version"])
    model = load_version("incident-sla", meta["sla"]["version"], scratch)
    probs = sla.breach_probability(model, incidents)
    got = np.array([x["breach_probability"] for x in body["results"]])
    assert np.array_equal(got, probs)
    assert body["threshold_source"].startswith("model metric")
    assert [x["breach_predicted"] for x in body["results"]] == list(probs >= body["threshold"])
    assert [x["number"] for x in body["results"]] == incidents["number"].tolist()


def test_every_answered_item_is_logged_with_the_request_id_it_echoes(a, incidents, meta):
    from ml.monitoring import predlog

    r = a.post(
        "/predict_sla",
        {"incidents": incidents_body(incidents.head(3))},
        headers={**P, "X-Request-ID": "trace-42"},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
    generated = a.post("/predict_sla", {"incidents": incidents_body(incidents.head(1))}, headers=P)
    assert len(generated.headers["x-request-id"]) == 32  # none sent: one is made and echoed
    deadline, logged = time.monotonic() + 15, pd.DataFrame()
    while time.monotonic() < deadline:  # written in batches by a background thread (flush every 2 s)
        logged = predlog.read_log(a.predictions, "incident-sla")
        if (logged["request_id"] == "trace-42").sum() == 3:
            break
        time.sleep(0.5)
    mine = logged[logged["request_id"] == "trace-42"]
    assert list(mine["item"]) == [0, 1, 2] and (mine["model_version"] == meta["sla"]["version"]).all()
    assert [x["incident"]["number"] for x in predlog.parsed(mine, "input")] == incidents["number"].head(
        3
    ).tolist()
    assert "breach_probability" in predlog.parsed(mine, "output")[0]
    metrics = a.client.get("/metrics").text
    assert "opslab_prediction_log_dropped_total 0" in metrics


def test_predict_ttr_equals_batch_quantiles(a, scratch, incidents, meta):
    from ml.incidents import ttr

    r = a.post("/predict_ttr", {"incidents": incidents_body(incidents)}, headers=P)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["model_version"] == meta["ttr"]["version"]
        and body["model_sha256"] == meta["ttr"]["model_sha256"]
    )
    expected = ttr.predict_ttr(load_version("incident-ttr", meta["ttr"]["version"], scratch), incidents)
    got = pd.DataFrame(body["results"])
    for col in ("p10", "p50", "p90"):
        assert np.array_equal(got[col].to_numpy(), expected[col].to_numpy()), col
    assert (got["expected_hours"] == got["p50"]).all()
    assert ((got["p10"] <= got["p50"]) & (got["p50"] <= got["p90"])).all()


def _stamped(body: dict, meta: dict, key: str) -> None:
    """The answer names the registered version that made it."""
    expected = (REGISTERED[key], meta[key]["version"], meta[key]["model_sha256"], "registry")
    assert (body["model_name"], body["model_version"], body["model_sha256"], body["model_source"]) == expected


def _assert_heads_equal_batch(results: list[dict], model, rows: pd.DataFrame, top_k: int) -> None:
    """Every head of the service's answer == `predict_frame(rows, top_k)` and the scores layer's columns."""
    from ml.incidents import scoring, triage

    expected = model.predict_frame(rows, top_k=top_k)
    block = scoring._heads_block(model, {}, rows)  # what data/scores/open_incidents.parquet carries
    assert [x["number"] for x in results] == rows["number"].tolist()
    abstained = 0
    for t in model.target_names_:
        exp = triage.head_frame(model, expected, t).reset_index(drop=True)
        got = pd.DataFrame([x[t] for x in results])
        assert got["label"].tolist() == exp["label"].tolist() == block[f"suggested_{t}_label"].tolist()
        assert np.array_equal(got["confidence"].to_numpy(), exp["confidence"].to_numpy())
        assert np.array_equal(got["confidence"].to_numpy(), block[f"suggested_{t}_confidence"].to_numpy())
        assert got["abstain"].tolist() == exp["abstain"].tolist() == block[f"suggested_{t}_abstain"].tolist()
        assert got["prediction"].tolist() == [
            None if a else p for a, p in zip(exp["abstain"], exp["prediction"], strict=True)
        ]
        assert got["reason"].tolist() == [
            r if a else None for a, r in zip(exp["abstain"], exp["reason"], strict=True)
        ]
        assert got["threshold"].tolist() == [None if np.isinf(v) else v for v in exp["threshold"]]
        assert [[p["label"] for p in top] for top in got["top"]] == exp["top_labels"].tolist()
        assert [[p["probability"] for p in top] for top in got["top"]] == exp["top_probabilities"].tolist()
        assert all(
            len(top) == min(top_k, len(model.classes_list_[model.target_names_.index(t)]))
            for top in got["top"]
        )
        abstained += int(got["abstain"].sum())
        assert all(r for r in got.loc[got["abstain"], "reason"])  # an abstention always says why
    assert abstained, "these rows should include at least one abstention (the fixture models do abstain)"


def test_triage_equals_batch_predict_frame_with_abstentions_and_top_k(a, scratch, incidents, meta):
    r = a.post("/triage", {"incidents": incidents_body(incidents), "top_k": 2}, headers=P)
    assert r.status_code == 200, r.text
    body = r.json()
    _stamped(body, meta, "triage")
    assert body["top_k"] == 2 and len(body["results"]) == len(incidents)
    model = load_version("incident-triage", meta["triage"]["version"], scratch)
    _assert_heads_equal_batch(body["results"], model, incidents, 2)
    # top_k defaults to the training params' (3), and is capped by the head's classes
    r = a.post("/triage", {"incidents": incidents_body(incidents.head(2))}, headers=P)
    assert r.status_code == 200 and r.json()["top_k"] == schemas.DEFAULT_TOP_K
    r = a.post("/triage", {"incidents": incidents_body(incidents.head(2)), "top_k": schemas.MAX_K}, headers=P)
    assert r.status_code == 200
    for j, head in enumerate(model.target_names_):
        assert len(r.json()["results"][0][head]["top"]) == min(schemas.MAX_K, len(model.classes_list_[j]))


def test_system_team_equals_batch_predict_frame(a, scratch, incidents, meta):
    r = a.post("/system_team", {"incidents": incidents_body(incidents), "top_k": 3}, headers=P)
    assert r.status_code == 200, r.text
    body = r.json()
    _stamped(body, meta, "system_team")
    assert set(body["results"][0]) == {"number", "cmdb_ci", "owning_team"}
    model = load_version("incident-system-team", meta["system_team"]["version"], scratch)
    _assert_heads_equal_batch(body["results"], model, incidents, 3)


def test_similar_incidents_equal_the_index_query(a, scratch, incidents, meta):
    r = a.post("/similar_incidents", {"incidents": incidents_body(incidents), "k": 4}, headers=P)
    assert r.status_code == 200, r.text
    body = r.json()
    _stamped(body, meta, "similar")
    assert body["k"] == 4
    index = load_version("incident-similar", meta["similar"]["version"], scratch)
    expected = index.query(incidents.reset_index(drop=True), k=4)
    got = pd.DataFrame(
        [{"query": i, **hit} for i, res in enumerate(body["results"]) for hit in res["similar"]]
    )
    assert [x["number"] for x in body["results"]] == incidents["number"].tolist()
    assert len(got) == len(expected) == 4 * len(incidents)
    for col in ("query", "rank", "number", "assignment_group", "category", "cmdb_ci", "short_description"):
        assert got[col].tolist() == expected[col].tolist(), col
    assert np.array_equal(got["similarity"].to_numpy(), expected["similarity"].to_numpy())
    assert np.array_equal(got["ttr_hours"].to_numpy(dtype=float), expected["ttr_hours"].to_numpy(dtype=float))
    assert (pd.to_datetime(got["resolved_at"]) == expected["resolved_at"]).all()
    assert (got.groupby("query")["similarity"].diff().dropna() <= 0).all()  # most similar first
    assert (got["ttr_hours"] > 0).all() and got["assignment_group"].notna().all()
    r = a.post("/similar_incidents", {"incidents": incidents_body(incidents.head(1))}, headers=P)
    assert r.status_code == 200 and len(r.json()["results"][0]["similar"]) == schemas.DEFAULT_K


def test_cluster_equals_batch_predict_and_top_terms(a, scratch, incidents, meta):
    from ml.incidents import scoring

    r = a.post("/cluster", {"incidents": incidents_body(incidents)}, headers=P)
    assert r.status_code == 200, r.text
    body = r.json()
    _stamped(body, meta, "clusters")
    model = load_version("incident-clusters", meta["clusters"]["version"], scratch)
    block = scoring._cluster_block(model, {}, incidents)
    got = pd.DataFrame(body["results"])
    assert got["cluster"].tolist() == model.predict(incidents).tolist() == block["cluster"].tolist()
    assert got["cluster_terms"].tolist() == block["cluster_terms"].tolist()
    assert got["top_terms"].tolist() == [model.top_terms_[str(c)] for c in got["cluster"]]
    assert got["number"].tolist() == incidents["number"].tolist()


def archive_body(daily: pd.DataFrame, days: int) -> list[dict]:
    recent = daily[daily["date"] > daily["date"].max() - pd.Timedelta(days=days)].drop(columns="is_filled")
    recent = recent.assign(date=recent["date"].dt.strftime("%Y-%m-%d"))
    return [
        {k: (None if pd.isna(v) else v) for k, v in rec.items()}
        for rec in json.loads(recent.to_json(orient="records"))
    ]


def test_forecast_archive_equals_the_batch_forecast_and_refuses_bad_records(a, scratch, meta):
    from ml.archive.predict import forecast_latest

    daily = pd.read_parquet(scratch / "archive.parquet")
    model = load_version("archive-forecast", meta["archive"]["version"], scratch)
    body = archive_body(daily, model.min_history_days() + 3)
    r = a.post("/forecast_archive", {"records": body}, headers=P)
    assert r.status_code == 200, r.text
    got = r.json()
    _stamped(got, meta, "archive")
    batch = forecast_latest(model, daily).set_index("source_id")  # every day of history: same numbers
    assert [x["source_id"] for x in got["results"]] == batch.index.tolist()
    for res in got["results"]:
        assert res["origin"] == batch.loc[res["source_id"], "origin"].strftime("%Y-%m-%d")
        assert {(p["target"], p["horizon"]) for p in res["forecasts"]} == {
            (t, h) for t in ("archived_gb", "savings_gb") for h in ("week", "month")
        }
        for p in res["forecasts"]:
            row = batch.loc[res["source_id"]]
            assert (p["gb"], p["lo"], p["hi"]) == pytest.approx(
                (row[p["output"]], row[f"{p['output']}_lo"], row[f"{p['output']}_hi"]), rel=1e-12
            )
            assert p["lo"] <= p["gb"] <= p["hi"]
    bad = [dict(x) for x in body]
    bad[4]["share_documents"] = min(1.0, bad[4]["share_documents"] + 0.3)  # shares no longer sum to 1
    r = a.post("/forecast_archive", {"records": bad}, headers=P)
    assert r.status_code == 422 and "share" in r.text, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["records", 4], r.text
    r = a.post("/forecast_archive", {"records": body[-30:]}, headers=P)  # too short a history
    assert r.status_code == 422 and "days of history" in r.text, r.text
    r = a.post("/forecast_archive", {"records": [{**body[0], "avg_file_size_mb": -1}]}, headers=P)
    assert r.status_code == 400 and "avg_file_size_mb" in r.text, r.text


def run_reference(name: str, version: str, scratch: Path) -> pd.DataFrame:
    import mlflow

    from ml.monitoring import reference

    with pytest.MonkeyPatch.context() as mp:
        for k, v in _registry_env(scratch).items():
            mp.setenv(k, v)
        run_id = registry.client().get_model_version(name, version).run_id
        return reference.load_reference(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"model/{reference.REFERENCE_DIR}"
            )
        )


def test_check_drift_equals_the_monitoring_psi_against_the_saved_reference(
    a, sensors, scratch, incidents, meta
):
    from ml.monitoring import drift

    params = settings.get()
    window = sensors[sensors["timestamp"] >= sensors["timestamp"].max() - pd.Timedelta(days=4)]
    window = window[["sensor_id", "timestamp", "value"]].reset_index(drop=True)
    r = a.post("/check_drift", {"domain": "sensors", "readings": readings_body(window)}, headers=P)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model_name"], body["model_version"]) == ("sensor-anomaly", "1")  # A serves v1
    reference = run_reference("sensor-anomaly", "1", scratch)
    expected = drift.check_drift(
        "sensors", reference, window, threshold=params.drift_psi_threshold, bins=params.drift_bins
    )
    got = {f["feature"]: f["psi"] for f in body["features"]}
    assert got == {str(k): float(v) for k, v in zip(expected["feature"], expected["psi"], strict=True)}
    assert body["psi_threshold"] == params.drift_psi_threshold and body["reference_rows"] == len(reference)
    # a level shift of every reading is drift
    shifted = window.assign(value=window["value"] * 1.5 + 20)
    r = a.post("/check_drift", {"domain": "sensors", "readings": readings_body(shifted)}, headers=P)
    assert r.status_code == 200 and r.json()["drifted"] is True
    assert all(f["drifted"] == (f["psi"] > params.drift_psi_threshold) for f in r.json()["features"])
    r = a.post("/check_drift", {"domain": "incidents", "incidents": incidents_body(incidents)}, headers=P)
    assert r.status_code == 200, r.text
    assert r.json()["model_name"] == "incident-sla" and r.json()["rows"] == len(incidents)
    assert {"category", "open_hour"} <= {f["feature"] for f in r.json()["features"]}


# --- server A: bad input ---------------------------------------------------------------------------------
GOOD_READING = {"sensor_id": "cpu-01", "timestamp": "2024-01-05T00:00:00", "value": 1.5}
GOOD_INCIDENT = {
    "opened_at": "2024-05-01T10:00:00",
    "impact": 2,
    "urgency": 2,
    "priority": 3,
    "sla_target_hours": 24,
}
GOOD_TICKET = {
    **GOOD_INCIDENT,
    "short_description": "VPN: certificate error when connecting",
    "description": "Since this morning the VPN client says the certificate is not valid.",
    "contact_type": "Phone",
}
GOOD_BODIES = {  # a valid body per endpoint whose model is fixed (every route but /check_drift)
    "/detect_anomaly": {"readings": [GOOD_READING]},
    "/forecast": {"items": [{"sensor_id": "cpu-01", "horizon": 2}]},
    "/predict_sla": {"incidents": [GOOD_INCIDENT]},
    "/predict_ttr": {"incidents": [GOOD_INCIDENT]},
    "/triage": {"incidents": [GOOD_TICKET], "top_k": 2},
    "/system_team": {"incidents": [GOOD_TICKET]},
    "/similar_incidents": {"incidents": [GOOD_TICKET], "k": 2},
    "/cluster": {"incidents": [GOOD_TICKET]},
    "/forecast_archive": {
        "records": [  # one file share, 95 quiet days (a source needs its longest window + 1)
            {
                "source_id": "share-x",
                "date": str(day.date()),
                "total_files": 1000 + i,
                "avg_file_size_mb": 2.0,
                "share_documents": 0.5,
                "share_images": 0.2,
                "share_video": 0.1,
                "share_email": 0.1,
                "share_other": 0.1,
                "archive_frequency_per_day": 1.0,
                "retention_days": 365,
                "archived_gb": 1.5,
                "saved_gb": 0.5,
            }  # fmt: skip
            for i, day in enumerate(pd.date_range("2024-01-01", periods=95, freq="D"))
        ]
    },
}
S = settings.get()
S_MAX_K = schemas.MAX_K
BAD = [
    # (route, raw body or json, expected status, a field the error must name)
    ("/detect_anomaly", {"readings": [GOOD_READING], "extra": 1}, 400, "extra"),
    ("/detect_anomaly", {"readings": [{**GOOD_READING, "colour": "red"}]}, 400, "colour"),
    (
        "/detect_anomaly",
        b'{"readings": [{"sensor_id": "cpu-01", "timestamp": "2024-01-05T00:00:00", "value": NaN}]}',
        400,
        "value",
    ),
    (
        "/detect_anomaly",
        b'{"readings": [{"sensor_id": "cpu-01", "timestamp": "2024-01-05T00:00:00", "value": Infinity}]}',
        400,
        "value",
    ),
    (
        "/detect_anomaly",
        b'{"readings": [{"sensor_id": "cpu-01", "timestamp": "2024-01-05T00:00:00", "value": 1e999}]}',
        400,
        "value",
    ),
    (
        "/detect_anomaly",
        {"readings": [{**GOOD_READING, "timestamp": "2024-02-30T00:00:00"}]},
        400,
        "timestamp",
    ),
    (
        "/detect_anomaly",
        {"readings": [{**GOOD_READING, "timestamp": "1500-01-01T00:00:00"}]},
        400,
        "timestamp",
    ),
    ("/detect_anomaly", {"readings": [{**GOOD_READING, "timestamp": "yesterday"}]}, 400, "timestamp"),
    ("/detect_anomaly", {"readings": [{**GOOD_READING, "value": "1.5"}]}, 400, "value"),
    ("/detect_anomaly", {"readings": [{**GOOD_READING, "sensor_id": 7}]}, 400, "sensor_id"),
    ("/detect_anomaly", {"readings": []}, 400, "readings"),
    ("/detect_anomaly", {"readings": [GOOD_READING] * (S.max_items + 1)}, 400, "readings"),
    ("/detect_anomaly", {"readings": [{**GOOD_READING, "sensor_id": "no-such-sensor"}]}, 422, "sensor_id"),
    ("/detect_anomaly", {"readings": [GOOD_READING, GOOD_READING]}, 422, "timestamp"),
    ("/detect_anomaly", {"readings": [GOOD_READING], "explain": "why"}, 400, "explain"),
    ("/detect_anomaly", [GOOD_READING], 400, ""),
    ("/detect_anomaly", b'{"readings": [', 400, ""),
    ("/forecast", {"items": [{"sensor_id": "cpu-01", "horizon": 0}]}, 400, "horizon"),
    ("/forecast", {"items": [{"sensor_id": "cpu-01", "horizon": 10_000}]}, 400, "horizon"),
    ("/forecast", {"items": [{"sensor_id": "cpu-01", "horizon": 2.5}]}, 400, "horizon"),
    ("/forecast", {"items": [{"sensor_id": "cpu-01", "horizon": 49}]}, 422, "horizon"),  # artifact max 48
    ("/forecast", {"items": [{"sensor_id": "ghost", "horizon": 3}]}, 422, "sensor_id"),
    (
        "/forecast",
        {"items": [{"sensor_id": "cpu-01", "history": [{"timestamp": "2030-01-01T00:30:00", "value": 1}]}]},
        422,
        "history",
    ),
    ("/forecast", {"items": []}, 400, "items"),
    ("/predict_sla", {"incidents": [{**GOOD_INCIDENT, "made_sla": True}]}, 400, "made_sla"),
    ("/predict_sla", {"incidents": [{**GOOD_INCIDENT, "priority": 9}]}, 400, "priority"),
    ("/predict_sla", {"incidents": [{**GOOD_INCIDENT, "impact": "2"}]}, 400, "impact"),
    ("/predict_sla", {"incidents": [{**GOOD_INCIDENT, "sla_target_hours": -1}]}, 400, "sla_target_hours"),
    (
        "/predict_sla",
        {"incidents": [{**GOOD_INCIDENT, "description": "x" * (S.max_text_chars + 1)}]},
        400,
        "description",
    ),
    (
        "/predict_sla",
        {"incidents": [{k: v for k, v in GOOD_INCIDENT.items() if k != "opened_at"}]},
        400,
        "opened_at",
    ),
    (
        "/predict_ttr",
        {"incidents": [{**GOOD_INCIDENT, "opened_at": "2024-13-01T00:00:00"}]},
        400,
        "opened_at",
    ),
    ("/predict_ttr", {}, 400, "incidents"),
    ("/triage", {"incidents": [GOOD_TICKET], "top_k": 0}, 400, "top_k"),
    ("/triage", {"incidents": [GOOD_TICKET], "top_k": S_MAX_K + 1}, 400, "top_k"),
    ("/triage", {"incidents": [GOOD_TICKET], "top_k": "3"}, 400, "top_k"),
    ("/triage", {"incidents": []}, 400, "incidents"),
    ("/triage", {"incidents": [GOOD_TICKET], "tickets": [GOOD_TICKET]}, 400, "tickets"),
    ("/triage", {"incidents": [{**GOOD_TICKET, "owning_team": "Network Ops"}]}, 400, "owning_team"),
    ("/triage", {"incidents": [{**GOOD_TICKET, "short_description": 42}]}, 400, "short_description"),
    ("/system_team", {"incidents": [GOOD_TICKET], "top_k": 2.5}, 400, "top_k"),
    ("/system_team", {"incidents": [GOOD_TICKET], "top_k": None}, 400, "top_k"),
    (
        "/system_team",
        {"incidents": [{**GOOD_TICKET, "resolved_at": "2024-05-02T10:00:00"}]},
        400,
        "resolved_at",
    ),
    ("/system_team", {"incidents": [GOOD_TICKET] * (S.max_items + 1)}, 400, "incidents"),
    ("/system_team", {"incidents": {}}, 400, "incidents"),
    ("/similar_incidents", {"incidents": [GOOD_TICKET], "k": 0}, 400, "k"),
    ("/similar_incidents", {"incidents": [GOOD_TICKET], "k": S_MAX_K + 1}, 400, "k"),
    ("/similar_incidents", {"incidents": [GOOD_TICKET], "k": True}, 400, "k"),
    ("/similar_incidents", {"incidents": []}, 400, "incidents"),
    ("/similar_incidents", {"incidents": [GOOD_TICKET], "top_k": 3}, 400, "top_k"),
    ("/similar_incidents", {"incidents": [GOOD_TICKET, GOOD_INCIDENT]}, 422, "1.short_description"),
    (
        "/similar_incidents",
        {"incidents": [{**GOOD_TICKET, "short_description": "  ", "description": None}]},
        422,
        "short_description",
    ),
    ("/cluster", {"incidents": []}, 400, "incidents"),
    ("/cluster", {"incidents": [GOOD_TICKET], "k": 3}, 400, "k"),
    ("/cluster", {"incidents": [{**GOOD_TICKET, "category": ["Network"]}]}, 400, "category"),
    (
        "/cluster",
        {"incidents": [{**GOOD_TICKET, "description": "x" * (S.max_text_chars + 1)}]},
        400,
        "description",
    ),
    ("/models/reload", {"uris": {"sensor-anomaly": "http://evil/x"}}, 400, "sensor-anomaly"),
    ("/models/reload", {"models": ["no-such-model"]}, 400, "models"),
    ("/models/reload", {"uris": None}, 400, "uris"),
    ("/check_drift", {"domain": "weather", "readings": [GOOD_READING]}, 400, "domain"),
    ("/check_drift", {"domain": "sensors", "incidents": [GOOD_INCIDENT]}, 422, "incidents"),
    ("/check_drift", {"domain": "sensors"}, 422, "readings"),
    (
        "/check_drift",
        {"domain": "sensors", "readings": [{**GOOD_READING, "sensor_id": "ghost"}]},
        422,
        "readings",
    ),
]


@pytest.mark.parametrize("route,body,status,field", BAD, ids=[f"{r}-{i}" for i, (r, *_) in enumerate(BAD)])
def test_bad_input_is_a_4xx_naming_the_field(a, route, body, status, field):
    headers = {**A, "Content-Type": "application/json"}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = a.client.post(route, content=content, headers=headers)
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert "Traceback" not in r.text and 'File "' not in r.text
    payload = r.json()
    assert payload.get("error")
    if field:
        locs = [".".join(str(p) for p in d.get("loc", [])) for d in payload.get("detail", [])]
        assert any(field in loc for loc in locs), (field, payload)


def test_body_size_content_type_and_methods(a):
    big = b'{"readings": [' + b" " * (S.max_body_bytes + 10) + b"]}"
    r = a.client.post("/detect_anomaly", content=big, headers={**P, "Content-Type": "application/json"})
    assert r.status_code == 413 and "exceeds" in r.json()["error"]

    def chunks():
        yield b'{"readings": ['
        for _ in range(S.max_body_bytes // 1000 + 2):
            yield b" " * 1000
        yield b"]}"

    r = a.client.post("/detect_anomaly", content=chunks(), headers={**P, "Content-Type": "application/json"})
    assert r.status_code == 413  # no Content-Length: counted while reading
    r = a.client.post("/detect_anomaly", content=b"readings=1", headers={**P, "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert a.client.get("/detect_anomaly", headers=P).status_code in (404, 405)


# --- server A: auth -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "route,headers,status",
    [
        ("/predict_sla", {}, 401),
        ("/predict_sla", {"X-API-Key": "not-a-key-at-all-000"}, 401),
        ("/predict_sla", P, 200),
        ("/predict_sla", A, 200),
        ("/models", {}, 401),
        ("/models", P, 200),
        ("/models/reload", {}, 401),
        ("/models/reload", {"X-API-Key": "not-a-key-at-all-000"}, 401),
        ("/models/reload", P, 403),
        ("/models/reload", A, 200),
    ],
)
def test_auth_matrix(a, route, headers, status):
    body = (
        {"incidents": [GOOD_INCIDENT]}
        if route == "/predict_sla"
        else {"models": ["incident-ttr"]}
        if route.endswith("reload")
        else {}
    )
    r = a.post(route, body, headers=headers)
    assert r.status_code == status, r.text
    if status == 401:
        assert r.headers.get("www-authenticate", "").startswith("ApiKey")


def test_models_shows_paths_and_raw_errors_to_admin_keys_only(a):
    """Issue 16 item 8."""
    for headers, detail in ((P, False), (A, True)):
        models = {m["name"]: m for m in a.post("/models", headers=headers).json()["models"]}
        uris = [m["uri"] for m in models.values() if m["loaded"]]
        assert all(uris) if detail else not any(uris), (headers, uris)


def test_post_without_a_json_content_type_is_415_and_a_foreign_host_is_400(a):
    """Issue 16 item 5 over real HTTP: no Content-Type; a DNS-rebound Host name; repeated headers (item 6)."""
    body = json.dumps({"incidents": [GOOD_INCIDENT]}).encode()
    assert a.client.post("/predict_sla", content=body, headers=P).status_code == 415
    r = a.client.post(
        "/predict_sla", json={"incidents": [GOOD_INCIDENT]}, headers={**P, "Host": "evil.example"}
    )
    assert r.status_code == 400 and "Host" in r.json()["error"]
    dup = [("X-API-Key", PREDICT_KEY), ("Content-Type", "text/plain"), ("Content-Type", "application/json")]
    r = a.client.post("/predict_sla", content=body, headers=httpx.Headers(dup))
    assert r.status_code == 400 and "repeated" in r.json()["error"]


def test_unknown_paths_share_one_metrics_label(a):
    """Issue 16 item 7: 404s and 401s on random paths do not grow the metrics series."""
    for i in range(5):
        a.client.get(f"/x{i}-{time.time_ns()}")
        a.client.post(f"/y{i}-{time.time_ns()}", json={})
    metrics = a.client.get("/metrics").text
    assert 'endpoint="/__other__"' in metrics
    assert not [line for line in metrics.splitlines() if 'endpoint="/x' in line or 'endpoint="/y' in line]
    assert 'endpoint="/predict_sla"' in metrics


def test_docs_and_health_need_no_key(a):
    assert a.client.get("/docs.json").status_code == 200
    assert a.client.get("/livez").status_code == 200


# --- server A: reload under load, rollback ------------------------------------------------------------------
def test_reload_swaps_models_under_load_without_failing_a_request(a, sensors, incidents, meta):
    readings = {"readings": readings_body(two_sensor_window(sensors, 24))}
    tickets = {"incidents": incidents_body(incidents.head(3))}
    stop = threading.Event()
    seen: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def hammer(route, body):
        with httpx.Client(base_url=a.url, timeout=60) as c:
            while not stop.is_set():
                r = c.post(route, json=body, headers=P)
                version = r.json().get("model_version") if r.status_code == 200 else None
                with lock:
                    seen.append((r.status_code, f"{route}:{version}"))

    workers = [
        threading.Thread(target=hammer, args=(route, body))
        for route, body in [
            ("/detect_anomaly", readings),
            ("/detect_anomaly", readings),
            ("/predict_sla", tickets),
        ]
    ]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        r = a.post("/models/reload", {"uris": {"sensor-anomaly": "models:/sensor-anomaly/2"}}, headers=A)
        assert r.status_code == 200, r.text
        res = {x["name"]: x for x in r.json()["results"]}["sensor-anomaly"]
        assert (res["status"], res["version_before"], res["version_after"]) == ("swapped", "1", "2")
        time.sleep(1.0)
        # roll back by source override, still under load
        r = a.post("/models/reload", {"uris": {"sensor-anomaly": "models:/sensor-anomaly/1"}}, headers=A)
        assert {x["name"]: x for x in r.json()["results"]}["sensor-anomaly"]["version_after"] == "1"
        time.sleep(1.0)
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    statuses = [s for s, _ in seen]
    assert statuses and set(statuses) == {200}, (
        f"{len(statuses)} requests, non-200: {[s for s in statuses if s != 200][:5]}"
    )
    versions = {v for _, v in seen}
    assert {"/detect_anomaly:1", "/detect_anomaly:2"} <= versions


def test_reload_to_a_missing_version_keeps_the_serving_model(a):
    r = a.post("/models/reload", {"uris": {"incident-ttr": "models:/incident-ttr/99"}}, headers=A)
    assert r.status_code == 200
    res = {x["name"]: x for x in r.json()["results"]}["incident-ttr"]
    assert res["status"] == "failed" and "incident-ttr" in res["error"] and res["version_after"] == "1"
    assert a.post("/predict_ttr", {"incidents": [GOOD_INCIDENT]}, headers=P).status_code == 200
    info = {m["name"]: m for m in a.post("/models", headers=A).json()["models"]}["incident-ttr"]
    assert info["loaded"] and "last reload failed" in info["error"]
    # clearing the override goes back to the champion
    r = a.post("/models/reload", {"uris": {"incident-ttr": None}}, headers=A)
    assert {x["name"]: x for x in r.json()["results"]}["incident-ttr"]["status"] == "unchanged"


# --- server B: registry unreachable, exported copies, 503 per model, open on loopback -----------------------------
def test_registry_unreachable_serves_exported_copies_and_says_so(b, meta):
    models = {m["name"]: m for m in b.post("/models").json()["models"]}  # open: no keys configured
    for name, version in (
        ("sensor-anomaly", meta["anomaly"][1]["version"]),
        ("sensor-forecast", meta["forecast"]["version"]),
    ):
        m = models[name]
        assert m["loaded"] and m["source"] == "exported-copy" and m["version"] == version
        assert m["note"] == runtime.HIDDEN and m["uri"] is None  # open mode has no admin key to see them
    log = b.log.read_text(errors="replace")
    assert "registry unreachable" in log and "exported copy" in log
    assert b.client.get("/readyz").status_code == 200


def test_a_model_that_cannot_load_fails_only_its_own_endpoint(b, sensors):
    models = {m["name"]: m for m in b.post("/models").json()["models"]}
    assert not models["incident-sla"]["loaded"] and models["incident-sla"]["error"] == runtime.HIDDEN
    assert "does not match" in b.log.read_text(errors="replace")
    not_loaded = {name for name, m in models.items() if not m["loaded"]}
    assert not_loaded == {"incident-sla", *MISSING_ON_B}, not_loaded
    for route, body in GOOD_BODIES.items():  # every endpoint of the table, whatever its model
        model = table.ENDPOINTS[route].model
        r = b.post(route, body)
        if model in not_loaded:
            assert r.status_code == 503 and model in r.json()["error"], (route, r.text)
            assert r.json()["model"] == model and r.headers.get("retry-after")
        else:
            assert r.status_code == 200, (route, r.text)
            assert r.json()["model_name"] == model and r.json()["model_source"] == "exported-copy"
    r = b.post("/detect_anomaly", {"readings": readings_body(two_sensor_window(sensors, 24))})
    assert r.status_code == 200 and r.json()["model_source"] == "exported-copy"


def test_check_drift_with_an_altered_reference_is_a_503_naming_the_model(b, sensors):
    r = b.post(
        "/check_drift", {"domain": "sensors", "readings": readings_body(two_sensor_window(sensors, 24))}
    )
    assert r.status_code == 503 and r.json()["model"] == "sensor-anomaly" and "reference" in r.json()["error"]
    r = b.post("/check_drift", {"domain": "incidents", "incidents": [GOOD_INCIDENT]})
    assert r.status_code == 503 and r.json()["model"] == "incident-sla"


def test_open_mode_warns_loudly_and_refuses_reload(b):
    assert "NO API KEYS CONFIGURED" in b.log.read_text(errors="replace")
    r = b.post("/models/reload", {})  # issue 16 item 5: a web page cannot reload an open service
    assert r.status_code == 403 and "admin API key" in r.json()["error"]


def test_no_keys_refuses_to_bind_a_public_address(servers):
    refuse = servers["refuse"]
    try:
        refuse.proc.wait(120)
    except subprocess.TimeoutExpired:
        pytest.fail("bentoml serve --host 0.0.0.0 without keys is still running")
    assert refuse.proc.returncode != 0
    assert "refusing to bind 0.0.0.0" in refuse.log.read_text(errors="replace")


# --- schemathesis over the OpenAPI schema (last: it may reload models) -------------------------------------------
def _fuzz(op, mode, checks, url: str, failures: list[str], calls: dict[str, int]) -> None:
    """A bounded hypothesis run of one operation in one generation mode, collecting check failures."""
    import hypothesis
    from hypothesis import HealthCheck, Phase
    from schemathesis import GenerationMode

    @hypothesis.settings(
        max_examples=12,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        calls[op.label] = calls.get(op.label, 0) + 1
        headers = dict(A)  # the real key, unless this negative case is "the key is missing"
        if mode == GenerationMode.NEGATIVE and not any(k.lower() == "x-api-key" for k in case.headers or {}):
            headers = {}
        response = case.call(base_url=url, headers=headers, timeout=60)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except Exception as exc:  # noqa: BLE001 - collect every failure, report them together
            failures.append(f"{op.label} [{mode.value}]: {str(exc)[:600]}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:  # nothing to negate (e.g. GET /livez takes no input)
        assert mode == GenerationMode.NEGATIVE, op.label


def test_schemathesis_finds_no_server_error_or_schema_violation(a):
    """Every operation of /docs.json, valid and invalid bodies (a bounded run): no 5xx, every status and
    body as documented, every schema-invalid request refused with a 4xx."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{a.url}/docs.json")
    failures: list[str] = []
    calls: dict[str, int] = {}
    base = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    for result in schema.get_all_operations():
        op = result.ok()
        _fuzz(op, GenerationMode.POSITIVE, base, a.url, failures, calls)
        _fuzz(op, GenerationMode.NEGATIVE, [*base, negative_data_rejection], a.url, failures, calls)
    print(f"\nschemathesis: {sum(calls.values())} requests over {len(calls)} operations")
    posts = {k: v for k, v in calls.items() if k.startswith("POST")}
    assert {f"POST {route}" for route in table.ENDPOINTS} <= set(posts), calls
    assert len(posts) >= 11 and min(posts.values()) >= 10, calls
    assert not failures, "\n\n".join(failures[:8])
