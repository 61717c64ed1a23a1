"""Helpers for the Makefile's service targets: `python -m ml.serving missing-stages | banner --port N`."""

from __future__ import annotations

import argparse
import os
import sys

from ml.serving import settings


def missing_stages() -> list[str]:
    """DVC stages to run so that every model of the table has a champion in the registry."""
    # imported on use: mlflow and every model module (~10 s); `banner` needs none of them
    from ml import registry
    from ml.serving import loading, table

    problem = loading.registry_problem()
    stages = []
    for spec in table.MODELS.values():
        if spec.stage and (problem or registry.champion_info(spec.name) is None) and spec.stage not in stages:
            stages.append(spec.stage)
    return stages


def banner(port: int) -> str:
    url = f"http://127.0.0.1:{port}"
    keyed = bool(os.environ.get(settings.ENV_API_KEYS) or os.environ.get(settings.ENV_API_KEYS_FILE))
    key = ' -H "X-API-Key: $OPSLAB_KEY"' if keyed else ""
    body = '{"readings": [{"sensor_id": "cpu-01", "timestamp": "2024-03-01T00:00:00", "value": 42.0}]}'
    return "\n".join(
        [
            "",
            f"opslab service: {url}   (OpenAPI: {url}/docs.json, UI: {url}/, health: {url}/readyz)",
            "try:",
            f"  curl -s {url}/detect_anomaly -H 'Content-Type: application/json'{key} -d '{body}'",
            f"  curl -s {url}/models -H 'Content-Type: application/json'{key} -d '{{}}'",
            "docs: docs/serving.md" + ("" if keyed else "   (no API keys set: open, loopback only)"),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.serving")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("missing-stages", help="print the DVC stages whose models have no champion")
    b = sub.add_parser("banner", help="print the service URL and example requests")
    b.add_argument("--port", type=int, default=3000)
    args = ap.parse_args(argv)
    if args.cmd == "missing-stages":
        print(" ".join(missing_stages()))
    else:
        print(banner(args.port), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
