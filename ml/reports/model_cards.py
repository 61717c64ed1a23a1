"""Model cards and a run comparison page, generated from the MLflow registry and tracking store.

For every registered model, `docs/ml/model_cards/<name>.md` and `.json` describe the `champion` version
(or the latest version when no version passed its gates): intended use and limits, the training data
(rows, time span, DVC hash), params, metrics next to baselines and gates, the version, alias,
`model_sha256`, git commit, known failure cases and how to roll back. Everything except the intended-use
prose comes from the run itself. `docs/ml/runs.md` compares the latest runs of each model: metrics and the
params that differ between them.

    python -m ml.reports.model_cards --out docs/ml/model_cards --runs docs/ml/runs.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow

from ml import registry
from ml.config import ROOT
from ml.incidents import evaluate

# What each model is for, what it is not for, and where it is known to be weak (from the notebooks).
INTENT: dict[str, dict[str, Any]] = {
    "sensor-anomaly": {
        "title": "Sensor anomaly detector (Isolation Forest)",
        "notebook": "02_anomaly_isolation_forest",
        "intended_use": "Flag unusual readings of infrastructure sensors (temperature, CPU, request rate, "
        "latency) for an operator to look at, with the feature that deviates most.",
        "not_for": "Automatic remediation; sensors of kinds it was not trained on; data with a different "
        "sampling step than training without refitting.",
        "failure_cases": [
            "False alarms cluster on request-rate sensors at their daily peaks, where noise grows with level.",
            "A sensor recalibration (a deliberate level change) is flagged as anomalous until refitted.",
            "Slow drifts are detected late: they start smaller than the noise.",
        ],  # + the real-data results, generated from metrics by `anomaly_result_sentences`
        "primary": ["event_f1", "event_precision", "event_recall"],
    },
    "sensor-forecast": {
        "title": "Sensor forecaster (seasonal naive / ETS / Prophet per sensor)",
        "notebook": "03_forecast",
        "intended_use": "Hourly forecasts up to a week ahead with 80/95% intervals, for capacity planning.",
        "not_for": "Sensors not in the training set; horizons beyond `max_horizon`.",
        "failure_cases": [
            "Intervals are too narrow right after a level shift or recalibration (the fit lags).",
            "Labelled anomaly windows are masked in training: a new anomaly is not forecast.",
        ],
        "primary": ["holdout_share_mase_lt1", "holdout_mape_temperature", "holdout_cov80_error_pts"],
    },
    "incident-sla": {
        "title": "SLA-breach risk at open time",
        "notebook": "04_sla_breach",
        "intended_use": "Rank newly opened incidents by the calibrated probability that they will miss "
        "their SLA, and flag those above the cost-derived threshold for early attention.",
        "not_for": "Judging individual engineers or groups; tickets of systems or groups absent from training.",
        "failure_cases": [
            "Tickets that will wait on a vendor, part or user without saying so in the text look low-risk.",
            "Right after a rollout (new system, new group) the group load and routing features are unseen.",
            "Probabilities are calibrated on the latest slice of training: a long gap before use can shift them.",
        ],
        "primary": ["roc_auc", "pr_auc", "brier", "ece"],
    },
    "incident-ttr": {
        "title": "Time to resolve with P10/P50/P90",
        "notebook": "05_time_to_resolve",
        "intended_use": "Expected hours to resolution with an 80% interval, for queue planning and for "
        "telling callers a realistic time.",
        "not_for": "A promise per ticket: one in five tickets falls outside the P10-P90 band by design.",
        "failure_cases": [
            "Very long waits (months) are under-predicted: the tail is heavier than any open-time signal.",
            "Coverage is guaranteed on average, not per priority (see the by-priority chart).",
        ],
        "primary": ["mae_p50_hours", "median_ae_p50_hours", "coverage", "pinball_p50_log1p"],
    },
    "incident-clusters": {
        "title": "Recurring-problem clusters",
        "notebook": "06_clustering",
        "intended_use": "Group incidents by what they are about, to spot recurring problems and bursts.",
        "not_for": "Routing decisions; a cluster is a topic, not a root cause.",
        "failure_cases": [
            "Root causes that share vocabulary with ordinary tickets of the same system merge with them.",
            "Vague tickets ('not working, please help') form their own cluster regardless of cause.",
        ],
        "primary": ["silhouette", "recurring_f1", "purity"],
    },
    "incident-triage": {
        "title": "NLP triage: assignment group and category",
        "notebook": "07_triage",
        "intended_use": "Suggest the assignment group and category of a new ticket from its text, only "
        "when confident enough for the target precision; otherwise abstain and say why.",
        "not_for": "Fully automatic routing of classes whose threshold could not reach the target.",
        "failure_cases": [
            "Vague tickets abstain (by design) or are routed to the service desk.",
            "Groups seen rarely in training never reach the precision target and always abstain.",
            "A group or category that first appears after the calibration slice starts (e.g. a new system's "
            "team) always abstains until the next retrain covers it.",
            "About 9% of historical tickets were routed to the wrong group: even confident answers inherit it.",
        ],
        "primary": [
            "assignment_group_accuracy_when_covered",
            "assignment_group_coverage",
            "category_accuracy_when_covered",
            "category_coverage",
        ],
    },
    "incident-similar": {
        "title": "Similar-incident search",
        "notebook": "07_triage",
        "intended_use": "Show the most similar resolved incidents of a new ticket, with their group and "
        "resolution time, so an engineer can reuse a known fix.",
        "not_for": "Deciding a ticket's group on its own (see incident-triage).",
        "failure_cases": ["Vague tickets match other vague tickets, whatever the cause."],
        "primary": [],
    },
    "incident-system-team": {
        "title": "Impacted system and owning team",
        "notebook": "08_system_team",
        "intended_use": "Suggest the impacted configuration item and its owning team from ticket text.",
        "not_for": "Systems introduced after the calibration slice: they abstain until a retrain covers them.",
        "failure_cases": [
            "Tickets mentioning several systems go to the one the words point to most, not always the broken one.",
            "A new system (the HR-portal rollout) always abstains until it falls inside the calibration slice.",
        ],
        "primary": ["cmdb_ci_accuracy_when_covered", "cmdb_ci_coverage", "owning_team_accuracy_when_covered"],
    },
    "archive-forecast": {
        "title": "Archive volume and storage-savings forecast (gradient boosting over the seasonal naive)",
        "notebook": "10_archive_forecast",
        "intended_use": "Plan archive capacity: GB each source will archive and GB archiving will save over the "
        "next week and the next 30 days, with 80% intervals, from at least 92 days of its daily history.",
        "not_for": "Sources with less history than the longest feature window; horizons other than the trained "
        "ones; billing (the intervals are 80%, so one period in five falls outside).",
        "failure_cases": [
            "A policy change (shorter retention, a migration) is seen only after it happens: the first weeks "
            "after it are under-forecast, and the backlog surge is larger than any interval.",
            "Savings assume the file-type ratios of training: a new kind of content (e.g. encrypted files) "
            "saves less than forecast.",
            "Intervals are conformal on pooled residuals: wider than needed for steady sources, narrower for lumpy ones.",
        ],
        "primary": [
            "holdout_mae_margin_vs_seasonal_naive_min",
            "holdout_mae_margin_vs_linear_min",
            "holdout_cov80_error_pts_max",
        ],
    },
}


def _gates_text(client, run_id: str) -> list[str]:

    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/gates.txt")
    except Exception:  # noqa: BLE001 - an old run without the artifact
        return []
    return [line for line in text.splitlines() if line.strip()]


def _card_version(client, name: str):
    """The champion version, else the newest version (with the alias it has)."""
    try:
        return client.get_model_version_by_alias(name, registry.CHAMPION), registry.CHAMPION
    except Exception:  # noqa: BLE001 - no champion yet
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            return None, None
        mv = max(versions, key=lambda v: int(v.version))
        return mv, (registry.CHALLENGER if registry.CHALLENGER in (mv.aliases or []) else "none")


def anomaly_result_sentences(metrics_dir: Path | None = None) -> list[str]:
    """Card sentences stating the anomaly detector's real-data results, read from the metrics files
    (`metrics/real/anomaly.json`: the NAB sample; `metrics/nab.json`: NAB's score on the whole corpus)."""
    metrics_dir = Path(metrics_dir or ROOT / "metrics")
    out = []
    sample = metrics_dir / "real" / "anomaly.json"
    if sample.exists():
        rows = json.loads(sample.read_text()).get("nab_sample", {})
        by_file: dict[str, dict[str, float]] = {}
        for key, m in rows.items():
            file, detector = key.split("|", 1)
            by_file.setdefault(file, {})[detector] = m["event_f1"]
        losses = sum(
            1
            for f1 in by_file.values()
            if "isolation_forest" in f1
            and f1["isolation_forest"]
            < max((v for k, v in f1.items() if k != "isolation_forest"), default=0.0)
        )
        if by_file:
            out.append(
                f"On the real NAB sample its event F1 is below a simple baseline's on {losses} of "
                f"{len(by_file)} files (per-file thresholds at the same false-alarm budget)."
            )
    nab = metrics_dir / "nab.json"
    if nab.exists():
        m = json.loads(nab.read_text())
        published = ", ".join(f"{k} {v['standard']:.1f}" for k, v in m.get("published", {}).items())
        cats = {k: v for k, v in m.get("categories", {}).items() if v is not None}
        worst = min(cats, key=cats.get) if cats else None
        out.append(
            f"NAB's own score on the whole corpus ({m['files']} files, one threshold): standard "
            f"{m['standard']:.1f}, reward-low-FP {m['reward_low_FP_rate']:.1f}, reward-low-FN "
            f"{m['reward_low_FN_rate']:.1f}"
            + (f" (published: {published})" if published else "")
            + (f"; weakest category {worst} ({cats[worst]:.1f})." if worst else ".")
        )
    return out


def incident_result_sentences(section: str, metrics_dir: Path | None = None) -> list[str]:
    """Card sentences with the whole real UCI log's results (`metrics/uci_full.json`, written by
    `python -m ml.incidents evaluate`): the model beside its plain-HGB baseline, and where it loses."""
    result = evaluate.load_result(Path(metrics_dir or ROOT / "metrics") / "uci_full.json")
    if result is None or section not in result:
        return []
    key, _ = evaluate.HEADLINES[section]
    rows = result[section]
    shown = ", ".join(f"{n} {r[key]:.3f}" for n, r in rows.items() if r.get(key) is not None)
    stage = evaluate.second_stage_sentence(result) if section == "group" else ""
    return [
        f"Real log {Path(str(result['event_log'])).name} ({result['incidents']} incidents, split by "
        f"{result['split']['by']} at {result['split']['cutoff']}), {key}: {shown}. The evaluated `model` adds "
        "causal history features to this card's inputs (`python -m ml.incidents evaluate`).",
        evaluate.losses_sentence(result, section),
        *([stage] if stage else []),
    ]


RESULT_SENTENCES = {
    "sensor-anomaly": anomaly_result_sentences,
    "incident-sla": lambda: incident_result_sentences("sla"),
    "incident-ttr": lambda: incident_result_sentences("ttr"),
    "incident-triage": lambda: incident_result_sentences("group"),
}


def model_card(name: str, client=None) -> dict[str, Any] | None:
    """The card of one registered model as a dict (None when it has no version)."""
    client = client or registry.client()
    mv, alias = _card_version(client, name)
    if mv is None:
        return None
    run = client.get_run(mv.run_id)
    tags, metrics, params = run.data.tags, dict(run.data.metrics), dict(run.data.params)
    intent = INTENT.get(name, {})
    history = json.loads(client.get_registered_model(name).tags.get(registry.HISTORY_TAG, "[]"))
    previous = [v for v in history if v != str(mv.version)]
    primary = [k for k in intent.get("primary", []) if k in metrics]
    baselines = {
        k: v for k, v in sorted(metrics.items()) if any(b in k for b in ("baseline", "logistic", "majority"))
    }
    return {
        "name": name,
        "title": intent.get("title", name),
        "version": str(mv.version),
        "alias": alias,
        "model_sha256": mv.tags.get("model_sha256") or tags.get("model_sha256"),
        "git_commit": tags.get("git_commit"),
        "run_id": mv.run_id,
        "registered_at": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
            timespec="seconds"
        ),
        "gates": _gates_text(client, mv.run_id),
        "gates_passed": mv.tags.get("gates") == "passed",
        "intended_use": intent.get("intended_use", ""),
        "not_for": intent.get("not_for", ""),
        "known_failure_cases": [*intent.get("failure_cases", []), *RESULT_SENTENCES.get(name, list)()],
        "notebook": intent.get("notebook"),
        "training_data": {
            **{k.split(".", 1)[1]: v for k, v in tags.items() if k.startswith("training.")},
            **{k: v for k, v in tags.items() if k.startswith("data.") and k.endswith(".dvc_hash")},
        },
        "primary_metrics": {k: metrics[k] for k in primary},
        "baseline_metrics": baselines,
        "metrics": dict(sorted(metrics.items())),
        "params": dict(sorted(params.items())),
        "champion_history": history,
        "rollback": {
            "to_previous_champion": f"make rollback MODEL={name}",
            "to_a_version": f"make promote MODEL={name} VERSION=<n>",
            "previous_champions": previous,
            "service_override": f"OPSLAB_MODEL_URI_{name.upper().replace('-', '_')}=models:/{name}/<n>",
        },
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def md_code(v: Any) -> str:
    """A value (an MLflow param or tag: anyone who can log a run writes it) as an inline code span that
    stays one code span: a fence longer than any backtick run inside, pipes escaped for table cells."""
    text = str(v).replace("\n", " ").replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def card_markdown(card: Mapping[str, Any]) -> str:
    """The card as markdown for humans (the JSON twin has the same content)."""
    t = card["training_data"]
    lines = [
        f"# Model card: {card['title']} (`{card['name']}`)",
        "",
        "_Generated from the MLflow run by `python -m ml.reports.model_cards`; do not edit by hand._",
        "",
        "| | |",
        "|---|---|",
        f"| version | {card['version']} (alias `{card['alias']}`) |",
        f"| model_sha256 | `{card['model_sha256']}` |",
        f"| git commit | `{card['git_commit']}` |",
        f"| registered | {card['registered_at']} |",
        f"| MLflow run | `{card['run_id']}` |",
        f"| gates | {'passed' if card['gates_passed'] else 'FAILED (not champion)'} |",
    ]
    if card.get("notebook"):
        lines.append(f"| notebook | [{card['notebook']}](../html/{card['notebook']}.html) |")
    lines += [
        "",
        "## Intended use",
        "",
        card["intended_use"] or "-",
        "",
        "**Not for:** " + (card["not_for"] or "-"),
    ]
    lines += ["", "## Training data", ""]
    lines += [f"- {k}: {md_code(v)}" for k, v in t.items()] or ["- (not recorded for this run)"]
    lines += ["", "## Metrics", "", "Headline (holdout, time-ordered):", ""]
    lines += [f"- **{k}**: {_fmt(v)}" for k, v in card["primary_metrics"].items()] or ["- see the full table"]
    if card["baseline_metrics"]:
        lines += ["", "Baselines, same holdout:", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in card["baseline_metrics"].items()]
    lines += ["", "Gates:", ""] + ([f"- {g}" for g in card["gates"]] or ["- (none recorded)"])
    lines += ["", "### All metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {md_code(k)} | {_fmt(v)} |" for k, v in card["metrics"].items()]
    lines += ["", "### Params", "", "| param | value |", "|---|---|"]
    lines += [f"| {md_code(k)} | {md_code(v)} |" for k, v in card["params"].items()]
    lines += ["", "## Known failure cases", ""]
    lines += [f"- {c}" for c in card["known_failure_cases"]] or ["- none recorded"]
    r = card["rollback"]
    lines += [
        "",
        "## Roll back",
        "",
        f"- previous champion: `{r['to_previous_champion']}` (earlier champions: {', '.join(r['previous_champions']) or 'none'})",
        f"- any version: `{r['to_a_version']}`",
        f"- the service only, without touching the registry: `{r['service_override']}` then `POST /models/reload`",
        "",
    ]
    return "\n".join(lines)


def write_cards(out_dir: Path, names: list[str] | None = None) -> list[Path]:
    """Write `<name>.md` and `<name>.json` for every registered model (or `names`)."""
    client = registry.client()
    names = names or sorted(m.name for m in client.search_registered_models())
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        card = model_card(name, client)
        if card is None:
            continue
        (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        md = out_dir / f"{name}.md"
        md.write_text(card_markdown(card))
        written.append(md)
    return written


def runs_comparison(n_runs: int = 3) -> str:
    """Markdown: for each model, its latest runs side by side (metrics) and the params that differ."""
    client = registry.client()
    lines = [
        "# Latest runs per model",
        "",
        "_Generated from the MLflow tracking store by `python -m ml.reports.model_cards`._",
        "",
    ]
    for rm in sorted(client.search_registered_models(), key=lambda m: m.name):
        exp = client.get_experiment_by_name(rm.name)
        if exp is None:
            continue
        runs = client.search_runs(
            [exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=n_runs
        )
        if not runs:
            continue
        heads = [
            f"{r.info.run_id[:8]} ({datetime.fromtimestamp(r.info.start_time / 1000, UTC):%Y-%m-%d %H:%M})"
            for r in runs
        ]
        lines += [f"## {rm.name}", "", "| metric | " + " | ".join(heads) + " |", "|---|" + "---|" * len(runs)]
        keys = sorted({k for r in runs for k in r.data.metrics})
        for k in keys:
            lines.append(
                f"| {md_code(k)} | " + " | ".join(_fmt(r.data.metrics.get(k, "")) for r in runs) + " |"
            )
        diff = sorted(
            k
            for k in {k for r in runs for k in r.data.params}
            if len({r.data.params.get(k) for r in runs}) > 1
        )
        lines += ["", "Params that differ:" if diff else "Params: identical across these runs.", ""]
        if diff:
            lines += ["| param | " + " | ".join(heads) + " |", "|---|" + "---|" * len(runs)]
            lines += [
                f"| {md_code(k)} | " + " | ".join(md_code(r.data.params.get(k, "")) for r in runs) + " |"
                for k in diff
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.reports.model_cards", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/ml/model_cards")
    ap.add_argument("--runs", default="docs/ml/runs.md")
    args = ap.parse_args(argv)
    written = write_cards(ROOT / args.out)
    runs = ROOT / args.runs
    runs.parent.mkdir(parents=True, exist_ok=True)
    runs.write_text(runs_comparison())
    show = lambda p: p.relative_to(ROOT) if p.is_relative_to(ROOT) else p  # noqa: E731
    for p in written:
        print(f"  model card {show(p)}")
    print(f"runs comparison: {show(runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
