# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · NLP triage: assignment group and category, or "not sure"
#
# Which team should take this ticket, and what kind of problem is it? The model reads what is known
# **when the ticket is opened**: the short description (weighted up), the description, and how the ticket
# came in (channel, site, impact, urgency, priority). Not the targets, and not the configuration item,
# which callers rarely fill in (the next notebook predicts it). One scikit-learn object goes from raw fields
# to an answer (`ml.incidents.abstain.PrecisionTargetClassifier`: `ml.incidents.text.IncidentTextFeatures`
# → word and character TF-IDF + one-hot metadata → multinomial logistic regression, one head per target).
#
# Like ServiceNow Predictive Intelligence, it **answers only when it is confident enough**: each class
# has its own confidence threshold, the lowest at which that class's answers were at least
# `target_precision` (0.8) right on the **latest 20% of the training period**. Below it the model abstains
# and says why; the ticket then goes to the service desk's manual queue, as today. A class that never gets
# there always abstains. After the thresholds are chosen the model is refitted on all training tickets
# (it then knows the newest systems and groups; the holdout checks that the thresholds still hold).
#
# **How it is judged.** Time-ordered split: train on the past, test on the most recent `test_fraction` of
# the year (open tickets included: their group is known at open time). Per target: accuracy and macro-F1
# of the best guess, top-3 accuracy, **coverage** (share answered) and **accuracy when covered** (the
# precision users see), and the automation rate (answered and right). Per class: precision, recall,
# coverage, the threshold. Baselines in the same table: the majority class and a keyword rule (each word
# of the short description votes for its most frequent group; the purest word wins). The second half
# shows **similar-incident search** (`incident-similar`), and the last section the real ServiceNow log.

# %% tags=["parameters"]
PARAMS_FILE = "params.yaml"
SMOKE = False

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from ml import plots, registry
from ml.config import load_params, resolve
from ml.incidents import charts, datasets, evaluate, similar, triage
from ml.incidents.targets import sort_by_time, time_split
from ml.monitoring import reference
from ml.reports.notebooks import last_real_results, write_record

params = load_params(PARAMS_FILE)
cfg = params["triage"]
CHARTS = resolve(cfg["charts"])
DATA = params["eda"]["data_name"]
if SMOKE:
    cfg = {**cfg, "char_max_features": cfg["smoke_char_max_features"]}
plots.use_style()
pd.set_option("display.width", 180, "display.max_columns", 30, "display.precision", 3,
              "display.max_colwidth", 70)

incidents = sort_by_time(pd.read_parquet(resolve(params["features"]["silver"]) / "incidents.parquet"))
incidents = incidents.head(cfg["smoke_incidents"]).reset_index(drop=True) if SMOKE else incidents
train, test = time_split(incidents, cfg["test_fraction"], closed_only=cfg["closed_only"])
display(pd.DataFrame({
    "incidents": [len(train), len(test)],
    "from": [train["opened_at"].min(), test["opened_at"].min()],
    "to": [train["opened_at"].max(), test["opened_at"].max()],
    "groups": [train["assignment_group"].nunique(), test["assignment_group"].nunique()],
    "categories": [train["category"].nunique(), test["category"].nunique()],
}, index=["train", "test"]))

# %% [markdown]
# ## The model against the baselines, same holdout

# %%
report = triage.compare_triage(train, test, cfg)
model = report.model
display(report.table)
print(f"fit: {report.fit_seconds:.1f} s on {len(train):,} tickets (features, two heads, calibration model + refit)")

# %% [markdown]
# `accuracy`, `macro_f1` and `top3_accuracy` score the best guess on every ticket (the model never
# abstaining); `coverage` and `accuracy_when_covered` score what it actually answers. The baselines always
# answer, so their coverage is 1. Misrouting in the history (about 9% of tickets went to a wrong group
# first) caps what any model can reach on `assignment_group`.

# %% [markdown]
# ## Per class: does every answered class reach the target?

# %%
for target, table in report.per_class.items():
    display(Markdown(f"**{target}**"))
    display(table)
fig = charts.plot_per_class(report.per_class, cfg["target_precision"], DATA)
saved = [plots.save(fig, CHARTS, "per_class")]

# %% [markdown]
# `precision` counts only the answers the model gave; `coverage` is the share of the class's tickets that
# got an answer (right or wrong); `threshold` is the confidence the class needs (`inf`: it always
# abstains); `calibration_precision` is what the threshold achieved on the calibration slice. A class that
# first appeared after the calibration slice began (a system rolled out late in the training period)
# has no threshold yet: the refitted model often knows it (`top1_recall`), but there is no evidence of how
# precise it is, so it abstains until the next retrain.

