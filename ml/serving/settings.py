"""Serving limits and switches: params.yaml `serving:` (through `config.section`), a few overridable by env.

The drift flag's PSI threshold and bins come from `monitoring:` (the same numbers the drift notebook uses).

Read once per process (the request schemas carry the limits, so they are fixed at import time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache

from ml import config

ENV_API_KEYS = "OPSLAB_API_KEYS"
ENV_API_KEYS_FILE = "OPSLAB_API_KEYS_FILE"
ENV_REQUIRED = "OPSLAB_REQUIRED_MODELS"
ENV_URI_PREFIX = "OPSLAB_MODEL_URI_"
ENV_ALLOWED_HOSTS = "OPSLAB_ALLOWED_HOSTS"
ENV_WORKERS = "OPSLAB_WORKERS"
ENV_PREDICTION_LOG = "OPSLAB_PREDICTION_LOG"  # a folder, or "off"
ENV_ACCESS_LOG = "OPSLAB_ACCESS_LOG"  # on / off
RATE_LIMIT_SCOPES = ("predict", "admin")


@dataclass(frozen=True)
class Settings:
    required_models: tuple[str, ...]
    max_items: int
    max_history: int
    max_text_chars: int
    max_body_bytes: int
    threads: int
    sla_threshold: float | None
    drift_psi_threshold: float
    drift_bins: int
    max_history_steps: int
    max_drift_grid: int
    allowed_hosts: tuple[str, ...]
    rate_limits: tuple[tuple[str, str], ...]  # (scope, "N/period") pairs; a scope not listed is not limited
    fast_path: bool = True  # compiled request paths (ml/serving/fast/); false: the fitted objects only
    workers: int = 0  # worker processes; 0: one per CPU core (env OPSLAB_WORKERS)
    prediction_log: str | None = (
        None  # folder of the prediction log (env OPSLAB_PREDICTION_LOG; "off"/None: none)
    )
    prediction_log_retention_days: int = 30
    prediction_log_max_queue: int = 10_000
    access_log: bool = True  # BentoML's access log line per request (env OPSLAB_ACCESS_LOG on/off)
    tracing: bool = False  # BentoML's OpenTelemetry spans per request (exported only with an exporter)
    inline_items: int = 32  # compiled endpoints: requests up to this many items answered without a thread


@lru_cache(maxsize=1)
def get() -> Settings:
    """The settings of this process (params.yaml `serving:`; OPSLAB_REQUIRED_MODELS and
    OPSLAB_ALLOWED_HOSTS win)."""
    p = config.section("serving")
    unknown = sorted(set(p) - {f.name for f in fields(Settings)})
    if unknown:
        raise ValueError(f"params.yaml serving: key(s) {unknown} are not serving settings")
    monitoring = config.section("monitoring")
    required = p["required_models"]
    if os.environ.get(ENV_REQUIRED) is not None:
        required = [m.strip() for m in os.environ[ENV_REQUIRED].split(",") if m.strip()]
    hosts = p["allowed_hosts"] or []
    if os.environ.get(ENV_ALLOWED_HOSTS) is not None:
        hosts = [h.strip() for h in os.environ[ENV_ALLOWED_HOSTS].split(",") if h.strip()]
    limits = p["rate_limits"] or {}
    unknown = sorted(set(limits) - set(RATE_LIMIT_SCOPES))
    if unknown:
        raise ValueError(f"params.yaml serving.rate_limits: {unknown} are not scopes {RATE_LIMIT_SCOPES}")
    return Settings(
        required_models=tuple(required or ()),
        max_items=int(p["max_items"]),
        max_history=int(p["max_history"]),
        max_text_chars=int(p["max_text_chars"]),
        max_body_bytes=int(p["max_body_bytes"]),
        threads=int(p["threads"]),
        sla_threshold=None if p["sla_threshold"] is None else float(p["sla_threshold"]),
        drift_psi_threshold=float(monitoring["psi_threshold"]),  # one threshold: params monitoring
        drift_bins=int(monitoring["bins"]),
        max_history_steps=int(p["max_history_steps"]),
        max_drift_grid=int(p["max_drift_grid"]),
        allowed_hosts=tuple(h.lower() for h in hosts),
        rate_limits=tuple((scope, str(text)) for scope, text in limits.items() if text),
        fast_path=bool(p.get("fast_path", True)),
        workers=int(os.environ.get(ENV_WORKERS) or p.get("workers") or 0),
        prediction_log=prediction_log_dir(p.get("prediction_log")),
        prediction_log_retention_days=int(p.get("prediction_log_retention_days", 30)),
        prediction_log_max_queue=int(p.get("prediction_log_max_queue", 10_000)),
        access_log=switch(os.environ.get(ENV_ACCESS_LOG, p.get("access_log", True))),
        tracing=bool(p.get("tracing", False)),
        inline_items=int(p.get("inline_items", 32)),
    )


def switch(value) -> bool:
    """A yes/no setting from params (a bool) or the environment (on/off, true/false, 1/0, yes/no)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "on", "true", "yes"):
        return True
    if text in ("0", "off", "false", "no", ""):
        return False
    raise ValueError(f"{value!r} is not on/off")


def prediction_log_dir(configured: str | None) -> str | None:
    """The prediction log's folder: env OPSLAB_PREDICTION_LOG over params (relative to the project); None
    when either says off."""
    value = os.environ.get(ENV_PREDICTION_LOG, configured)
    if value is None or str(value).strip().lower() in ("", "off", "none", "false"):
        return None
    return str(config.resolve(value))


def worker_count(cfg: Settings) -> int:
    """Worker processes of the service: `serving.workers` (env OPSLAB_WORKERS), 0 = one per usable core."""
    if cfg.workers > 0:
        return cfg.workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


def uri_env_var(model_name: str) -> str:
    """`sensor-anomaly` -> `OPSLAB_MODEL_URI_SENSOR_ANOMALY` (the per-model source override)."""
    return ENV_URI_PREFIX + model_name.upper().replace("-", "_").replace(".", "_")
