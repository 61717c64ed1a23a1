"""NLP triage at open time: raw incident -> assignment group and category, or an explicit "not sure".

`make_triage` builds `incident-triage`: a `PrecisionTargetClassifier` (`ml.incidents.abstain`: per-class
thresholds for `target_precision`, abstaining below them) over the ticket text and how it came in, with
the targets assignment_group and category; `ml.incidents.system_team` builds `incident-system-team` with
the same class. `compare_triage` scores a model against a majority-class and a simple rule baseline on one
time-ordered holdout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits

from ml import config
from ml.features import clean_column
from ml.incidents.abstain import PrecisionTargetClassifier
from ml.incidents.text import make_text_features

TRIAGE_TARGETS = ("assignment_group", "category")


# --- the incident-triage model ------------------------------------------------------------------------------
def make_classifier(p: Mapping[str, Any], *, use_text: bool | None = None, categorical_columns=None):
    """An unfitted `PrecisionTargetClassifier` over `IncidentTextFeatures` from a whole params section
    (`triage` or `system_team`, as `config.section` returns it).

    With text the metadata is `categorical_columns` (default contact_type, location, impact, urgency,
    priority); without text (`use_text=False`) it is `no_text_columns`.
    """
    text = p["use_text"] if use_text is None else use_text
    cols = categorical_columns
    if cols is None:
        cols = p["categorical_columns"] if text else p["no_text_columns"]
    feats = make_text_features(p, use_text=bool(text), categorical_columns=tuple(cols))
    clf = LogisticRegression(
        C=p["C"], max_iter=p["max_iter"], class_weight=p["class_weight"], random_state=p["seed"]
    )
    return PrecisionTargetClassifier(
        features=feats,
        classifier=clf,
        target_precision=p["target_precision"],
        calibration_fraction=p["calibration_fraction"],
        min_calibration_predictions=p["min_calibration_predictions"],
        refit=p["refit"],
        top_k=p["top_k"],
    )


def make_triage(params: Mapping[str, Any] | None = None) -> PrecisionTargetClassifier:
    """`incident-triage`: assignment_group and category from the ticket text and how it came in.

    Inputs: short_description, description, contact_type, location, impact, urgency, priority. Not the
    targets, and not cmdb_ci: the impacted system is what `incident-system-team` predicts because
    callers rarely fill it (the real UCI log has it for 0.2% of tickets); a router that needs it would
    fail exactly on the tickets that need routing. Without text the inputs are `no_text_columns` minus
    the targets.
    """
    p = config.section("triage", params)
    cols = None if p["use_text"] else [c for c in p["no_text_columns"] if c not in p["targets"]]
    return make_classifier(p, categorical_columns=cols)


def targets_frame(incidents: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    """The target columns as a DataFrame (missing stays missing); errors name a missing column."""
    missing = [t for t in targets if t not in incidents.columns]
    if missing:
        raise ValueError(f"incident records lack target column(s) {missing}")
    return incidents[list(targets)]


def fit_model(
    model: PrecisionTargetClassifier, train: pd.DataFrame, targets: Sequence[str], n_threads: int = 1
):
    """Fit a classifier on training incidents (rows with every target missing are dropped)."""
    Y = targets_frame(train, targets)
    keep = Y.notna().any(axis=1)
    with threadpool_limits(n_threads):
        return model.fit(train[keep], Y[keep])


def fit_triage(train: pd.DataFrame, params: Mapping[str, Any] | None = None) -> PrecisionTargetClassifier:
    """Fit `incident-triage` on training incidents."""
    p = config.section("triage", params)
    return fit_model(make_triage(p), train, p["targets"], p["n_threads"])


# --- baselines ----------------------------------------------------------------------------------------------
class MajorityBaseline:
    """Always the most frequent training label; its ranking is the training label frequency."""

    def fit(self, X, y):
        counts = pd.Series(y).dropna().astype(str).value_counts()
        self.ranking_ = list(counts.index)
        return self

    def ranked(self, X, k: int = 3) -> list[list[str]]:
        return [self.ranking_[:k]] * len(X)


class LookupRuleBaseline:
    """The rule a service desk writes first: the most frequent label per value of the first key column
    present (e.g. subcategory, then category), else the overall majority."""

    def __init__(self, keys: Sequence[str] = ("subcategory", "category"), min_count: int = 5):
        self.keys, self.min_count = tuple(keys), min_count

    def fit(self, X: pd.DataFrame, y):
        y = pd.Series(np.asarray(y, dtype=object), index=X.index)
        known = y.notna()
        self.tables_ = {}
        for key in self.keys:
            pairs = pd.DataFrame({"k": X.loc[known, key].astype(object), "y": y[known].astype(str)}).dropna()
            counts = pairs.groupby(["k", "y"]).size().rename("n").reset_index()
            counts = counts[counts.groupby("k")["n"].transform("sum") >= self.min_count]
            counts = counts.sort_values(["k", "n", "y"], ascending=[True, False, True])
            self.tables_[key] = counts.groupby("k")["y"].agg(list).to_dict()
        self.majority_ = MajorityBaseline().fit(None, y[known])
        return self

    def ranked(self, X: pd.DataFrame, k: int = 3) -> list[list[str]]:
        out = []
        fallback = self.majority_.ranking_
        for _, row in X[list(self.keys)].iterrows():
            ranking = next(
                (self.tables_[key][row[key]] for key in self.keys if row[key] in self.tables_[key]), []
            )
            out.append(list(dict.fromkeys([*ranking, *fallback]))[:k])
        return out


class KeywordRuleBaseline:
    """A keyword lookup: each word of the cleaned short description seen at least `min_count` times votes
    for its most frequent label; the purest word present wins (ties: the more frequent word); else majority."""

    def __init__(self, min_count: int = 5):
        self.min_count = min_count

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y, dtype=object)
        words = [set(t.split()) for t in clean_column(X["short_description"].tolist())]
        rows = [(w, str(label)) for ws, label in zip(words, y, strict=True) if label is not None for w in ws]
        counts = pd.DataFrame(rows, columns=["w", "y"]).groupby(["w", "y"]).size().rename("n").reset_index()
        total = counts.groupby("w")["n"].transform("sum")
        counts = counts.assign(total=total, purity=counts["n"] / total)
        counts = counts[counts["total"] >= self.min_count]
        counts = counts.sort_values(["w", "n", "y"], ascending=[True, False, True])
        self.rules_ = {
            w: (float(g["purity"].iloc[0]), int(g["total"].iloc[0]), list(g["y"]))
            for w, g in counts.groupby("w")
        }
        self.majority_ = MajorityBaseline().fit(None, [v for v in y if v is not None])
        return self

    def ranked(self, X: pd.DataFrame, k: int = 3) -> list[list[str]]:
        out = []
        for text in clean_column(X["short_description"].tolist()):
            hits = [self.rules_[w] for w in set(text.split()) if w in self.rules_]
            ranking = max(hits, key=lambda h: (h[0], h[1]))[2] if hits else []
            out.append(list(dict.fromkeys([*ranking, *self.majority_.ranking_]))[:k])
        return out


# --- evaluation -------------------------------------------------------------------------------------------------
def head_metrics(
    y_true, frame: pd.DataFrame, thresholds: pd.DataFrame | None = None, target_precision: float | None = None
) -> tuple[dict, pd.DataFrame]:
    """Metrics of one head's `predict_frame` (plain column names) against the truth, and the per-class table.

    Overall: accuracy / macro-F1 of the best guess (never abstaining), top-3 accuracy, coverage (share
    answered), accuracy when covered (precision of the answers), automation rate (answered and right).
    Per class (truth or predicted): support, answered (predictions of the class made), precision (of those),
    recall (right answers / support), coverage (share of the class's tickets that got an answer), the
    threshold and the calibration slice's precision when given. With `target_precision`, also how many
    of the answered classes reach it on these rows.
    """
    y = pd.Series(np.asarray(y_true, dtype=object), index=frame.index)
    known = y.notna()
    y, frame = y[known].astype(str), frame[known]
    guess, answered = frame["label"].astype(str), ~frame["abstain"].to_numpy(dtype=bool)
    right = (guess == y).to_numpy()
    in_top = np.array([t in labels for t, labels in zip(y, frame["top_labels"], strict=True)])
    n = len(y)
    metrics = {
        "n": int(n),
        "accuracy": float(right.mean()) if n else float("nan"),
        "macro_f1": float(f1_score(y, guess, average="macro", zero_division=0)) if n else float("nan"),
        "top3_accuracy": float(in_top.mean()) if n else float("nan"),
        "coverage": float(answered.mean()) if n else float("nan"),
        "accuracy_when_covered": float(right[answered].mean()) if answered.any() else float("nan"),
        "automation_rate": float((right & answered).mean()) if n else float("nan"),
    }
    labels = sorted(set(y) | set(guess[answered]))
    rows = []
    for c in labels:
        is_c, said_c = (y == c).to_numpy(), (guess == c).to_numpy() & answered
        rows.append(
            {
                "label": c,
                "support": int(is_c.sum()),
                "answered": int(said_c.sum()),
                "precision": float((said_c & is_c).sum() / said_c.sum()) if said_c.any() else float("nan"),
                "recall": float((said_c & is_c).sum() / is_c.sum()) if is_c.any() else float("nan"),
                "coverage": float(answered[is_c].mean()) if is_c.any() else float("nan"),
                "top1_recall": float(right[is_c].mean()) if is_c.any() else float("nan"),
            }
        )
    table = pd.DataFrame(rows).set_index("label") if rows else pd.DataFrame()
    if thresholds is not None and len(table):
        table = table.join(thresholds[["threshold", "calibration_precision"]], how="left")
    reach = table["precision"].dropna() if len(table) else pd.Series(dtype=float)
    metrics["classes_total"] = int(len(table))
    metrics["classes_answered"] = int(len(reach))
    if target_precision is not None:
        metrics["classes_answered_at_target"] = int(reach.ge(target_precision).sum())
    return metrics, table


def baseline_metrics(y_true, ranked: list[list[str]]) -> dict:
    """Accuracy, macro-F1 and top-3 accuracy of a baseline's ranked labels (it always answers)."""
    y = pd.Series(np.asarray(y_true, dtype=object))
    known = y.notna().to_numpy()
    y = y[known].astype(str).to_numpy()
    ranked = [r for r, k in zip(ranked, known, strict=True) if k]
    first = np.array([r[0] if r else "" for r in ranked], dtype=object)
    right = first == y
    n = len(y)
    return {
        "n": int(n),
        "accuracy": float(right.mean()) if n else float("nan"),
        "macro_f1": float(f1_score(y, first, average="macro", zero_division=0)) if n else float("nan"),
        "top3_accuracy": float(np.mean([t in r[:3] for t, r in zip(y, ranked, strict=True)]))
        if n
        else float("nan"),
        "coverage": 1.0,
        "accuracy_when_covered": float(right.mean()) if n else float("nan"),
        "automation_rate": float(right.mean()) if n else float("nan"),
    }


def head_frame(model: PrecisionTargetClassifier, frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """One head's columns of a `predict_frame` result, with the plain (unprefixed) names."""
    if not model.multi_output_:
        return frame
    prefix = f"{target}_"
    return frame[[c for c in frame.columns if c.startswith(prefix)]].rename(
        columns=lambda c: c[len(prefix) :]
    )


@dataclass
class Comparison:
    """What `compare_*` returns: one row per (target, model), per-class tables, flat metrics, the model."""

    table: pd.DataFrame
    per_class: dict[str, pd.DataFrame]
    metrics: dict[str, float]
    model: PrecisionTargetClassifier
    fit_seconds: float
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)


def compare_models(
    model: PrecisionTargetClassifier,
    train: pd.DataFrame,
    test: pd.DataFrame,
    targets: Sequence[str],
    rule_keys: Sequence[str] | None = None,
    *,
    rule_min_count: int,
    n_threads: int,
) -> Comparison:
    """Fit `model` on train and score it on test next to a majority-class and a rule baseline per target.

    The rule is a keyword lookup on the short description when the data has text, else the most
    frequent label per value of `rule_keys` (first key present wins). Flat metrics are named
    `<target>_<metric>`, baselines `<target>_baseline_<name>_<metric>`, and
    `<target>_accuracy_margin_vs_best_baseline` compares the model's best-guess accuracy with the best
    baseline's.
    """
    start = time.perf_counter()
    fit_model(model, train, targets, n_threads)
    seconds = time.perf_counter() - start
    with threadpool_limits(n_threads):
        frame = model.predict_frame(test)
    has_text = "short_description" in train and train["short_description"].notna().any()
    rows, per_class, flat, baselines = [], {}, {"fit_seconds": seconds}, {}
    for target in targets:
        y_train, y_test = train[target].to_numpy(dtype=object), test[target].to_numpy(dtype=object)
        m, table = head_metrics(
            y_test, head_frame(model, frame, target), model.thresholds_table(target), model.target_precision
        )
        per_class[target] = table
        rows.append({"target": target, "model": "model", **m})
        base = {"majority": MajorityBaseline().fit(train, y_train)}
        keys = [k for k in (rule_keys or ()) if k != target and k in train.columns]
        if has_text:
            base["keyword_rule"] = KeywordRuleBaseline(rule_min_count).fit(train, _nones(y_train))
        elif keys:
            base["lookup_rule"] = LookupRuleBaseline(keys, rule_min_count).fit(train, _nones(y_train))
        for name, b in base.items():
            bm = baseline_metrics(y_test, b.ranked(test, 3))
            rows.append({"target": target, "model": name, **bm})
            baselines[f"{target}/{name}"] = bm
            flat |= {f"{target}_baseline_{name}_{k}": v for k, v in bm.items() if k != "n"}
        flat |= {f"{target}_{k}": v for k, v in m.items()}
        best = max(baselines[f"{target}/{name}"]["accuracy"] for name in base)
        flat[f"{target}_accuracy_margin_vs_best_baseline"] = m["accuracy"] - best
    table = pd.DataFrame(rows).set_index(["target", "model"])
    return Comparison(table, per_class, flat, model, seconds, baselines)


def _nones(values: np.ndarray) -> np.ndarray:
    return np.array([None if (v is None or v != v) else v for v in values], dtype=object)


def compare_triage(
    train: pd.DataFrame, test: pd.DataFrame, params: Mapping[str, Any] | None = None
) -> Comparison:
    """`incident-triage` against majority and rule baselines on one time-ordered holdout.

    With text the rule is the keyword lookup; without text (UCI) it is the most frequent group per
    subcategory, then per category.
    """
    p = config.section("triage", params)
    return compare_models(
        make_triage(p),
        train,
        test,
        p["targets"],
        ("subcategory", "category"),
        rule_min_count=p["rule_min_count"],
        n_threads=p["n_threads"],
    )


def risk_coverage(y_true, frame: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of the most confident x% of tickets for every x: the trade-off the thresholds pick from."""
    y = pd.Series(np.asarray(y_true, dtype=object), index=frame.index)
    known = y.notna()
    conf = frame.loc[known, "confidence"].to_numpy(dtype=float)
    right = (frame.loc[known, "label"].astype(str) == y[known].astype(str)).to_numpy()
    order = np.argsort(-conf, kind="stable")
    n = np.arange(1, len(order) + 1)
    return pd.DataFrame(
        {
            "coverage": n / max(len(order), 1),
            "accuracy": np.cumsum(right[order]) / n,
            "confidence": conf[order],
        }
    )
