"""The NAB runner: results files with the same rows, scores in [0,1], labels from the windows file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml.sensors import nab
from ml.testing.models import DETECTOR_TEST_PARAMS as PARAMS


def hourly_csv_frame(n_days: int = 20, seed: int = 0) -> pd.DataFrame:
    """A daily sine with noise as a NAB csv frame (timestamp as NAB writes it, value)."""
    rng = np.random.default_rng(seed)
    n = 24 * n_days
    ts = pd.date_range("2024-01-01", periods=n, freq="1h")
    value = 40 + 15 * np.sin(2 * np.pi * (np.arange(n) % 24) / 24) + rng.normal(0, 1, n)
    return pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": value})


def test_nab_runner_writes_results_files_with_the_same_rows(tmp_path):
    root = tmp_path / "nab"
    (root / "data" / "realTest").mkdir(parents=True)
    frame = hourly_csv_frame()
    frame.loc[300, "value"] = 500.0
    frame.to_csv(root / "data" / "realTest" / "tiny.csv", index=False)
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({"realTest/tiny.csv": [[f"{frame.loc[i, 'timestamp']}.000000" for i in (298, 302)]]})
    )
    summary = nab.run_nab(root, tmp_path / "results", PARAMS, n_jobs=1)
    out = pd.read_csv(tmp_path / "results" / "opslab" / "realTest" / "opslab_tiny.csv")
    assert summary["files"] == 1 and list(out.columns) == ["timestamp", "value", "anomaly_score", "label"]
    assert list(out["timestamp"]) == list(frame["timestamp"]) and len(out) == len(frame)
    assert out["anomaly_score"].between(0, 1).all() and out["label"].sum() == 5
    assert out.loc[300, "anomaly_score"] == out["anomaly_score"].max()


def test_nab_runner_names_an_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no NAB csv files"):
        nab.run_nab(tmp_path, tmp_path / "out", PARAMS)


def test_nab_params_apply_the_nab_overrides():
    assert nab.nab_params({"n_estimators": 200, "seed": 1, "nab": {"n_estimators": 100}}) == {
        "n_estimators": 100,
        "seed": 1,
    }
    assert nab.nab_params(PARAMS) == PARAMS


def test_cli_scores_the_corpus_and_writes_nab_metrics(tmp_path, capsys):
    root = tmp_path / "nab"
    (root / "data" / "realTest").mkdir(parents=True)
    frame = hourly_csv_frame()
    frame.loc[300, "value"] = 500.0
    frame.to_csv(root / "data" / "realTest" / "tiny.csv", index=False)
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({"realTest/tiny.csv": [[f"{frame.loc[i, 'timestamp']}.000000" for i in (290, 310)]]})
    )
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"anomaly": {**PARAMS, "charts": str(tmp_path / "charts")}}))
    out = tmp_path / "metrics" / "nab.json"
    assert (
        nab.main(
            [
                "--data-dir",
                str(root),
                "--out",
                str(tmp_path / "res"),
                "--score",
                "--metrics",
                str(out),
                "--params",
                str(params),
                "--jobs",
                "1",
            ]
        )
        == 0
    )
    m = json.loads(out.read_text())
    keys = {"standard", "reward_low_FP_rate", "reward_low_FN_rate", "threshold", "files", "rows", "seconds"}
    assert keys <= set(m) and m["files"] == 1 and m["rows"] == len(frame)
    assert m["standard"] > 50 and m["categories"]["realTest"] == pytest.approx(m["standard"], abs=0.01)
    assert (tmp_path / "charts" / "nab_categories.png").exists()
    assert "standard" in capsys.readouterr().out
    table = nab.category_table({**m, "published": {"other": m}})
    assert list(table.columns) == ["opslab", "other"] and "corpus: standard" in table.index
