"""Project paths and params.yaml access; nothing happens at import time beyond computing paths."""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping
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


@functools.cache
def _project_params(path: Path) -> dict[str, Any]:
    return load_params(path)


def section(
    name: str, given: Mapping[str, Any] | None = None, *, defaults_file: str | os.PathLike | None = None
) -> dict:
    """The `name:` section of the params: `given` merged over the project's params.yaml section.

    The project's params.yaml is the one place a default is declared (code declares none). Nested mappings
    merge key by key; a key the project's section does not have is refused with a ValueError naming it and
    the section, so a typo fails before any work. `given` may be a whole section or only a few keys of it.
    """
    path = Path(defaults_file) if defaults_file else ROOT / "params.yaml"
    declared = _project_params(path.resolve()).get(name)
    if not isinstance(declared, Mapping):
        raise ValueError(f"params: {path} has no section {name!r}")
    return _merged(declared, given or {}, name)


def _merged(declared: Mapping[str, Any], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        raise ValueError(f"params {where}: expected a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"params {where}: unknown key(s) {unknown}; known: {sorted(declared)}")
    out = copy.deepcopy(dict(declared))
    for key, value in given.items():
        if isinstance(declared[key], Mapping) and value is not None:
            out[key] = _merged(declared[key], value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out
