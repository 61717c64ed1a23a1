"""The guard middleware in process (no BentoML): key settings, Host, content type, repeated headers, rate
limits, and the scopes it hands to the endpoints (issue 16, items 4, 5, 6, 8 and 9)."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.testclient import TestClient

from ml.serving import guard, settings
from ml.serving.ratelimit import RateLimits

PREDICT, ADMIN = "p" * 24, "a" * 24
KEYS = f"predict:sha256:{guard.hash_key(PREDICT).hex()}\nadmin:sha256:{guard.hash_key(ADMIN).hex()}"
JSON = {"content-type": "application/json"}


async def echo(scope, receive, send):
    """The app behind the guard: 200 with the scopes the guard granted."""
    body = json.dumps({"granted": sorted(scope.get(guard.GRANTED, ()))}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


def client(ring=None, hosts=("testserver",), limits=()) -> TestClient:
    mw = guard.GuardMiddleware(
        echo,
        ring=guard.KeyRing.parse(KEYS) if ring is None else ring,
        allowed_hosts=hosts,
        rate_limits=RateLimits(limits),
    )
    return TestClient(mw)


def raw_call(mw, headers: list[tuple[bytes, bytes]], path="/forecast", body=b"{}") -> tuple[int, dict]:
    """One request with exactly these headers (clients merge repeated ones, so ASGI it is)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "client": ("127.0.0.1", 1)}
    asyncio.run(mw(scope, receive, send))
    return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}


# --- item 4: a key setting that yields no key is not open mode --------------------------------------
@pytest.mark.parametrize("value", [" , ", "", "# only a comment\n", "\n\n"])
def test_a_key_variable_without_a_key_refuses_to_start(monkeypatch, value):
    monkeypatch.delenv(settings.ENV_API_KEYS_FILE, raising=False)
    monkeypatch.setenv(settings.ENV_API_KEYS, value)
    with pytest.raises(guard.KeyConfigError, match="holds no key"):
        guard.KeyRing.from_env()


def test_a_key_file_of_comments_refuses_to_start(monkeypatch, tmp_path):
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("# admin:sha256:... (not yet)\n\n   # another\n")
    monkeypatch.delenv(settings.ENV_API_KEYS, raising=False)
    monkeypatch.setenv(settings.ENV_API_KEYS_FILE, str(keyfile))
    with pytest.raises(guard.KeyConfigError, match="holds no key"):
        guard.KeyRing.from_env()


def test_no_key_setting_at_all_is_open_mode(monkeypatch):
    monkeypatch.delenv(settings.ENV_API_KEYS, raising=False)
    monkeypatch.delenv(settings.ENV_API_KEYS_FILE, raising=False)
    assert not guard.KeyRing.from_env().enabled


