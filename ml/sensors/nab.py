"""The detector on NAB-format data: a per-file comparison with the baselines, and the NAB runner.

`python -m ml.sensors.nab --data-dir NAB --out results` scores a NAB-layout corpus causally (each file
trains only on its probationary period) and writes NAB results files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from ml import config, features
from ml.data import sources
from ml.data.gold import label_windows, sensor_grid
from ml.sensors import anomaly


def nab_params(params: dict) -> dict:
    """Detector params for NAB files: each file trains on its own probationary period."""
    merged = {**params, **params.get("nab", {})}
    merged.pop("nab", None)
    return merged


def nab_sample_comparison(nab_dir: Path, params: dict) -> pd.DataFrame:
    """Per NAB file: train on its probationary period, then the forest and baselines on the rest."""
    readings, windows = sources.load_nab_dir(nab_dir)
    rows = []
    for sid, raw in readings.groupby("sensor_id", sort=True):
        grid = label_windows(sensor_grid(raw), windows)
        n = len(grid)
        train_mask = pd.Series(np.arange(n) < sources.nab_probationary_rows(n), index=grid.index)
        start = pd.Series({sid: grid.loc[~train_mask, "timestamp"].min()})
        step = features.infer_freq(grid["timestamp"])
        period = max(2, int(pd.Timedelta("1D") / step))
        table, _, _ = anomaly.compare_detectors(
            grid,
            windows[windows["sensor_id"] == sid],
            nab_params(params),
            eval_start=start,
            train_mask=train_mask,
            period=period,
        )
        rows.append(table.reset_index().assign(sensor_id=sid))
    return pd.concat(rows, ignore_index=True)


def run_nab_file(
    csv: Path, data_dir: Path, params: dict, windows: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Score one NAB file causally, training only on its probationary period; NAB results rows, same order."""
    readings = sources.read_nab_csv(csv, sensor_id=str(csv.relative_to(data_dir).with_suffix("")))
    n = len(readings)
    prob = sources.nab_probationary_rows(n)
    train_mask = pd.Series(np.arange(n) < max(prob, 2), index=readings.index)
    series = readings.assign(is_anomaly=False)
    pipe = anomaly.fit_detector(series, nab_params(params), train_mask=train_mask)
    scored = anomaly.score_readings(pipe, readings, explain="none")
    label = np.zeros(n, dtype=int)
    if windows is not None and len(windows):
        for w in windows[windows["sensor_id"] == readings["sensor_id"].iloc[0]].itertuples():
            label[readings["timestamp"].between(w.start, w.end).to_numpy()] = 1
    return pd.DataFrame(
        {
            "timestamp": readings["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "value": readings["value"].to_numpy(),
            "anomaly_score": scored["score"].fillna(0.0).round(6).to_numpy(),
            "label": label,
        }
    )


def run_nab(
    data_dir: Path,
    out_dir: Path,
    params: dict,
    *,
    labels: Path | None = None,
    detector: str = "opslab",
    n_jobs: int = 2,
) -> dict:
    """Run the detector over a NAB-layout corpus (data/<category>/<file>.csv) and write NAB results files."""
    data_dir = Path(data_dir)
    data_root = data_dir / "data" if (data_dir / "data").is_dir() else data_dir
    files = sorted(data_root.rglob("*.csv"))
    if not files:
        raise FileNotFoundError(
            f"{data_dir}: no NAB csv files under it (expected data/<category>/<file>.csv)"
        )
    labels = labels or (data_dir / "labels" / "combined_windows.json")
    windows = sources.read_nab_labels(labels) if Path(labels).exists() else None
    t0 = time.perf_counter()
    results = Parallel(n_jobs=n_jobs)(delayed(run_nab_file)(f, data_root, params, windows) for f in files)
    written = []
    for f, res in zip(files, results, strict=True):
        rel = f.relative_to(data_root)
        dest = Path(out_dir) / detector / rel.parent / f"{detector}_{rel.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        res.to_csv(dest, index=False)
        written.append(str(dest))
    return {
        "files": len(written),
        "rows": int(sum(len(r) for r in results)),
        "seconds": round(time.perf_counter() - t0, 1),
        "out": str(Path(out_dir) / detector),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: score a NAB-format corpus causally and write NAB results files."""
    ap = argparse.ArgumentParser(prog="python -m ml.sensors.nab", description=main.__doc__)
    ap.add_argument(
        "--data-dir", required=True, type=Path, help="NAB root (with data/ and labels/) or a csv folder"
    )
    ap.add_argument(
        "--out", required=True, type=Path, help="results root; files go to <out>/opslab/<category>/"
    )
    ap.add_argument(
        "--labels", type=Path, default=None, help="combined_windows.json (default: <data-dir>/labels)"
    )
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    params = config.load_params(args.params)["anomaly"]
    summary = run_nab(args.data_dir, args.out, params, labels=args.labels, n_jobs=args.jobs)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
