"""The NAB ablation: every configuration is a valid `anomaly:` section and the last lever is the shipped one."""

from __future__ import annotations

from ml import config
from ml.sensors import anomaly, nab, nab_ablation


def test_every_configuration_builds_a_detector():
    project = config.load_params()["anomaly"]
    for name, overrides in nab_ablation.ABLATION.items():
        merged = nab.nab_params(
            {**project, **overrides, "nab": {**project["nab"], **overrides.get("nab", {})}}
        )
        assert anomaly.make_detector(merged).named_steps["detector"] is not None, name
    assert nab_ablation.ABLATION[nab_ablation.FINAL] == {}
