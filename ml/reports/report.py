"""Render executed notebooks to HTML, write the model cards and run comparison, and docs/ml/index.html
linking the pages, model cards, runs, drift reports, charts and metrics."""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
from pathlib import Path

from ml.config import METRICS, ROOT, load_params
from ml.reports import model_cards, summary
from ml.reports.notebooks import render_html

STYLE = (
    "<style>body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
    "img{max-width:30em;border:1px solid #ddd;margin:.3em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style>"
)


def markdown_page(md: Path, out: Path, title: str, index: Path) -> Path:
    """A markdown file (model card, runs comparison) as a standalone HTML page linking back to `index`.

    Raw HTML in the markdown is escaped, never passed through: cards quote MLflow params and tags, which
    anyone who can log a run writes."""
    import mistune  # nbconvert's markdown renderer; imported here as only this page builder needs it

    render = mistune.create_markdown(escape=True, plugins=["strikethrough", "footnotes", "table"])
    body = render(md.read_text(encoding="utf-8"))
    out.write_text(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"{STYLE}</head><body><p><a href='{html.escape(os.path.relpath(index, out.parent))}'>&larr; index</a></p>"
        f"{body}</body></html>",
        encoding="utf-8",
    )
    return out


def build_index(
    index: Path,
    pages: list[Path],
    charts_root: Path,
    metrics_dir: Path = METRICS,
    cards: list[Path] = (),
    extra: list[tuple[str, Path]] = (),
    models: list[dict] = (),
) -> Path:
    """A plain static index: rendered notebooks, model cards, other reports, charts per stage, and the
    DVC metrics as tables."""
    base = index.parent
    rel = lambda p: html.escape(str(Path(p).resolve().relative_to(base.resolve())))  # noqa: E731
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>opslab reports</title>",
        f"{STYLE}</head><body>",
        "<h1>opslab: rendered notebooks, charts and metrics</h1>",
    ]
    if models:
        html_dir = charts_root / "html"
        parts += [
            "<h2>Every model at a glance</h2>",
            summary.summary_html(
                list(models),
                card_href=lambda n: os.path.relpath(charts_root / "model_cards" / f"{n}.html", base),
                page_href=lambda nb: os.path.relpath(html_dir / f"{nb}.html", base),
            ),
        ]
    parts.append("<h2>Notebooks</h2><ul>")
    parts += [f"<li><a href='{rel(p)}'>{html.escape(p.stem)}</a></li>" for p in sorted(pages)]
    parts.append("</ul><h2>Model cards</h2><ul>")
    parts += [f"<li><a href='{rel(p)}'>{html.escape(p.stem)}</a></li>" for p in sorted(cards)]
    parts.append("</ul><h2>Other reports</h2><ul>")
    parts += [f"<li><a href='{rel(p)}'>{html.escape(label)}</a></li>" for label, p in extra if p.exists()]
    parts.append("</ul><h2>Charts</h2>")
    for stage in sorted(d for d in charts_root.iterdir() if d.is_dir() and any(d.glob("*.png"))):
        parts.append(f"<h3>{html.escape(stage.name)}</h3><div>")
        parts += [
            f"<a href='{rel(p)}'><img src='{rel(p)}' alt='{html.escape(p.stem)}'></a>"
            for p in sorted(stage.glob("*.png"))
        ]
        parts.append("</div>")
    parts.append("<h2>Metrics (DVC)</h2>")
    for m in sorted(metrics_dir.glob("*.json")):
        flat = _flatten(json.loads(m.read_text()))
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in flat.items()
        )
        parts.append(f"<h3>{html.escape(m.name)}</h3><table>{rows}</table>")
    parts.append("</body></html>")
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


def _flatten(d, prefix: str = "") -> dict:
    if isinstance(d, list):  # a metrics file that is a table (metrics/nab_ablation.json): its rows
        return {f"{prefix}{i}": row for i, row in enumerate(d)}
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            out[key] = f"{len(v)} entries"
        else:
            out[key] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.reports.report", description=__doc__.splitlines()[0])
    ap.add_argument("--executed", default="build/notebooks")
    ap.add_argument("--html", default="docs/ml/html")
    ap.add_argument("--index", default="docs/ml/index.html")
    ap.add_argument("--cards", default="docs/ml/model_cards")
    ap.add_argument("--runs", default="docs/ml/runs.md")
    args = ap.parse_args(argv)
    executed = sorted((ROOT / args.executed).glob("*.ipynb"))
    pages = [render_html(nb, ROOT / args.html) for nb in executed]
    cards_dir, runs = ROOT / args.cards, ROOT / args.runs
    for old in cards_dir.glob("*.*"):
        old.unlink()  # a model no longer registered loses its card
    index = ROOT / args.index
    cards = [
        markdown_page(md, md.with_suffix(".html"), md.stem, index)
        for md in model_cards.write_cards(cards_dir)
    ]
    runs.write_text(model_cards.runs_comparison(), encoding="utf-8")
    runs_page = markdown_page(runs, runs.with_suffix(".html"), "latest runs per model", index)
    docs = ROOT / "docs" / "ml"
    extra = [("latest runs per model (MLflow)", runs_page), ("service benchmark", docs / "bench.md")]
    extra += [(f"drift report: {p.stem}", p) for p in sorted((docs / "drift").glob("*.html"))]
    extra += [(f"quality gate: {p.parent.name}", p) for p in sorted((docs / "quality").glob("**/*.html"))]
    # the monitoring job's page (operations.report): build_index links it only once the job has written it
    live = ROOT / load_params()["operations"]["report"] / "index.html"
    if live.resolve().is_relative_to(docs.resolve()):
        extra.append(("live monitoring (production traffic)", live))
    models = summary.summary_rows(cards_dir, METRICS)
    build_index(index, pages, docs, cards=cards, extra=extra, models=models)
    for p in pages:
        print(f"  rendered {p.relative_to(ROOT)}")
    print(f"index: {index.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