# %% [markdown]
# ## Answering fewer tickets, more of them right

# %%
answers = model.predict_frame(test)
frames = {t: triage.head_frame(model, answers, t) for t in report.per_class}
curves = {t: triage.risk_coverage(test[t], frames[t]) for t in frames}
operating = {t: (report.metrics[f"{t}_coverage"], report.metrics[f"{t}_accuracy_when_covered"]) for t in frames}
base = {f"{t} {name}": (1.0, report.metrics[f"{t}_baseline_{name}_accuracy"])
        for t in frames for name in ("majority", "keyword_rule")}
fig = charts.plot_risk_coverage(curves, operating, base, cfg["target_precision"], DATA)
saved.append(plots.save(fig, CHARTS, "accuracy_vs_coverage"))
fig = charts.plot_confusion(test["assignment_group"], frames["assignment_group"], "assignment_group", DATA,
                            model.abstain_label)
saved.append(plots.save(fig, CHARTS, "confusion_assignment_group"))

# %% [markdown]
# The curve ranks holdout tickets by the model's confidence: the left end is the few it is surest of.
# The dot is where the per-class thresholds land. In the confusion chart each row is a true group; the
# last column is the share of its tickets the model left to a human.

# %% [markdown]
# ## What a user sees: answers, doubts and the reason

# %%
shown = ["short_description", "assignment_group", "assignment_group_prediction", "assignment_group_confidence",
         "assignment_group_reason", "category_prediction", "assignment_group_top_labels"]
examples = test.join(answers)
picked = pd.concat([examples[~examples["assignment_group_abstain"]].head(4),
                    examples[examples["assignment_group_abstain"]].head(4)])
display(picked[shown])
display(model.thresholds_table("assignment_group"))

# %% [markdown]
# ## Similar incidents: what was done last time
#
# `ml.incidents.similar.SimilarIncidents` indexes resolved incidents with the same text features (word
# TF-IDF, short description weighted up) and returns the nearest ones by cosine similarity, with their
# group, category, system, hours to resolve and resolution time. **Honest evaluation:** every resolved
# incident of the year is indexed, and each holdout ticket may only see neighbours **resolved before it
# was opened**, i.e. what the desk could have looked at that moment. Scores: is the nearest neighbour's
# group the ticket's group, and the similarity-weighted vote of the `k` nearest. This index is registered
# on its own as `incident-similar` (it is rebuilt as incidents resolve, independently of the classifier).

# %%
sim_metrics, index = similar.compare_similar(train, test, cfg["similar"])
display(pd.Series(sim_metrics, name="similar-incident search").to_frame())
queries = test[test["short_description"].str.len() > 20].head(2)
display(queries[["number", "opened_at", "short_description", "assignment_group"]])
display(index.query(queries, k=3, resolved_before="opened_at").drop(columns=["query_number"]))
votes = index.vote(test, "assignment_group", resolved_before="opened_at")
saved.append(plots.save(charts.plot_similarity(votes, test["assignment_group"], "assignment_group", DATA), CHARTS,
                        "similarity"))

# %% [markdown]
# The vote of the nearest past incidents is a strong router on its own; the classifier adds per-class
# thresholds and an explicit "not sure". Tickets whose nearest neighbour is very similar (right end of the
# chart) are near duplicates: often a recurring problem, where the last resolution is the best hint.

# %% [markdown]
# ## Real data: the ServiceNow event log sample (when `../shared/data` is present)
#
# The UCI log has **no free text** and almost no configuration items, so the same class runs without the
# text block (`use_text: false`): category, subcategory, location, channel, impact, urgency and priority →
# the group the ticket was first routed to. The rule baseline is the most frequent group per subcategory
# (then per category). The sample is 3,000 incidents over nine days of one regime: the numbers show that
# the code runs on real data, not what it would reach on the full log.

# %%
uci = datasets.real_sample()
uci_report = None
if uci is not None:
    uci_cfg = {**cfg, **cfg["real"]}
    uci_train, uci_test = time_split(uci, uci_cfg["test_fraction"], closed_only=cfg["closed_only"])
    uci_report = triage.compare_triage(uci_train, uci_test, uci_cfg)
    display(uci_report.table)
    display(Markdown(evaluate.table_losses(uci_report.table.loc["assignment_group"], "accuracy", True,
                                           "the UCI sample (assignment group)")))
    display(uci_report.per_class["assignment_group"].sort_values("support", ascending=False).head(12))
