"""Batch scores for the incidents still open in silver: the "scores" layer (`data/scores/open_incidents.parquet`).

Every champion model in the registry scores every open incident: breach risk and the decision at the
model's own threshold, hours to resolution with P10/P50/P90, and whatever later models add. Each block of
columns names the model version and sha256 that produced it; a model without a champion leaves its
columns empty and says so in `<model>_status`, so one missing model never blocks the others.

CLI (DVC stage `score_incidents`): `python -m ml.incidents.scoring --silver data/silver --out FILE`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ml import registry
from ml.features import add_group_load
from ml.incidents import sla, ttr
from ml.incidents.targets import is_closed, sort_by_time


def open_incidents(incidents: pd.DataFrame) -> pd.DataFrame:
    """Incidents without an outcome yet (no resolution, no SLA verdict), with the group load over all history."""
    with_load = add_group_load(sort_by_time(incidents))
    return with_load[~is_closed(with_load)].reset_index(drop=True)


def _sla_block(model, info: Mapping, rows: pd.DataFrame) -> pd.DataFrame:
    p = sla.breach_probability(model, rows)
    threshold = float(info["metrics"].get("threshold", 0.5))
    return pd.DataFrame({"p_breach": p, "breach_flag": p >= threshold, "breach_threshold": threshold})


def _ttr_block(model, info: Mapping, rows: pd.DataFrame) -> pd.DataFrame:
    pred = ttr.predict_ttr(model, rows).reset_index(drop=True)
    out = pred.add_prefix("ttr_").add_suffix("_hours")
    opened = pd.to_datetime(rows["opened_at"]).reset_index(drop=True)
    out["expected_resolved_at"] = opened + pd.to_timedelta(pred["p50"], unit="h")
    return out


def _cluster_block(model, info: Mapping, rows: pd.DataFrame) -> pd.DataFrame:
    labels = np.asarray(model.predict(rows), dtype=int)
    return pd.DataFrame({"cluster": labels, "cluster_terms": [model.cluster_label(c) for c in labels]})


def _heads_block(model, info: Mapping, rows: pd.DataFrame) -> pd.DataFrame:
    """Per head (e.g. assignment_group, category): the suggestion, its confidence, abstain and the reason."""
    frame = model.predict_frame(rows).reset_index(drop=True)
    keep = [c for c in frame.columns if c.rsplit("_", 1)[-1] in ("label", "confidence", "abstain", "reason")]
    return frame[keep].rename(columns=lambda c: f"suggested_{c}")


def _similar_block(model, info: Mapping, rows: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """The k most similar resolved incidents as JSON (number, similarity, group, hours to resolve)."""
    hits = model.query(rows.reset_index(drop=True), k=k)
    fields = ["number", "similarity", "assignment_group", "ttr_hours"]
    lists = {q: json.dumps(g[fields].round(3).to_dict(orient="records")) for q, g in hits.groupby("query")}
    return pd.DataFrame({"similar_incidents": [lists.get(i, "[]") for i in range(len(rows))]})


# model name -> (short prefix for its provenance columns, scorer(model, info, rows) -> frame of len(rows))
SCORERS: dict[str, tuple[str, Callable]] = {
    "incident-sla": ("sla", _sla_block),
    "incident-ttr": ("ttr", _ttr_block),
    "incident-clusters": ("cluster", _cluster_block),
    "incident-triage": ("triage", _heads_block),
    "incident-system-team": ("system_team", _heads_block),
    "incident-similar": ("similar", _similar_block),
}


def load_champions(names=None, loader=registry.load_champion) -> dict[str, tuple[object, dict] | str]:
    """name -> (model, info) for each champion, or a string saying why it could not be loaded."""
    out: dict[str, tuple[object, dict] | str] = {}
    for name in names or SCORERS:
        try:
            out[name] = loader(name)
        except Exception as exc:  # noqa: BLE001 - one missing model must not stop the others
            out[name] = f"not scored: {type(exc).__name__}: {exc}"[:300]
    return out


def score_open(incidents: pd.DataFrame, models: Mapping[str, tuple[object, dict] | str]) -> pd.DataFrame:
    """One row per open incident: identity columns, then each model's block with its version and sha256."""
    rows = open_incidents(incidents)
    keep = ["number", "opened_at", "state", "priority", "assignment_group", "category", "cmdb_ci"]
    out = rows[[c for c in keep if c in rows.columns]].copy()
    for name, (prefix, scorer) in SCORERS.items():
        loaded = models.get(name, "not scored: model not requested")
        if isinstance(loaded, str) or rows.empty:
            out[f"{prefix}_status"] = loaded if isinstance(loaded, str) else "no open incidents"
            out[f"{prefix}_model_version"] = None
            out[f"{prefix}_model_sha256"] = None
            continue
        model, info = loaded
        block = scorer(model, info, rows)
        out = pd.concat([out.reset_index(drop=True), block.reset_index(drop=True)], axis=1)
        out[f"{prefix}_status"] = "ok"
        out[f"{prefix}_model_version"] = str(info["version"])
        out[f"{prefix}_model_sha256"] = info.get("model_sha256")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.incidents.scoring", description=__doc__.splitlines()[0])
    ap.add_argument("--silver", default="data/silver", help="silver directory with incidents.parquet")
    ap.add_argument("--out", default="data/scores/open_incidents.parquet")
    ap.add_argument("--summary", default=None, help="optional JSON summary (counts, versions)")
    args = ap.parse_args(argv)
    path = Path(args.silver) / "incidents.parquet"
    if not path.exists():
        print(f"{path} is missing: run `make data` first", file=sys.stderr)
        return 2
    scores = score_open(pd.read_parquet(path), load_champions())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    scores.to_parquet(tmp, index=False)
    tmp.replace(out)
    summary = {
        "open_incidents": int(len(scores)),
        "models": {
            prefix: {
                "status": str(scores[f"{prefix}_status"].iloc[0]) if len(scores) else "no open incidents",
                "version": scores[f"{prefix}_model_version"].iloc[0] if len(scores) else None,
            }
            for prefix, _ in SCORERS.values()
        },
    }
    if "breach_flag" in scores:
        summary["flagged_breach"] = int(np.sum(scores["breach_flag"].fillna(False).astype(bool)))
    print(json.dumps(summary))
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
