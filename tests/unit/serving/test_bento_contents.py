"""What a Bento ships (bentofile.yaml through BentoML's own include/exclude matcher): the service and every
module it imports, and no test code or synthetic generator."""

from __future__ import annotations

import subprocess

import yaml
from bentoml._internal.bento.build_config import BentoPathSpec

from ml.config import ROOT
from scripts.dvc_deps import imported_files


def _shipped() -> set[str]:
    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    paths = BentoPathSpec(spec["include"], spec["exclude"], ctx_dir=str(ROOT))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {f for f in tracked.split() if paths.includes(f)}


def test_bento_ships_no_test_code_and_no_generator():
    shipped = _shipped()
    assert "service.py" in shipped and "params.yaml" in shipped and "ml/serving/runtime.py" in shipped
    leaked = sorted(
        f for f in shipped if f.startswith(("tests/", "ml/testing/", "ml/data/synth/", "notebooks/"))
    )
    assert not leaked, f"bentofile.yaml ships test code or the generator: {leaked}"


def test_every_module_the_service_imports_is_shipped():
    shipped = _shipped()
    seen, todo = set(), [ROOT / "service.py"]
    while todo:  # every project module the service imports, at any depth (package __init__ files too)
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imported_files(path) - seen)
    missing = sorted(str(p.relative_to(ROOT)) for p in seen if str(p.relative_to(ROOT)) not in shipped)
    assert not missing, f"the service imports modules the Bento leaves out: {missing}"
