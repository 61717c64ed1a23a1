"""Notebook hygiene: every notebook has a jupytext .py twin in sync, no outputs, one parameters cell,
and training notebooks define no functions or classes (logic belongs in ml/)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import jupytext
import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def problems(nb_dir: Path = NOTEBOOKS) -> list[str]:
    """Every hygiene problem found, one readable line each."""
    out: list[str] = []
    for ipynb in sorted(nb_dir.glob("*.ipynb")):
        twin = ipynb.with_suffix(".py")
        nb = nbformat.read(ipynb, as_version=4)
        if not twin.exists():
            out.append(f"{ipynb.name}: no jupytext twin {twin.name} (run `make notebooks`)")
        else:
            paired = jupytext.read(twin)
            if [c.source for c in paired.cells] != [c.source for c in nb.cells]:
                out.append(f"{ipynb.name}: out of sync with {twin.name} (run `make notebooks`)")
            tree = ast.parse(twin.read_text())
            defs = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
            if defs:
                out.append(f"{twin.name}: defines {defs}; move them into ml/ with a test")
        dirty = [
            i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)
        ]
        if dirty:
            out.append(f"{ipynb.name}: cells {dirty} have outputs (run `make notebooks` / nbstripout)")
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if len(params) != 1:
            out.append(f"{ipynb.name}: needs exactly one cell tagged 'parameters', has {len(params)}")
    for twin in sorted(nb_dir.glob("*.py")):
        if not twin.with_suffix(".ipynb").exists():
            out.append(f"{twin.name}: no paired .ipynb (run `make notebooks`)")
    return out


if __name__ == "__main__":
    found = problems()
    print("\n".join(found) or "notebooks: clean and in sync")
    sys.exit(1 if found else 0)
