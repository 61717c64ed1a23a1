"""The table docs/ml/index.html opens with: every model's headline metric on synthetic data and on the real
corpus, the best baseline's on the same data, and the gate status, read from the model cards and metrics.

Nothing here is typed by hand: a number missing from the metrics shows as "–".
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Number = float | None


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _best(
    rows: Mapping[str, Mapping[str, Any]], key: str, higher: bool, skip: str = "model"
) -> tuple[str, Number]:
    """The best baseline in an evaluate-style section: (name, value)."""
    cands = [
        (n, r.get(key))
        for n, r in rows.items()
        if n != skip and isinstance(r, Mapping) and r.get(key) is not None
    ]
    if not cands:
        return "", None
    return (max if higher else min)(cands, key=lambda t: float(t[1]))


def _card_best(card: Mapping[str, Any], suffix: str, higher: bool) -> tuple[str, Number]:
    """The best baseline among a card's baseline metrics whose name ends with `suffix`."""
    rows = {k[: -len(suffix)].strip("_"): {"v": v} for k, v in card.get("baseline_metrics", {}).items()
            if k.endswith(suffix) and "margin" not in k and not k.startswith("uci_")}  # fmt: skip
    return _best(rows, "v", higher, skip="")


def _uci(metrics: Path, section: str, key: str, higher: bool) -> dict[str, Any]:
    result = _read(metrics / "uci_full.json")
    rows = result.get(section) or {}
    name, value = _best(rows, key, higher)
    return {"real": (rows.get("model") or {}).get(key), "real_baseline": value, "real_baseline_name": name,
            "real_data": f"UCI ServiceNow log, {result.get('incidents', '?')} incidents"}  # fmt: skip


def _anomaly(card: Mapping, metrics: Path) -> dict[str, Any]:
    nab = _read(metrics / "nab.json")
    pub = {n: {"standard": m.get("standard")} for n, m in nab.get("published", {}).items()}
    name, value = _best(pub, "standard", True, skip="")
    base_name, base = _card_best(card, "event_f1", True)
    return {"metric": "event F1 (synthetic) / NAB standard score (real)", "higher": True,
            "synthetic": card["primary_metrics"].get("event_f1"), "baseline": base, "baseline_name": base_name,
            "real": nab.get("standard"), "real_baseline": value, "real_baseline_name": f"{name} (published)",
            "real_data": f"whole NAB corpus, {nab.get('files', '?')} files"}  # fmt: skip


def _forecast(card: Mapping, metrics: Path) -> dict[str, Any]:
    syn = _read(metrics / "forecast.json").get("goals", {})
    real = _read(metrics / "real" / "forecast.json").get("nab_sample", {})
    key = "mase_median"
    return {"metric": "median MASE, holdout", "higher": False, "synthetic": syn.get(f"selected_holdout.{key}"),
            "baseline": syn.get(f"seasonal_naive.{key}"), "baseline_name": "seasonal naive",
            "real": real.get(f"selected_holdout.{key}"), "real_baseline": real.get(f"seasonal_naive.{key}"),
            "real_baseline_name": "seasonal naive", "real_data": "NAB sample, hourly"}  # fmt: skip


def _sla(card: Mapping, metrics: Path) -> dict[str, Any]:
    name, base = _card_best(card, "roc_auc", True)
    return {"metric": "ROC AUC", "higher": True, "synthetic": card["primary_metrics"].get("roc_auc"),
            "baseline": base, "baseline_name": name, **_uci(metrics, "sla", "roc_auc", True)}  # fmt: skip


def _ttr(card: Mapping, metrics: Path) -> dict[str, Any]:
    base = card.get("baseline_metrics", {}).get("baseline_median_ae_p50_hours")
    return {"metric": "P50 median abs. error (h)", "higher": False,
            "synthetic": card["primary_metrics"].get("median_ae_p50_hours"), "baseline": base,
            "baseline_name": "per-priority", **_uci(metrics, "ttr", "median_ae_p50_hours", False)}  # fmt: skip


