"""Project paths and params.yaml access; nothing happens at import time beyond computing paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(os.environ.get("OPSLAB_ROOT", Path(__file__).resolve().parents[1]))
DATA = ROOT / "data"
DOCS_ML = ROOT / "docs" / "ml"
METRICS = ROOT / "metrics"
SHARED_DATA = ROOT.parent / "shared" / "data"
# the registry's exported champions (the service's fallback copies); tests point it elsewhere
MODELS = Path(os.environ.get("OPSLAB_MODELS_DIR", ROOT / "models"))


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read params.yaml (the one place for every tunable)."""
    path = Path(path) if path else ROOT / "params.yaml"
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def resolve(path: str | os.PathLike) -> Path:
    """A path from params.yaml, relative to the project root unless absolute."""
    p = Path(path)
    return p if p.is_absolute() else ROOT / p
