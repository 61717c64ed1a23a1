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
docs stay open. Without any key the service runs open, but only on a loopback address (see `check_bind`).
Bodies over `serving.max_body_bytes` -> 413; a POST body that is not JSON -> 415.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass
from pathlib import Path

from ml.serving import settings

log = logging.getLogger("opslab.serving")

SCOPES = ("predict", "admin")
OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/metrics", "/", "/docs.json", "/schema.json"})
OPEN_PREFIXES = ("/static_content/",)
ADMIN_PATHS = frozenset({"/models/reload"})
HEADER = b"x-api-key"
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
        text = os.environ.get(settings.ENV_API_KEYS, "")
        ring = cls.parse(text) if text.strip() else cls()
        path = os.environ.get(settings.ENV_API_KEYS_FILE)
        if path:
            try:
                file_ring = cls.parse(Path(path).read_text(), origin=path)
            except OSError as exc:
                raise KeyConfigError(f"{settings.ENV_API_KEYS_FILE}={path}: cannot read it ({exc})") from exc
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


# --- the middleware -------------------------------------------------------------------------------
class GuardMiddleware:
    """Auth, body size and content type for every HTTP request, before BentoML parses anything."""

    def __init__(self, app, ring: KeyRing | None = None, max_body_bytes: int | None = None, openapi=None):
        self.app = app
        self.openapi = openapi  # () -> the OpenAPI dict to serve at /docs.json (ml/serving/openapi.py)
        self._openapi_body: bytes | None = None
        self.ring = KeyRing.from_env() if ring is None else ring
        self.max_body = max_body_bytes or settings.get().max_body_bytes
        self.lockdown: str | None = None
        host = bound_host()
        if host is not None and not self.ring.enabled and not is_loopback(host):
            self.lockdown = f"refusing to serve: bound to {host} without API keys"
            log.critical("opslab: %s", self.lockdown)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        needed = required_scope(path)
        if needed is None:
            if path == "/docs.json" and self.openapi is not None and scope.get("method") == "GET":
                return await self._docs(send)
            return await self.app(scope, receive, send)
        if self.lockdown:
            return await _reply(send, 503, self.lockdown)
        headers = dict(scope.get("headers") or [])
        if self.ring.enabled:
            key = headers.get(HEADER)
            if not key:
                return await _reply(send, 401, "missing API key: send it in the X-API-Key header", auth=True)
            granted = self.ring.scopes_of(key.decode("latin-1"))
            if not granted:
                return await _reply(send, 401, "unknown API key", auth=True)
            if needed not in granted:
                return await _reply(send, 403, f"this API key lacks the '{needed}' scope needed for {path}")
        if scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype not in (b"", b"application/json"):
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


async def _reply(send, status: int, message: str, auth: bool = False) -> None:
    await _send_json(send, status, json.dumps({"error": message}).encode(), auth=auth)


async def _send_json(send, status: int, body: bytes, auth: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if auth:
        headers.append((b"www-authenticate", b'ApiKey header="X-API-Key"'))
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
