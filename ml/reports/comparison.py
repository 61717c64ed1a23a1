"""The markdown comparison each training stage writes: the new version against the champion, gate by gate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def write_comparison(
    path: Path,
    name: str,
    version: str,
    metrics: Mapping[str, float],
    champion: dict | None,
    verdicts: list[tuple[bool, str]],
    passed: bool,
) -> Path:
    """A markdown table of the new version's metrics against the champion it was compared with, and the gates."""
    ref = (champion or {}).get("metrics", {})
    head = f"champion v{champion['version']}" if champion else "champion (none yet)"
    lines = [
        f"# {name}: v{version} against the champion",
        "",
        f"Verdict: **{'promoted to champion' if passed else 'kept as challenger'}**.",
        "",
        f"| metric | new v{version} | {head} | change |",
        "|---|---|---|---|",
    ]
    for key in sorted(metrics):
        new = metrics[key]
        if not _finite(new):
            continue
        old = ref.get(key)
        delta = f"{float(new) - float(old):+.4g}" if old is not None and _finite(old) else ""
        shown_old = f"{float(old):.4g}" if old is not None and _finite(old) else "–"
        lines.append(f"| {key} | {float(new):.4g} | {shown_old} | {delta} |")
    lines += ["", "## Gates", ""] + [f"- {'✅' if ok else '❌'} {msg}" for ok, msg in verdicts]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
