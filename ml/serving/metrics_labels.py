"""Bounded request metrics: every path the app does not route is counted under one `endpoint` label.

BentoML's request-metrics middleware labels each request with its raw path, unknown paths and 401/404
answers included, and `/metrics` is open: `GET /x<random>` in a loop would grow the Prometheus series
without limit. That middleware is the outermost layer of BentoML's app (ours sit inside it), so the path
cannot be rewritten before it reads it; `install()` swaps in a subclass that reads a folded label instead.
The app still sees the real path: the label is handed to BentoML's middleware in a copy of the scope,
and the real path put back before the next layer runs.
"""

from __future__ import annotations

OTHER = "/__other__"  # the one label of every path the app does not route
_REAL_PATH = "opslab.real_path"


def label_for(path: str, known: frozenset[str], prefixes: tuple[str, ...]) -> str:
    """`path` itself when the app routes it, a mount's prefix for paths under a mount, else OTHER."""
    if path in known:
        return path
    for prefix in prefixes:
        if path.startswith(prefix + "/"):
            return prefix
    return OTHER


def routes_of(app) -> tuple[frozenset[str], tuple[str, ...]]:
    """The exact paths and the mount prefixes of a Starlette app (BentoML's service app is one)."""
    known, prefixes = set(), []
    for route in getattr(app, "routes", []) or []:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        if hasattr(route, "routes") or type(route).__name__ == "Mount":
            prefixes.append(path.rstrip("/"))
        else:
            known.add(path)
    return frozenset(known), tuple(p for p in prefixes if p)


class _RestorePath:
    """The layer after BentoML's metrics middleware: puts the real path back into the scope."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if _REAL_PATH in scope:
            scope = dict(scope)
            scope["path"] = scope.pop(_REAL_PATH)
        return await self.app(scope, receive, send)


def folding(base: type) -> type:
    """A subclass of BentoML's metrics middleware class `base` that labels with `label_for`."""

    class FoldedMetricsMiddleware(base):
        def __init__(self, app, *args, **kwargs):
            super().__init__(_RestorePath(app), *args, **kwargs)
            self._routes: tuple[frozenset[str], tuple[str, ...]] | None = None

        async def __call__(self, scope, receive, send):
            if scope.get("type") != "http" or scope.get("path") == "/metrics" or "app" not in scope:
                return await super().__call__(scope, receive, send)
            if self._routes is None:
                self._routes = routes_of(scope["app"])
            path = scope["path"]
            label = label_for(path, *self._routes)
            if label != path:
                scope = {**scope, "path": label, _REAL_PATH: path}
            return await super().__call__(scope, receive, send)

    FoldedMetricsMiddleware.__name__ = FoldedMetricsMiddleware.__qualname__ = f"Folded{base.__name__}"
    return FoldedMetricsMiddleware


def install() -> None:
    """Replace BentoML's request-metrics middleware class (read when BentoML builds the service app)."""
    # imported on use: only the service process needs BentoML's internals (tests of label_for do not)
    from bentoml._internal.server.http import instruments

    current = instruments.RunnerTrafficMetricsMiddleware
    if not current.__name__.startswith("Folded"):
        instruments.RunnerTrafficMetricsMiddleware = folding(current)
