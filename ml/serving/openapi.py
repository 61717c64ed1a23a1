"""The OpenAPI document the service publishes at /docs.json: BentoML's, corrected and completed.

BentoML declares its 400 body's `detail` as a string while its validation errors send a list of
`{loc, msg, type}`; numeric exclusive bounds are written the JSON Schema 2020-12 way in a document that
says OpenAPI 3.0.2; and the document says nothing about API keys or the statuses this service adds.
`patch` fixes the first and documents the rest (X-API-Key security scheme; 401, 403, 413, 415, 422, 429, 503
with their error body), so a client generator or a schema-driven fuzzer (schemathesis in the tests) sees
what the server really does.
"""

from __future__ import annotations

import copy
from typing import Any

ERROR_DETAIL = {
    "type": "object",
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
    },
}
DETAIL = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/ErrorDetail"}}]
}
ERROR = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong, naming the field or the model"},
        "detail": DETAIL,
        "model": {"type": "string", "description": "503 only: the model that is not available"},
    },
}
ADDED = {
    "401": "missing or unknown API key (X-API-Key)",
    "403": "the API key lacks the scope this endpoint needs",
    "413": "request body larger than serving.max_body_bytes",
    "415": "request body is not JSON (Content-Type: application/json is required)",
    "429": "rate limit of the key and scope reached (serving.rate_limits); Retry-After says when to retry",
    "422": "well-formed request the model cannot answer (e.g. unknown sensor), naming the field path",
    "503": "the endpoint's model is not loaded (the body names it); other endpoints keep working",
}


def _openapi30_bounds(node: Any) -> None:
    """pydantic writes JSON Schema 2020-12 `exclusiveMinimum: 0`; OpenAPI 3.0 wants `minimum: 0` plus
    `exclusiveMinimum: true` (the document says 3.0.2, and tools read it that way)."""
    if isinstance(node, dict):
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = node.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                node[bound], node[key] = value, True
        for child in node.values():
            _openapi30_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _openapi30_bounds(child)


def patch(spec: dict[str, Any], *, open_paths: frozenset[str]) -> dict[str, Any]:
    """A corrected copy of BentoML's OpenAPI dict (see module docstring)."""
    spec = copy.deepcopy(spec)
    _openapi30_bounds(spec)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorDetail"] = ERROR_DETAIL
    schemas["Error"] = ERROR
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        if name in schemas:
            schemas[name].setdefault("properties", {})["detail"] = DETAIL
    spec["components"]["securitySchemes"] = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    }
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, item in spec.get("paths", {}).items():
        if path in open_paths:
            continue
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            op["security"] = [{"ApiKey": []}]
            for status, description in ADDED.items():
                op["responses"].setdefault(status, {"description": description, **ref})
    return spec
