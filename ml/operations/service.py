"""The running service as the retrain job sees it: `/models` and `/models/reload` with the admin key."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping


class ServiceError(RuntimeError):
    pass


class ServiceClient:
    """The service's `/models` and `/models/reload` (docs/serving.md), with the admin key in `X-API-Key`."""

    HEADER = "X-API-Key"  # ml.serving.guard.HEADER; a test keeps the two equal

    def __init__(self, url: str, admin_key: str | None, *, timeout: float):
        """`timeout`: seconds per request (the retrain job passes `reload_timeout_seconds`: a reload answers
        once the worker that got it has loaded the new versions)."""
        self.url, self.admin_key, self.timeout = url.rstrip("/"), admin_key, timeout

    @classmethod
    def from_env(cls, *, timeout: float, env: Mapping[str, str] = os.environ) -> ServiceClient | None:
        """From `OPSLAB_SERVICE_URL` and `OPSLAB_ADMIN_KEY`; None when no URL is set."""
        url = env.get("OPSLAB_SERVICE_URL")
        return cls(url, env.get("OPSLAB_ADMIN_KEY") or None, timeout=timeout) if url else None

    def post(self, path: str, body: Mapping) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.admin_key:
            headers[self.HEADER] = self.admin_key
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            hint = " (OPSLAB_ADMIN_KEY is not set)" if exc.code in (401, 403) and not self.admin_key else ""
            text = exc.read()[:300].decode(errors="replace")
            raise ServiceError(f"POST {self.url}{path}: HTTP {exc.code}{hint} {text}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServiceError(f"POST {self.url}{path}: {getattr(exc, 'reason', exc)}") from exc

    def served(self) -> dict[str, dict]:
        """Every model the service knows, by name: version, state, loaded, error."""
        return {m["name"]: m for m in self.post("/models", {}).get("models", [])}


def reload_and_wait(
    service: ServiceClient | None, expected: Mapping[str, str], *, timeout_s: float, poll_s: float
) -> dict:
    """POST /models/reload for the models whose champion moved, then poll /models until each serves the
    expected version (or `timeout_s` pass). -> {status: ok|skipped|failed|timeout, detail}."""
    if service is None:
        return {
            "status": "skipped",
            "detail": "OPSLAB_SERVICE_URL is not set: no service was asked to reload",
        }
    try:
        served = service.served()
        names = [n for n in expected if n in served]
        if not names:
            return {"status": "skipped", "detail": f"{service.url} serves none of {sorted(expected)}"}
        answer = service.post("/models/reload", {"models": names})
        bad = [r for r in answer.get("results", []) if r.get("status") == "failed"]
        if bad:
            detail = "; ".join(f"{r.get('name')}: {r.get('error')}" for r in bad)
            return {
                "status": "failed",
                "detail": f"reload failed: {detail}",
                "results": answer.get("results"),
            }
        deadline = time.monotonic() + timeout_s
        while True:
            served = service.served()
            pending = {n: (served.get(n) or {}).get("version") for n in names
                       if str((served.get(n) or {}).get("version")) != str(expected[n])
                       or not (served.get(n) or {}).get("loaded", True)}  # fmt: skip
            if not pending:
                return {
                    "status": "ok",
                    "detail": f"{service.url} serves " + ", ".join(f"{n} v{expected[n]}" for n in names),
                }
            if time.monotonic() >= deadline:
                return {
                    "status": "timeout",
                    "detail": f"after {timeout_s:.0f} s still serving {pending}",
                }
            time.sleep(poll_s)
    except ServiceError as exc:
        return {"status": "failed", "detail": str(exc)}
