"""The service's front door, as one ASGI middleware: API keys with scopes, body limits, content type.

API keys travel in the `X-API-Key` header. They are configured in `OPSLAB_API_KEYS` (comma- or newline-
separated entries) and/or a file named by `OPSLAB_API_KEYS_FILE` (one entry per line, `#` comments):

    predict:sha256:<64 hex digits>      # sha256 of the key: what should be stored
    admin:sha256:<64 hex digits>
    predict:<the key itself>            # accepted, hashed on load, with a warning

`python -m ml.serving.guard new-key --scope admin` prints a fresh key and the line to store. A presented
key is hashed and compared with every stored hash in constant time (`hmac.compare_digest`, no early exit).
Scopes: `predict` (every prediction endpoint, /models, /check_drift) and `admin` (also /models/reload).
Missing or unknown key -> 401; a key without the endpoint's scope -> 403. Health, metrics and the API
docs stay open. Without any key the service runs open, but only on a loopback address (see `check_bind`),
and `/models/reload` is then refused (403): changing what is served always takes an admin key. A key
setting that is present but yields no key (a file of comments, `OPSLAB_API_KEYS=" , "`) is a
configuration error, not open mode: the service refuses to start.

On every guarded path, before anything else is read: a repeated `Host`, `Content-Type`, `Content-Length` or
`X-API-Key` header -> 400 (the guard and the app could read different copies); a `Host` that is neither an
IP literal, nor the bound name, nor in `serving.allowed_hosts` (env `OPSLAB_ALLOWED_HOSTS`) -> 400 (DNS
rebinding). Then the key; then the rate limit of the key and scope (`serving.rate_limits`) -> 429 with
`Retry-After`; then bodies over `serving.max_body_bytes` -> 413 and a POST without
`Content-Type: application/json` -> 415 (a browser form cannot send that type without a CORS preflight).
The scopes the key was granted are left in the ASGI scope (`GRANTED`) for the endpoints (`/models` shows
paths and raw errors to admin keys only).
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ml.serving import settings
from ml.serving.ratelimit import RateLimits

log = logging.getLogger("opslab.serving")

SCOPES = ("predict", "admin")
OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/metrics", "/", "/docs.json", "/schema.json"})
OPEN_PREFIXES = ("/static_content/",)
ADMIN_PATHS = frozenset({"/models/reload"})
HEADER = b"x-api-key"
SINGLE_HEADERS = (b"host", b"content-type", b"content-length", HEADER)  # refused when repeated
GRANTED = "opslab.granted"  # ASGI scope key: the scopes the request's key was granted (set by the guard)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class KeyConfigError(ValueError):
    pass


@dataclass(frozen=True)
class KeyRing:
    """Hashed API keys with their scope; `admin` includes `predict`."""

    entries: tuple[tuple[bytes, str], ...] = ()
    plaintext_entries: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    @classmethod
    def parse(cls, text: str, origin: str = "OPSLAB_API_KEYS") -> KeyRing:
        entries, plain = [], 0
        for n, raw in enumerate(re.split(r"[,\n]", text), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            scope, sep, rest = line.partition(":")
            if not sep or scope not in SCOPES or not rest:
                raise KeyConfigError(
                    f"{origin}: entry {n} must be '<scope>:sha256:<hex>' or '<scope>:<key>' with scope in {SCOPES}"
                )
            if rest.startswith("sha256:"):
                digest = rest[len("sha256:") :].lower()
                if not _HEX64.match(digest):
                    raise KeyConfigError(f"{origin}: entry {n}: sha256 must be 64 hex digits")
                entries.append((bytes.fromhex(digest), scope))
            else:
                if len(rest) < 16:
                    raise KeyConfigError(f"{origin}: entry {n}: a key must be at least 16 characters")
                entries.append((hash_key(rest), scope))
                plain += 1
        return cls(tuple(entries), plain)

    @classmethod
    def from_env(cls) -> KeyRing:
        """The keys of `OPSLAB_API_KEYS` and `OPSLAB_API_KEYS_FILE`. Open (no keys) only when neither is
        set: a setting that is present but yields no key is an error, never open mode by accident."""
        ring = cls()
        text = os.environ.get(settings.ENV_API_KEYS)
        if text is not None:
            ring = cls.parse(text)
            if not ring.enabled:
                raise KeyConfigError(
                    f"{settings.ENV_API_KEYS} is set but holds no key; unset it to run open (loopback only)"
                )
        path = os.environ.get(settings.ENV_API_KEYS_FILE)
        if path is not None:
            try:
                file_ring = cls.parse(Path(path).read_text(), origin=path)
            except OSError as exc:
                raise KeyConfigError(f"{settings.ENV_API_KEYS_FILE}={path}: cannot read it ({exc})") from exc
            if not file_ring.enabled:
                raise KeyConfigError(
                    f"{settings.ENV_API_KEYS_FILE}={path} holds no key; unset it to run open (loopback only)"
                )
            ring = cls(ring.entries + file_ring.entries, ring.plaintext_entries + file_ring.plaintext_entries)
        return ring

    def scopes_of(self, key: str) -> set[str]:
        """Scopes granted to a presented key (empty when unknown); every stored hash is compared."""
        presented = hash_key(key)
        granted: set[str] = set()
        for digest, scope in self.entries:
            if hmac.compare_digest(presented, digest):
                granted.add(scope)
        if "admin" in granted:
            granted.add("predict")
        return granted


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def required_scope(path: str) -> str | None:
    """None for open paths, else the scope the path needs (decided on the normalised path, so that
    `//models/reload` or `/models/reload/` cannot slip past the admin check)."""
    norm = "/" + "/".join(part for part in path.split("/") if part)
    if path in OPEN_PATHS or norm in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    return "admin" if norm in ADMIN_PATHS else "predict"


# --- binding rules --------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def intended_host() -> str:
    """The address `bentoml serve` is about to bind (called in its process, before the socket exists)."""
    frame = sys._getframe(1)
    while frame is not None:  # serve_http(host=...) is on the stack when deployment hooks run
        if frame.f_code.co_name == "serve_http" and isinstance(frame.f_locals.get("host"), str):
            return frame.f_locals["host"]
        frame = frame.f_back
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg == "--host" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--host="):
            return arg.split("=", 1)[1]
    if os.environ.get("BENTOML_HOST"):
        return os.environ["BENTOML_HOST"]
    # imported on use: the key CLI (`python -m ml.serving.guard new-key`) runs without loading bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.http.host.get())


def bound_host() -> str | None:
    """The address this worker's listening socket is bound to (BentoML passes it as `--fd N`)."""
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg == "--fd" and i + 1 < len(argv) and argv[i + 1].isdigit():
            try:
                dup = os.dup(int(argv[i + 1]))
                with socket.socket(fileno=dup) as s:
                    return str(s.getsockname()[0])
            except OSError:
                return None
    return None


