"""EDA tables: the stationarity verdicts match series whose nature is known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.data import eda


def test_stationarity_tells_a_random_walk_from_noise_around_a_level():
    rng = np.random.default_rng(0)
    n = 24 * 40
    times = pd.date_range("2024-01-01", periods=n, freq="1h")
    frames = [
        pd.DataFrame(
            {"sensor_id": "walk", "kind": "k", "timestamp": times, "value": rng.standard_normal(n).cumsum()}
        ),
        pd.DataFrame(
            {"sensor_id": "noise", "kind": "k", "timestamp": times, "value": 5 + rng.standard_normal(n)}
        ),
    ]
    table = eda.stationarity_table(pd.concat(frames, ignore_index=True))
    assert table.loc["noise", "verdict"] == "stationary" and table.loc["noise", "adf_p"] < 0.01
    assert table.loc["walk", "verdict"] == "unit root: difference once" and table.loc["walk", "adf_p"] > 0.05
