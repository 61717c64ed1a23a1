"""The docs stay true: the DVC graph in docs/architecture.md is dvc's own, and local links resolve."""

from __future__ import annotations

import re

import pytest

from ml.config import ROOT
from scripts import dvc_dag

LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")
GENERATED = ("docs/ml/",)  # outputs of `make all`: absent from a fresh clone until it has run


def test_architecture_stage_graph_matches_dvc_yaml():
    text = dvc_dag.DOC.read_text()
    assert dvc_dag.current(text) == dvc_dag.block(), "run `uv run python -m scripts.dvc_dag`"


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md", "docs/scaling.md", "docs/serving.md"])
def test_local_links_resolve(doc):
    path = ROOT / doc
    if not path.exists():
        pytest.skip(f"{doc} not written yet")
    broken = []
    for target in LINK.findall(path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (path.parent / target).resolve()
        rel = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved
        if not resolved.exists() and not str(rel).startswith(GENERATED):
            broken.append(target)
    assert not broken, f"{doc} links to missing files: {broken}"
