"""Keep every DVC stage's code deps equal to the ml/ modules it really imports (a test checks it).

A stage's code is what its command runs (`python -m ml.x`, or a notebook through `ml.reports.notebooks`),
followed through every `import` of a project module, at any depth. Package `__init__` files are left out
(they hold only a docstring).

python -m scripts.dvc_deps          # rewrite the ml/ lines of each stage's deps in dvc.yaml
python -m scripts.dvc_deps --check  # exit 1 and name the stage when a list is out of date
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = ROOT / "dvc.yaml"
RUN = re.compile(r"python -m ([\w.]+)(?: (\d\d_\w+))?")
DEP_LINE = re.compile(r"^      - ml/\S+\.py\n", re.M)


def module_file(module: str) -> Path | None:
    base = ROOT / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_files(path: Path) -> set[Path]:
    """Project module files that `path` imports (module-level and inside functions)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for name in names:
            if name.split(".")[0] == "ml" and (f := module_file(name)):
                found.add(f)
    return found


def closure(entries: list[Path]) -> list[str]:
    seen: set[Path] = set()
    todo = list(entries)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imported_files(path) - seen)
    return sorted(
        str(p.relative_to(ROOT)) for p in seen if p.name != "__init__.py" and p.parts[len(ROOT.parts)] == "ml"
    )


def stage_entries(cmd: str | list[str]) -> list[Path]:
    entries = []
    for line in [cmd] if isinstance(cmd, str) else cmd:
        for module, notebook in RUN.findall(line):
            if not module.startswith("ml."):
                continue
            path = module_file(module) or module_file(f"{module}.__main__")
            if path is None:
                raise SystemExit(f"dvc.yaml runs {module!r}: no such module")
            main = path.parent / "__main__.py"
            entries += [path] + ([main] if path.name == "__init__.py" and main.is_file() else [])
            if notebook:
                entries.append(ROOT / "notebooks" / f"{notebook}.py")
    return entries


def expected() -> dict[str, list[str]]:
    stages = yaml.safe_load(DVC_YAML.read_text())["stages"]
    return {name: closure(stage_entries(stage["cmd"])) for name, stage in stages.items()}


def rewrite(text: str, deps: dict[str, list[str]]) -> str:
    """dvc.yaml with each stage's `ml/*.py` deps replaced by `deps[stage]` (comments and order elsewhere kept)."""
    out, stage = [], None
    blocks = re.split(r"(?m)^(  [\w-]+:.*\n)", text)
    for block in blocks:
        m = re.match(r"^  ([\w-]+):", block)
        if m:
            stage = m.group(1)
            out.append(block)
            continue
        if stage in deps and "    deps:\n" in block:
            block = DEP_LINE.sub("", block)
            head, rest = block.split("    deps:\n", 1)
            lines = "".join(f"      - {d}\n" for d in deps[stage])
            # code deps go after the data deps of the stage
            data = re.match(r"((?:      - .*\n|      \s.*\n)*)", rest).group(1)
            block = head + "    deps:\n" + data + lines + rest[len(data) :]
        out.append(block)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml is out of date")
    args = ap.parse_args(argv)
    current = DVC_YAML.read_text()
    new = rewrite(current, expected())
    if args.check:
        if new != current:
            stages = yaml.safe_load(current)["stages"]
            want = expected()
            bad = [
                s
                for s in want
                if sorted(d for d in stages[s].get("deps", []) if d.startswith("ml/")) != want[s]
            ]
            print(f"dvc.yaml code deps out of date for {bad}: run `python -m scripts.dvc_deps`")
            return 1
        return 0
    DVC_YAML.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