def check_bind(host: str, ring: KeyRing) -> None:
    """Refuse (SystemExit) to serve a non-loopback address without API keys; warn loudly when open."""
    if ring.enabled:
        if ring.plaintext_entries:
            log.warning(
                "opslab: %d API key(s) configured in plain text; store 'scope:sha256:<hex>' instead",
                ring.plaintext_entries,
            )
        return
    if not is_loopback(host):
        raise SystemExit(
            f"opslab: refusing to bind {host}: no API keys configured. Set {settings.ENV_API_KEYS} or "
            f"{settings.ENV_API_KEYS_FILE} (python -m ml.serving.guard new-key), or bind 127.0.0.1."
        )
    warn_open(host)


def warn_open(host: str) -> None:
    msg = (
        f"\n{'!' * 78}\n!! opslab: NO API KEYS CONFIGURED - the service is OPEN (no authentication) on {host}.\n"
        f"!! Only loopback is allowed like this. Set {settings.ENV_API_KEYS} or {settings.ENV_API_KEYS_FILE}.\n"
        f"{'!' * 78}"
    )
    if logging.getLogger("opslab").hasHandlers():
        log.warning(msg)
    else:
        print(msg, file=sys.stderr, flush=True)


def host_name(value: bytes | None) -> str | None:
    """The name part of a Host header (`[::1]:3000` -> `::1`, `Example.com:80` -> `example.com`)."""
    if not value:
        return None
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Host names the service answers to: any IP literal (a DNS rebinding attack needs a name), the name
    it is bound to, and the configured names (`serving.allowed_hosts` / `OPSLAB_ALLOWED_HOSTS`)."""

    def __init__(self, names: Iterable[str], bound: str | None = None):
        self.names = frozenset(n.strip().lower() for n in names if n.strip())
        if bound and not _is_ip(bound.strip("[]")):
            self.names |= {bound.lower()}

    def allows(self, value: bytes | None) -> bool:
        name = host_name(value)
        return bool(name) and (_is_ip(name) or name in self.names or "*" in self.names)


# --- request ids: accepted from X-Request-ID (when well formed) or generated, echoed on every answer
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("opslab_request_id", default="")
REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID_OK = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(raw_headers) -> str:
    """The client's X-Request-ID when it is 1-128 safe characters, else a new random id."""
    for name, value in raw_headers:
        if name.lower() == REQUEST_ID_HEADER and _REQUEST_ID_OK.match(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


def echo_request_id(send, rid: str):
    """`send` that adds X-Request-ID to the response start."""

    async def wrapped(message):
        if message.get("type") == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
            message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, rid.encode("ascii"))]}
        await send(message)

    return wrapped


