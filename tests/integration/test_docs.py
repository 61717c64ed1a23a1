"""The docs stay true: the DVC graph in docs/architecture.md is dvc's own, and local links resolve."""

from __future__ import annotations

import re

import pytest

from ml.config import ROOT
from scripts import dvc_dag, dvc_deps

LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")
GENERATED = ("docs/ml/",)  # outputs of `make all`: absent from a fresh clone until it has run


def test_architecture_stage_graph_matches_dvc_yaml():
    text = dvc_dag.DOC.read_text()
    assert dvc_dag.current(text) == dvc_dag.block(), "run `uv run python -m scripts.dvc_dag`"


def test_each_stage_depends_on_exactly_the_code_it_imports():
    assert dvc_deps.main(["--check"]) == 0, "run `uv run python -m scripts.dvc_deps`"


@pytest.mark.parametrize(
    "doc", ["README.md", "docs/architecture.md", "docs/scaling.md", "docs/serving.md", "docs/operations.md"]
)
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


CODE_PATH = re.compile(r"(?<![\w/.(])ml/[\w/]*\w(?:\.py|/)?")
MODULE_RUN = re.compile(r"python -m (ml(?:\.\w+)+)")
PROSE = ["README.md", "tests/README.md", "docs/architecture.md", "docs/scaling.md", "docs/serving.md",
         "docs/operations.md", "params.yaml", "Makefile", "dvc.yaml", "bentofile.yaml"]  # fmt: skip


@pytest.mark.parametrize("doc", PROSE)
def test_code_paths_and_commands_named_in_docs_exist(doc):
    """Every ml/ path and `python -m ml.…` command a doc names is still there after a move."""
    text = (ROOT / doc).read_text()
    missing = [
        p for p in CODE_PATH.findall(text) if not (ROOT / p).exists() and not (ROOT / f"{p}.py").exists()
    ]
    for module in MODULE_RUN.findall(text):
        base = ROOT / module.replace(".", "/")
        if not (base.with_suffix(".py").exists() or (base / "__main__.py").exists()):
            missing.append(f"python -m {module}")
    assert not missing, f"{doc} names code that does not exist: {sorted(set(missing))}"
