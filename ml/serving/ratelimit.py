"""Rate limits per API key and scope (params.yaml `serving.rate_limits`), with the `limits` library.

`limits` (the engine behind slowapi and Flask-Limiter) is used directly rather than through slowapi:
slowapi hooks Starlette routes and `app.state`, which BentoML's app does not expose to a middleware, while
the guard middleware already knows the caller's key and the scope its path needs. A moving window in
process memory: the service runs one worker (service.py), so one counter per key and scope is exact.

The counter's identity is the sha256 of the presented key (never the key itself); in open mode (loopback,
no keys) it is the client address.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimits:
    """`check(identity, scope)`: None when the request may go on (it is counted), else the seconds to wait."""

    def __init__(self, per_scope: Iterable[tuple[str, str]]):
        self.items = {}
        for scope, text in per_scope:
            try:
                self.items[scope] = parse(text)
            except ValueError as exc:
                raise ValueError(
                    f"serving.rate_limits.{scope}: {text!r} is not a rate like '600/minute'"
                ) from exc
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def describe(self, scope: str) -> str | None:
        item = self.items.get(scope)
        return None if item is None else f"{item.amount} per {item.multiples} {item.GRANULARITY.name}(s)"

    def check(self, identity: str, scope: str) -> int | None:
        item = self.items.get(scope)
        if item is None or self.limiter.hit(item, scope, identity):
            return None
        reset = self.limiter.get_window_stats(item, scope, identity).reset_time
        return max(1, math.ceil(reset - time.time()))