def _triage(card: Mapping, metrics: Path) -> dict[str, Any]:
    key = "assignment_group_baseline_keyword_rule_accuracy_when_covered"
    return {"metric": "assignment group accuracy (synthetic: when it answers)", "higher": True,
            "synthetic": card["primary_metrics"].get("assignment_group_accuracy_when_covered"),
            "baseline": card.get("baseline_metrics", {}).get(key), "baseline_name": "keyword rule",
            **_uci(metrics, "group", "accuracy", True)}  # fmt: skip


HEADLINES: dict[str, Callable[[Mapping, Path], dict[str, Any]]] = {
    "sensor-anomaly": _anomaly,
    "sensor-forecast": _forecast,
    "incident-sla": _sla,
    "incident-ttr": _ttr,
    "incident-triage": _triage,
}


def summary_rows(cards_dir: Path, metrics_dir: Path) -> list[dict[str, Any]]:
    """One row per model card: headline metric on synthetic and real data, best baseline beside each."""
    rows = []
    for path in sorted(Path(cards_dir).glob("*.json")):
        card = json.loads(path.read_text())
        name = card["name"]
        spec = HEADLINES.get(name)
        if spec is not None:
            row = spec(card, Path(metrics_dir))
        else:
            key, value = next(iter(card.get("primary_metrics", {}).items()), ("", None))
            row = {"metric": key, "higher": True, "synthetic": value, "baseline": None, "baseline_name": ""}
        rows.append({"name": name, "notebook": card.get("notebook"), "version": card.get("version"),
                     "gates_passed": bool(card.get("gates_passed")), **row})  # fmt: skip
    return rows


def _num(v: Any) -> str:
    try:
        return f"{float(v):.3g}" if abs(float(v)) < 1000 else f"{float(v):,.0f}"
    except (TypeError, ValueError):
        return "–"


def _versus(model: Any, base: Any, higher: bool) -> str:
    if model is None or base is None:
        return ""
    better = float(model) > float(base) if higher else float(model) < float(base)
    return " ✅" if better else " ❌"


def summary_html(
    rows: list[dict[str, Any]], card_href: Callable[[str], str], page_href: Callable[[str], str]
) -> str:
    """The table as HTML: ✅ / ❌ say whether the model beats the best baseline on the same data."""
    out = ["<table><tr><th>model</th><th>headline metric</th><th>synthetic</th><th>best baseline (synthetic)</th>"
           "<th>real data</th><th>real</th><th>best baseline (real)</th><th>gates</th></tr>"]  # fmt: skip
    for r in rows:
        nb = f" · <a href='{html.escape(page_href(r['notebook']))}'>notebook</a>" if r.get("notebook") else ""
        out.append(
            f"<tr><td><a href='{html.escape(card_href(r['name']))}'>{html.escape(r['name'])}</a> v{html.escape(str(r['version']))}{nb}</td>"
            f"<td>{html.escape(str(r['metric']))}</td>"
            f"<td>{_num(r.get('synthetic'))}{_versus(r.get('synthetic'), r.get('baseline'), r['higher'])}</td>"
            f"<td>{_num(r.get('baseline'))} {html.escape(r.get('baseline_name') or '')}</td>"
            f"<td>{html.escape(r.get('real_data') or '–')}</td>"
            f"<td>{_num(r.get('real'))}{_versus(r.get('real'), r.get('real_baseline'), r['higher'])}</td>"
            f"<td>{_num(r.get('real_baseline'))} {html.escape(r.get('real_baseline_name') or '')}</td>"
            f"<td>{'passed' if r['gates_passed'] else 'FAILED'}</td></tr>"
        )  # fmt: skip
    out.append("</table><p>✅ / ❌: the model beats / does not beat the best baseline on the same data. Real "
               "data: whole corpora where shipped (NAB, the UCI log), else the sample; read from "
               "<code>metrics/</code>, last recorded where <code>../shared/data</code> is absent.</p>")  # fmt: skip
    return "\n".join(out)