# --- item 5: content type, Host, reload in open mode ----------------------------------------------
def test_post_without_json_content_type_is_refused():
    c = client()
    key = {"X-API-Key": PREDICT}
    assert c.post("/forecast", content=b"{}", headers=key).status_code == 415  # no Content-Type
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        assert c.post("/forecast", content=b"{}", headers={**key, "content-type": ctype}).status_code == 415
    ok = c.post(
        "/forecast", content=b"{}", headers={**key, "content-type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "host,status",
    [
        ("evil.example", 400),  # DNS rebinding: the attacker's name pointing at 127.0.0.1
        ("evil.example:3000", 400),
        ("127.0.0.1:3000", 200),
        ("[::1]:3000", 200),
        ("10.1.2.3", 200),
        ("testserver", 200),
        ("TestServer:80", 200),
    ],
)
def test_host_must_be_an_ip_literal_or_an_allowed_name(host, status):
    r = client().post("/forecast", content=b"{}", headers={**JSON, "X-API-Key": PREDICT, "host": host})
    assert r.status_code == status, r.text
    if status == 400:
        assert "Host" in r.json()["error"]


def test_the_bound_name_is_allowed_and_open_paths_skip_the_host_check():
    check = guard.HostCheck([], bound="opslab.internal")
    assert (
        check.allows(b"opslab.internal:3000")
        and not check.allows(b"other.internal")
        and not check.allows(None)
    )
    assert client(hosts=()).get("/livez", headers={"host": "evil.example"}).status_code == 200


def test_reload_needs_an_admin_key_even_in_open_mode():
    c = client(ring=guard.KeyRing())
    r = c.post("/models/reload", json={})
    assert r.status_code == 403 and "admin API key" in r.json()["error"]
    assert c.post("/forecast", json={}).json() == {"granted": ["predict"]}  # predicting stays open


# --- item 6: repeated headers ----------------------------------------------------------------------
@pytest.mark.parametrize("name", [b"content-type", b"x-api-key", b"host"])
def test_a_repeated_content_type_key_or_host_header_is_refused(name):
    mw = guard.GuardMiddleware(
        echo, ring=guard.KeyRing.parse(KEYS), allowed_hosts=["h"], rate_limits=RateLimits(())
    )
    base = {b"host": b"h", b"content-type": b"application/json", b"x-api-key": PREDICT.encode()}
    second = {b"content-type": b"text/plain", b"x-api-key": ADMIN.encode(), b"host": b"h"}[name]
    headers = [*base.items(), (name, second)]
    status, _ = raw_call(mw, headers)
    assert status == 400
    assert raw_call(mw, list(base.items()))[0] == 200


# --- item 8: the scopes reach the endpoint ---------------------------------------------------------
def test_the_guard_tells_the_endpoint_which_scopes_the_key_has():
    c = client()
    assert c.post("/models", json={}, headers={"X-API-Key": PREDICT}).json() == {"granted": ["predict"]}
    assert c.post("/models", json={}, headers={"X-API-Key": ADMIN}).json() == {
        "granted": ["admin", "predict"]
    }


# --- item 9: rate limits ---------------------------------------------------------------------------
def test_rate_limit_per_key_and_scope_answers_429_with_retry_after():
    c = client(limits=[("predict", "3/minute"), ("admin", "1/minute")])
    p, a = {"X-API-Key": PREDICT}, {"X-API-Key": ADMIN}
    assert [c.post("/forecast", json={}, headers=p).status_code for _ in range(4)] == [200, 200, 200, 429]
    r = c.post("/forecast", json={}, headers=p)
    assert (
        r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60 and "predict" in r.json()["error"]
    )
    assert c.post("/forecast", json={}, headers=a).status_code == 200  # another key: its own counter
    assert c.post("/models/reload", json={}, headers=a).status_code == 200  # another scope too
    assert c.post("/models/reload", json={}, headers=a).status_code == 429
    assert c.get("/livez").status_code == 200  # open paths are not limited


def test_rate_limits_come_from_params_and_bad_ones_are_refused():
    cfg = settings.get()
    assert dict(cfg.rate_limits).keys() <= set(settings.RATE_LIMIT_SCOPES) and cfg.rate_limits
    for scope, text in cfg.rate_limits:
        assert RateLimits([(scope, text)]).describe(scope)
    with pytest.raises(ValueError, match="not a rate"):
        RateLimits([("predict", "lots")])


def test_the_moving_window_counts_what_it_lets_through_and_forgets_idle_keys():
    now = [1000.0]
    rl = RateLimits([("predict", "3/minute")], clock=lambda: now[0])
    for _ in range(3):  # at 1000, 1010, 1020
        assert rl.check("k", "predict") is None
        now[0] += 10
    assert rl.check("k", "predict") == 30  # at 1030: until the oldest of the three leaves the window
    now[0] += 29.5
    assert rl.check("k", "predict") == 1  # a refused request is not counted; never less than 1 s
    now[0] += 0.6
    assert rl.check("k", "predict") is None  # the first left: one place
    assert rl.check("k", "predict") == 10  # until the one of 1010 leaves
    assert rl.check("other", "predict") is None and rl.check("k", "admin") is None  # no admin limit here
    now[0] += 400  # idle keys are swept (memory stays bounded), and start afresh
    assert rl.check("new", "predict") is None
    assert set(rl._hits) == {("predict", "new")}


def test_a_well_formed_request_id_is_kept_and_anything_else_replaced():
    assert guard.request_id_of([(b"X-Request-ID", b"trace-42.a:b_c")]) == "trace-42.a:b_c"
    for bad in (b"", b"x" * 129, b"evil\r\nSet-Cookie: a=b", b"<script>"):
        rid = guard.request_id_of([(b"x-request-id", bad)])
        assert rid != bad.decode("latin-1") and len(rid) == 32
