"""Rate limits per API key and scope (params.yaml `serving.rate_limits`): a moving window in process memory.

The rates are parsed by `limits` (the engine behind slowapi and Flask-Limiter: `6000/minute`, `10 per
second`), but counted here: `limits`' in-memory storage starts a timer thread every 10 ms of traffic to
expire its entries, and `Thread.start()` blocks the event loop until that thread runs (measured: the
largest single cost of the guard, milliseconds on a busy 2-core box). slowapi is not used either: it
hooks Starlette routes and `app.state`, which BentoML's app does not expose to a middleware, while the
guard middleware already knows the caller's key and the scope its path needs.

The window is the moving window of `limits.MovingWindowRateLimiter`: a request is let through when fewer
than `amount` requests of the same identity and scope were let through in the last `period` seconds;
a refused request is not counted; the wait is until the oldest counted one leaves the window.

Counted per worker: each worker process has its own counters, and the kernel spreads connections over the
workers (a keep-alive connection stays with one), so a client gets at least the configured rate and at most
workers x that rate in total. The limit bounds a runaway client; it is not a billing quota.

The counter's identity is the sha256 of the presented key (never the key itself); in open mode (loopback,
no keys) it is the client address.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable

from limits import parse

SWEEP_SECONDS = 60.0  # how often identities with nothing in their window are forgotten


class RateLimits:
    """`check(identity, scope)`: None when the request may go on (it is counted), else the seconds to wait."""

    def __init__(self, per_scope: Iterable[tuple[str, str]], clock=time.monotonic):
        self.items = {}
        for scope, text in per_scope:
            try:
                self.items[scope] = parse(text)
            except ValueError as exc:
                raise ValueError(
                    f"serving.rate_limits.{scope}: {text!r} is not a rate like '600/minute'"
                ) from exc
        self.clock = clock
        self._hits: dict[tuple[str, str], deque[float]] = {}  # (scope, identity) -> times let through
        self._lock = threading.Lock()
        self._swept = clock()

    def describe(self, scope: str) -> str | None:
        item = self.items.get(scope)
        return None if item is None else f"{item.amount} per {item.multiples} {item.GRANULARITY.name}(s)"

    def check(self, identity: str, scope: str) -> int | None:
        item = self.items.get(scope)
        if item is None:
            return None
        now, period = self.clock(), item.get_expiry()
        with self._lock:
            if now - self._swept > SWEEP_SECONDS:
                self._sweep(now)
            hits = self._hits.get((scope, identity))
            if hits is None:
                hits = self._hits[(scope, identity)] = deque()
            start = now - period
            while hits and hits[0] < start:
                hits.popleft()
            if len(hits) < item.amount:
                hits.append(now)
                return None
            wait = hits[0] + period - now
        return max(1, math.ceil(wait))

    def _sweep(self, now: float) -> None:
        """Forget identities whose every counted request has left its window (bounded memory)."""
        longest = max((item.get_expiry() for item in self.items.values()), default=0)
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] < now - longest]:
            del self._hits[key]
        self._swept = now