# --- the middleware -------------------------------------------------------------------------------
class GuardMiddleware:
    """Auth, body size and content type for every HTTP request, before BentoML parses anything."""

    def __init__(
        self,
        app,
        ring: KeyRing | None = None,
        max_body_bytes: int | None = None,
        openapi=None,
        allowed_hosts: Iterable[str] | None = None,
        rate_limits: RateLimits | None = None,
    ):
        cfg = settings.get()
        self.app = app
        self.openapi = openapi  # () -> the OpenAPI dict to serve at /docs.json (ml/serving/openapi.py)
        self._openapi_body: bytes | None = None
        self.ring = KeyRing.from_env() if ring is None else ring
        self.max_body = max_body_bytes or cfg.max_body_bytes
        self.lockdown: str | None = None
        host = bound_host()
        self.hosts = HostCheck(cfg.allowed_hosts if allowed_hosts is None else allowed_hosts, host)
        self.limits = RateLimits(cfg.rate_limits) if rate_limits is None else rate_limits
        if host is not None and not self.ring.enabled and not is_loopback(host):
            self.lockdown = f"refusing to serve: bound to {host} without API keys"
            log.critical("opslab: %s", self.lockdown)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = request_id_of(scope.get("headers") or [])
        REQUEST_ID.set(rid)  # the endpoint's thread sees it (anyio copies the context): the prediction log
        send = echo_request_id(send, rid)
        path = scope.get("path", "")
        needed = required_scope(path)
        if needed is None:
            if path == "/docs.json" and self.openapi is not None and scope.get("method") == "GET":
                return await self._docs(send)
            return await self.app(scope, receive, send)
        if self.lockdown:
            return await _reply(send, 503, self.lockdown)
        raw_headers = scope.get("headers") or []
        names = [name.lower() for name, _ in raw_headers]
        for single in SINGLE_HEADERS:
            if names.count(single) > 1:
                return await _reply(send, 400, f"the {single.decode()} header is repeated; send it once")
        headers = dict(raw_headers)
        if not self.hosts.allows(headers.get(b"host")):
            return await _reply(
                send,
                400,
                f"Host {host_name(headers.get(b'host'))!r} is not a name this service answers to "
                f"(serving.allowed_hosts or {settings.ENV_ALLOWED_HOSTS})",
            )
        key = headers.get(HEADER)
        if self.ring.enabled:
            if not key:
                return await _reply(send, 401, "missing API key: send it in the X-API-Key header", auth=True)
            granted = self.ring.scopes_of(key.decode("latin-1"))
            if not granted:
                return await _reply(send, 401, "unknown API key", auth=True)
            if needed not in granted:
                return await _reply(send, 403, f"this API key lacks the '{needed}' scope needed for {path}")
            identity = hash_key(key.decode("latin-1")).hex()
        elif needed == "admin":
            return await _reply(
                send,
                403,
                f"{path} needs an admin API key, and this service runs open (no keys): configure "
                f"{settings.ENV_API_KEYS} or {settings.ENV_API_KEYS_FILE} to use it",
            )
        else:
            granted, identity = {"predict"}, "open:" + str((scope.get("client") or ("?",))[0])
        scope[GRANTED] = frozenset(granted)
        wait = self.limits.check(identity, needed)
        if wait is not None:
            return await _reply(
                send,
                429,
                f"rate limit of the '{needed}' scope ({self.limits.describe(needed)}) reached for this key; "
                f"retry in {wait} s",
                retry_after=wait,
            )
        if scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            return await _reply(send, 415, "request bodies must be JSON (Content-Type: application/json)")
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await _reply(send, 400, "invalid Content-Length header")
            if declared > self.max_body:
                return await _reply(send, 413, f"request body of {declared} bytes exceeds {self.max_body}")
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await _reply(send, 413, f"request body exceeds {self.max_body} bytes")
            body.append(chunk)
            more = message.get("more_body", False)
        payload = b"".join(body)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": payload, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _docs(self, send) -> None:
        if self._openapi_body is None:
            from ml.serving import openapi  # on the first /docs request only

            spec = openapi.patch(self.openapi(), open_paths=OPEN_PATHS)
            self._openapi_body = json.dumps(spec).encode()
        await _send_json(send, 200, self._openapi_body)


async def _reply(send, status: int, message: str, auth: bool = False, retry_after: int | None = None) -> None:
    await _send_json(
        send, status, json.dumps({"error": message}).encode(), auth=auth, retry_after=retry_after
    )


async def _send_json(
    send, status: int, body: bytes, auth: bool = False, retry_after: int | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if auth:
        headers.append((b"www-authenticate", b'ApiKey header="X-API-Key"'))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.serving.guard", description="API keys for the service")
    sub = ap.add_subparsers(dest="cmd", required=True)
    new = sub.add_parser("new-key", help="print a fresh random key and the hashed entry to configure")
    new.add_argument("--scope", choices=SCOPES, default="predict")
    h = sub.add_parser("hash", help="print the configuration entry for an existing key (read from stdin)")
    h.add_argument("--scope", choices=SCOPES, default="predict")
    args = ap.parse_args(argv)
    key = secrets.token_urlsafe(32) if args.cmd == "new-key" else sys.stdin.readline().strip()
    entry = f"{args.scope}:sha256:{hash_key(key).hex()}"
    if args.cmd == "new-key":
        print(f"key (give to the client, X-API-Key): {key}")
    print(f"entry (for {settings.ENV_API_KEYS} / {settings.ENV_API_KEYS_FILE}): {entry}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
