"""The Evidently report agrees with PSI: a batch after a new system's rollout drifts, one from the reference
period does not."""

from __future__ import annotations

import numpy as np
import pytest

from ml.data.synth.incidents import make_incidents
from ml.monitoring import drift, evidently


# Known generator seeds, not a property of every seed: a same-period batch of ~400 tickets sits near PSI's
# noise floor on the many-category columns, and Evidently's chi-square at p < 0.05 flags a column of many
# such batches. These are the seeds the test ran under Hypothesis (derandomized) before the module split.
@pytest.mark.parametrize("seed", [0, 47, 1794, 65535])
def test_rollout_is_detected_by_evidently_and_psi_and_a_reference_batch_is_not(seed):
    rollout = {"at": "2024-05-01", "system": "HR portal", "share": 0.15}
    incidents = make_incidents(n_incidents=2000, months=6, seed=seed, rollout=rollout)
    frame = drift.incident_monitor_frame(incidents)
    before = (incidents["opened_at"] < "2024-05-01").to_numpy()
    held_out = np.random.default_rng(seed).random(len(frame)) < 0.3  # same period, same distribution
    reference, same, after = frame[before & ~held_out], frame[before & held_out], frame[~before]

    shifted = evidently.drift_report(reference, after, summary_preset=False)
    assert shifted["columns"]["cmdb_ci"]["drifted"] and shifted["columns"]["assignment_group"]["drifted"]
    assert shifted["share_drifted"] > 0
    assert not any(
        c["drifted"]
        for c in evidently.drift_report(reference, same, summary_preset=False)["columns"].values()
    )

    psi_after = drift.psi_table(reference, after).set_index("feature")["psi"]
    assert psi_after["cmdb_ci"] > 0.25 and psi_after["assignment_group"] > 0.25
    assert drift.psi_table(reference, same)["psi"].max() < 0.1


def test_verdicts_are_compared_and_stated_from_the_reports():
    report = {"columns": {"a": {"drifted": True}, "b": {"drifted": False}, "c": {"drifted": True}}}
    cmp = evidently.verdicts_compared(report, ours=["a", "b"], expected=["a", "b", "d"])
    assert cmp["both"] == ["a"] and cmp["only_evidently"] == ["c"] and cmp["only_ours"] == ["b"]
    assert cmp["evidently_missed"] == ["b", "d"] and cmp["ours_missed"] == ["d"]
    text = evidently.verdicts_sentence("Sensors", cmp, "the recalibration")
    assert "they disagree" in text and "only Evidently: `c`" in text and "Evidently misses `b`, `d`" in text
    same = evidently.verdicts_compared(report, ours=["a", "c"], expected=["a"])
    assert "they agree" in evidently.verdicts_sentence("Incidents", same, "the rollout")
    assert "miss" not in evidently.verdicts_sentence("Incidents", same, "the rollout")
    both = evidently.verdicts_compared(report, ours=["a", "c"], expected=["a", "d"])
    assert "both miss `d`" in evidently.verdicts_sentence("Incidents", both, "the rollout")
