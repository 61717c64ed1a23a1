"""Run the numbered notebooks with papermill and render them to HTML for assessors.

Papermill passes only run-level switches (PARAMS_FILE, SMOKE, output places); every hyperparameter
stays in params.yaml, which the notebook reads itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ml.config import ROOT

NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "notebooks"
HTML = ROOT / "docs" / "ml" / "html"


def execute(name: str, *, parameters: dict | None = None, out_dir: Path = EXECUTED, cwd: Path = ROOT) -> Path:
    """Execute notebooks/<name>.ipynb with papermill; the executed copy (with outputs) goes to out_dir."""
    import papermill as pm  # imported on use: ~2 s, and ml.incidents.evaluate imports this module for jsonable

    src = NOTEBOOKS / f"{name}.ipynb"
    if not src.exists():
        raise FileNotFoundError(
            f"{src}: no such notebook (run `make notebooks` to pair it from its .py twin)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    pm.execute_notebook(
        str(src),
        str(out),
        parameters=parameters or {},
        kernel_name="python3",
        cwd=str(cwd),
        progress_bar=False,
        log_output=False,
    )
    return out


def render_html(executed: Path, out_dir: Path = HTML) -> Path:
    """Render an executed notebook to a self-contained HTML page (charts embedded)."""
    import nbformat  # imported on use, as papermill
    from nbconvert import HTMLExporter  # imported on use: ~1 s, only the report stage renders

    nb = nbformat.read(executed, as_version=4)
    for i, cell in enumerate(nb.cells):  # papermill's injected cell gets a random id: keep pages byte-stable
        cell["id"] = f"cell-{i}"
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": executed.stem}})
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{executed.stem}.html"
    out.write_text(body, encoding="utf-8")
    return out


def recorded(executed: Path) -> dict:
    """What the notebook's last cell recorded (a JSON dict printed under the `opslab-record` tag)."""
    import nbformat  # imported on use, as papermill

    nb = nbformat.read(executed, as_version=4)
    for cell in reversed(nb.cells):
        if "opslab-record" in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    return json.loads(output["text"])
    raise ValueError(f"{executed}: no cell tagged 'opslab-record' printed a result")


def jsonable(obj):
    """Numbers, NaN and numpy scalars in nested dicts/lists -> plain JSON values (NaN becomes null)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def real_path(metrics_path: str | Path) -> Path:
    """Where a stage's real-data results live: `metrics/real/<stage>.json` beside `metrics/<stage>.json`."""
    path = Path(metrics_path)
    return path.parent / "real" / path.name


def last_real_results(metrics_path: str | Path) -> pd.DataFrame | None:
    """The real-data results a stage last recorded (`real_path`), one row per value, or None if there are none.

    Shown by a notebook run without `../shared/data`, so its rendered page keeps the real-data numbers (as
    recorded, not recomputed) instead of dropping them.
    """
    path = real_path(metrics_path)
    if not path.exists():
        return None
    flat = pd.json_normalize(json.loads(path.read_text()), sep=" | ").T
    return flat.set_axis([f"recorded in {path.parent.name}/{path.name}"], axis=1)


def write_record(
    metrics_path: str | Path, record: Mapping, *, real: Mapping | None = None, sort_keys: bool = False
) -> dict:
    """Write a notebook's record (every record cell calls this) and print it for `recorded()`.

    `record` (the synthetic-data results) goes to `metrics_path`. Real-data results go to their own file
    (`real_path`), and only when the real data was there: a run without `../shared` leaves the committed
    real-data results alone instead of erasing them. The printed record carries both, `real` ({} if none).
    """
    path = Path(metrics_path)
    record = jsonable(dict(record))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=sort_keys) + "\n")
    real = jsonable(dict(real)) if real else {}
    if real:
        out = real_path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(real, indent=2, sort_keys=sort_keys) + "\n")
    printed = {**record, "real": real}
    print(json.dumps(printed))
    return printed


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as the start of a formula


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy where every text cell (index included) that a spreadsheet would run as a formula starts with
    a quote instead (OWASP's CSV-injection advice); numbers and other cells are unchanged."""

    def cell(v):
        return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v

    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(cell)
    if out.index.dtype == object:
        out.index = out.index.map(cell)
    return out.rename(columns=cell)


def write_csv(frame: pd.DataFrame, path: str | Path, **to_csv) -> Path:
    """Write a table for people to open in a spreadsheet: text that would run as a formula is neutralised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spreadsheet_safe(frame).to_csv(path, **to_csv)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.reports.notebooks", description=__doc__.splitlines()[0])
    ap.add_argument("name", help="notebook name without extension, e.g. 01_eda")
    ap.add_argument("--params", default="params.yaml", help="params file the notebook reads")
    ap.add_argument("--smoke", action="store_true", help="small, fast run (tests, CI)")
    args = ap.parse_args(argv)
    out = execute(args.name, parameters={"PARAMS_FILE": args.params, "SMOKE": args.smoke})
    print(f"executed {args.name} -> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
