"""What a Bento ships (bentofile.yaml through BentoML's own include/exclude matcher): the service and every
module it imports, and no test code or synthetic generator."""

from __future__ import annotations

import ast
import subprocess

import yaml
from bentoml._internal.bento.build_config import BentoPathSpec

from ml.config import ROOT


def _shipped() -> set[str]:
    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    paths = BentoPathSpec(spec["include"], spec["exclude"], ctx_dir=str(ROOT))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {f for f in tracked.split() if paths.includes(f)}


def _module_file(module: str) -> str | None:
    base = module.replace(".", "/")
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def _project_imports(path: str) -> set[str]:
    """Files of the project modules `path` imports, at any depth of the file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "ml" and (f := _module_file(name)):
                found.add(f)
    return found


def test_bento_ships_no_test_code_and_no_generator():
    shipped = _shipped()
    assert "service.py" in shipped and "params.yaml" in shipped and "ml/serving/runtime.py" in shipped
    leaked = sorted(
        f for f in shipped if f.startswith(("tests/", "ml/testing/", "ml/data/synth/", "notebooks/"))
    )
    assert not leaked, f"bentofile.yaml ships test code or the generator: {leaked}"


def test_every_module_the_service_imports_is_shipped():
    shipped = _shipped()
    seen, todo = set(), ["service.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_project_imports(path) - seen)
    missing = sorted(seen - shipped)
    assert not missing, f"the service imports modules the Bento leaves out: {missing}"
