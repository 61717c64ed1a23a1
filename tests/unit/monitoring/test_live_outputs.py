"""The training-time score distribution the monitoring job compares served outputs with: the text
classifiers (triage, system/team) score their reference sample head by head, as /triage answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.data import schemas
from ml.incidents import system_team, triage
from ml.monitoring import live
from ml.testing.models import TEXT_PARAMS, incident_split, make_data


@pytest.fixture(scope="module")
def split():
    return incident_split(make_data(n_sensors=1, days=2, n_incidents=1200, seed=4))


@pytest.mark.parametrize(
    ("name", "fit"),
    [("incident-triage", triage.fit_triage), ("incident-system-team", system_team.fit_system_team)],
)
def test_text_heads_score_their_reference_into_the_monitored_fields(split, name, fit):
    train, test = split
    model = fit(train, TEXT_PARAMS)
    reference = train[schemas.OPEN_TIME_COLUMNS].sample(300, random_state=0)
    scores = live._score_reference(live.MODELS[name].scorer, model, reference)
    assert list(scores.columns) == list(live.MODELS[name].outputs) and len(scores) == 300
    values = scores.to_numpy(dtype=float)
    assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
    served = model.predict_frame(test.head(20))  # what the service answers: the same confidences
    head = live.MODELS[name].outputs[0].split(".")[0]
    again = live._score_reference("heads", model, test.head(20)[schemas.OPEN_TIME_COLUMNS])
    np.testing.assert_allclose(
        again[f"{head}.confidence"], triage.head_frame(model, served, head)["confidence"]
    )


def test_the_detector_brings_its_training_scores_in_its_reference(tmp_path):
    readings = pd.DataFrame({"sensor_id": ["s1"] * 4, "timestamp": pd.date_range("2024-01-01", periods=4, freq="h"),
                             "value": [1.0, 2.0, np.nan, 4.0]})  # fmt: skip
    kept = readings.assign(score=[0.1, 0.2, np.nan, 0.9])
    got, source = live.training_outputs(live.VersionInfo("sensor-anomaly", "4", kept, "ref"), tmp_path)
    assert got["score"].tolist() == [0.1, 0.2, 0.9] and "kept in training (3 rows)" in source
    none, why = live.training_outputs(live.VersionInfo("sensor-anomaly", "3", readings, "ref"), tmp_path)
    assert none is None and "v3's reference keeps no training ['score']" in why
    assert not list(tmp_path.iterdir())  # nothing scored, nothing cached
