"""Compiled request paths for the served models: the same numbers as the fitted objects, without pandas.

`compile_model(name, model)` reads a loaded model's fitted parts into arrays and lookups (the Isolation
Forest and gradient boosting trees packed into flat arrays, encoders as dicts, TF-IDF as its analyzer +
vocabulary + idf, linear heads as coefficient matrices). A model whose shape the compiler does not know
(another estimator, a categorical split, a new calibration) gets no fast path: the reason is logged and
its endpoints keep serving the fitted object itself (the slow path), so a changed model still answers
correctly. tests/unit/serving/test_fast_equality.py checks every compiled path against the batch function.
"""

from __future__ import annotations

import logging
from typing import Any

from ml.serving.fast.incidents import FastClassifierHeads, FastSla
from ml.serving.fast.sensors import FastDetector
from ml.serving.fast.trees import Unsupported

log = logging.getLogger("opslab.serving")

COMPILERS = {
    "sensor-anomaly": FastDetector,
    "incident-sla": FastSla,
    "incident-triage": FastClassifierHeads,
    "incident-system-team": FastClassifierHeads,
}


def compile_model(name: str, model: Any) -> Any | None:
    """The compiled request path of `model`, or None (logged, with the reason) when there is none."""
    compiler = COMPILERS.get(name)
    if compiler is None:
        return None
    try:
        return compiler(model)
    except Unsupported as exc:
        log.warning("opslab: %s: no fast path (%s); serving the fitted object", name, exc)
    except Exception as exc:  # noqa: BLE001 - a compiler bug must never stop the model from serving
        log.exception("opslab: %s: compiling the fast path failed (%s); serving the fitted object", name, exc)
    return None


__all__ = ["Unsupported", "compile_model"]
