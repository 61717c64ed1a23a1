"""Impacted system and owning team at open time: raw incident -> cmdb_ci and owning_team, or "not sure".

`incident-system-team` is the same `PrecisionTargetClassifier` as triage (text + open-time metadata,
per-class thresholds for `target_precision` chosen on the latest part of training, abstaining below
them), with two heads: the configuration item the ticket is about (`cmdb_ci`) and the team that owns
that system (`owning_team`). Neither is an input: `cmdb_ci` is what callers rarely fill in (0.2% of the
real UCI log) and `owning_team` is a target only (never in `schemas.OPEN_TIME_COLUMNS`).

The heads are separate on purpose: a team owns several systems (Network Engineering runs the VPN and the
campus Wi-Fi), so a ticket can be confidently a team's while its system is still ambiguous. The two
answers may therefore disagree on a row; `consistency` measures how often the confident answers agree
with the CMDB's system -> team map learned from training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ml import config
from ml.incidents import triage
from ml.incidents.abstain import PrecisionTargetClassifier
from ml.incidents.triage import Comparison

SYSTEM_TEAM_TARGETS = ("cmdb_ci", "owning_team")


def make_system_team(params: Mapping[str, Any] | None = None) -> PrecisionTargetClassifier:
    """Unfitted `incident-system-team`: text + contact_type, location, impact, urgency, priority ->
    cmdb_ci and owning_team (without text: `no_text_columns`, e.g. category/subcategory/location)."""
    p = config.section("system_team", params)
    cols = None if p["use_text"] else [c for c in p["no_text_columns"] if c not in p["targets"]]
    return triage.make_classifier(p, categorical_columns=cols)


def fit_system_team(
    train: pd.DataFrame, params: Mapping[str, Any] | None = None
) -> PrecisionTargetClassifier:
    """Fit `incident-system-team` on training incidents."""
    p = config.section("system_team", params)
    return triage.fit_model(make_system_team(p), train, p["targets"], p["n_threads"])


def compare_system_team(
    train: pd.DataFrame, test: pd.DataFrame, params: Mapping[str, Any] | None = None
) -> Comparison:
    """`incident-system-team` against majority and rule baselines (keyword lookup on the short description;
    without text, the most frequent system/team per subcategory then category) on one holdout."""
    p = config.section("system_team", params)
    return triage.compare_models(
        make_system_team(p),
        train,
        test,
        p["targets"],
        ("subcategory", "category"),
        rule_min_count=p["rule_min_count"],
        n_threads=p["n_threads"],
    )


def system_team_map(incidents: pd.DataFrame) -> dict[str, str]:
    """The most frequent owning team of each system in `incidents` (the CMDB's map, as the data shows it)."""
    pairs = incidents[["cmdb_ci", "owning_team"]].dropna()
    counts = pairs.groupby(["cmdb_ci", "owning_team"]).size().rename("n").reset_index()
    counts = counts.sort_values(["cmdb_ci", "n", "owning_team"], ascending=[True, False, True])
    return dict(
        counts.drop_duplicates("cmdb_ci")[["cmdb_ci", "owning_team"]].itertuples(index=False, name=None)
    )


def consistency(frame: pd.DataFrame, mapping: Mapping[str, str]) -> dict[str, float]:
    """On rows where both heads answered: the share whose team is the mapped owner of the predicted system."""
    both = ~frame["cmdb_ci_abstain"].to_numpy(dtype=bool) & ~frame["owning_team_abstain"].to_numpy(dtype=bool)
    systems, teams = (
        frame["cmdb_ci_label"].to_numpy(dtype=object),
        frame["owning_team_label"].to_numpy(dtype=object),
    )
    agree = np.array([mapping.get(s) == t for s, t in zip(systems, teams, strict=True)], dtype=bool)
    return {
        "both_answered": float(both.mean()) if len(both) else float("nan"),
        "agree_when_both_answered": float(agree[both].mean()) if both.any() else float("nan"),
    }