else:
    display(Markdown("`../shared/data` is not here (a fresh clone): UCI sample not recomputed; the results "
                     "last recorded with it follow."))
    display(last_real_results(resolve(cfg["metrics"])))

# %% [markdown]
# ## The whole real log: `metrics/uci_full.json` (initial assignment group)
#
# `python -m ml.incidents evaluate` on all 24,918 incidents of the UCI log (`make bench` refreshes the file):
# split by incident count (the earliest 80% by opening time train, the latest 20% test), incidents still open
# at the end of the data scored as censored. `model` is gradient boosting with native categoricals plus
# causal history and routing features (`ml.incidents.history`: only what was known before a ticket
# opened), blended with a sparse logistic model on field crosses and the routing prior, then a second stage
# that re-ranks each ticket's ten best groups (`ml.incidents.rerank`, fitted on the latest 20% of training
# with a first stage fitted on the rest); `hgb` is the same trees on the plain open-time fields, `registered`
# the setup this notebook registers. Headline: top-1 and top-3 accuracy of the group at the first event (initial routing, not the resolving team). The sentence under the table is generated from the file.

# %%
whole = evaluate.load_result(resolve("metrics/uci_full.json"))
if whole is not None:
    display(evaluate.section_table(whole, "group"))
    display(Markdown(evaluate.losses_sentence(whole, "group") + " " + evaluate.second_stage_sentence(whole)))
else:
    display(Markdown("`metrics/uci_full.json` is not here: run `make bench` with `../shared/data` present."))

# %% [markdown]
# ## Register the models (gates decide `champion`)
#
# `incident-triage` is the classifier above (both heads, thresholds included), `incident-similar` the
# index. Each run logs params, metrics, charts, the git commit and the DVC hash of the input data; the
# models are saved with skops (a safe format) and their sha256 is recorded. A model becomes `champion`
# only if it passes every gate in `params.yaml` (precision when answering, coverage, beating the best
# baseline, no worse than the current champion); otherwise it stays `challenger`.
#
# A seeded sample of the training records (`monitoring.reference_rows`) is saved inside the model as its
# drift reference: `/check_drift` and the monitoring compare new batches with exactly what it learned from.

# %%
metrics = {k: float(v) for k, v in report.metrics.items()}
if uci_report is not None:
    metrics |= {f"uci_{k}": float(v) for k, v in uci_report.metrics.items()}
reg = registry.log_and_register(
    "incident-triage", model, params={"triage": cfg}, metrics=metrics, gates=registry.gates_from_params(cfg["gates"]),
    input_example=test[model.input_columns()].head(5), charts=saved,
    data_paths=[params["features"]["silver"]], comparison_path=CHARTS / "comparison.md",
    training_data=registry.describe_training(train, "opened_at"),
    reference=reference.training_reference(train, "incidents", params["monitoring"]))
sim_reg = registry.log_and_register(
    "incident-similar", index, params={"similar": cfg["similar"]}, metrics=sim_metrics,
    gates=registry.gates_from_params(cfg["similar_gates"]), input_example=test[index.input_columns()].head(3),
    charts=[CHARTS / "similarity.png"], data_paths=[params["features"]["silver"]],
    comparison_path=CHARTS / "comparison_similar.md",
    training_data=registry.describe_training(incidents[incidents["resolved_at"].notna()], "opened_at"),
    reference=reference.training_reference(incidents[incidents["resolved_at"].notna()], "incidents",
                                           params["monitoring"]))
display(pd.DataFrame({"incident-triage": reg.to_dict(), "incident-similar": sim_reg.to_dict()}))

# %% tags=["opslab-record"]
record = {
    "data": DATA,
    "smoke": SMOKE,
    "synthetic": {f"{t}|{m}": row for (t, m), row in report.table.to_dict(orient="index").items()},
    "per_class": {t: table.to_dict(orient="index") for t, table in report.per_class.items()},
    "fit_seconds": report.fit_seconds,
    "similar": sim_metrics,
    "registry": {"version": reg.version, "alias": reg.alias, "promoted": reg.promoted, "gates": reg.gates},
    "model_sha256": reg.model_sha256,
    "similar_registry": {"version": sim_reg.version, "alias": sim_reg.alias, "promoted": sim_reg.promoted,
                         "gates": sim_reg.gates, "model_sha256": sim_reg.model_sha256},
    "charts": sorted(Path(p).name for p in saved),
}
real_record = {
    "uci_sample": {f"{t}|{m}": row for (t, m), row in uci_report.table.to_dict(orient="index").items()},
    "uci_fit_seconds": uci_report.fit_seconds,
} if uci_report is not None else {}
record = write_record(resolve(cfg["metrics"]), record, real=real_record)
