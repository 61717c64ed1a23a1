"""Benchmarks that print their numbers (`make bench`): the NAB runner over a 58-file corpus and detector latency.

The NAB corpus is read from --nab-dir (NAB's layout: data/<category>/<file>.csv) when given; otherwise a
corpus with NAB's layout is generated (58 files, ~550k rows: more than NAB's 365,558; 5-minute to hourly
steps), so the 10-minute target can be checked on a fresh clone without the real files.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ml.config import load_params
from ml.data.gold import sensor_grid
from ml.sensors import anomaly, nab

# row counts cycle through sizes like NAB's files (1.6k-22.7k rows)
_SIZES = [4032, 7267, 18050, 22695, 10320, 4032, 3000, 1600, 6000, 4700]


def make_nab_like_corpus(root: Path, n_files: int = 58, seed: int = 0) -> int:
    """Write a NAB-layout corpus of seasonal series with a few spikes; returns the row count."""
    rng = np.random.default_rng(seed)
    rows = 0
    for i in range(n_files):
        n = _SIZES[i % len(_SIZES)] + (i // len(_SIZES)) * 500
        step = ["5min", "5min", "1h", "30min"][i % 4]
        ts = pd.date_range("2014-01-01", periods=n, freq=step)
        per_day = pd.Timedelta("1D") / pd.Timedelta(step)
        value = 50 + 10 * np.sin(2 * np.pi * np.arange(n) / per_day) + rng.normal(0, 2, n)
        value[rng.integers(n // 5, n, 3)] += 60
        d = root / "data" / f"category{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": value.round(3)}).to_csv(
            d / f"series_{i:02d}.csv", index=False
        )
        rows += n
    return rows


def bench_nab(params: dict, nab_dir: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if nab_dir is None:
            nab_dir = tmp / "corpus"
            make_nab_like_corpus(nab_dir)
            source = "generated NAB-shaped corpus"
        else:
            source = str(nab_dir)
        t0 = time.perf_counter()
        summary = nab.run_nab(nab_dir, tmp / "results", params)
        wall = time.perf_counter() - t0
    return {
        "source": source,
        "files": summary["files"],
        "rows": summary["rows"],
        "wall_s": round(wall, 1),
        "rows_per_s": round(summary["rows"] / wall),
        "target_s": 600,
    }


def bench_latency(params: dict, repeats: int = 20) -> dict:
    rng = np.random.default_rng(0)
    n = 24 * 30
    ts = pd.date_range("2024-01-01", periods=n, freq="1h")
    frame = pd.DataFrame(
        {
            "sensor_id": "cpu-01",
            "kind": "cpu_pct",
            "unit": "pct",
            "timestamp": ts,
            "value": 40 + 10 * np.sin(2 * np.pi * np.arange(n) / 24) + rng.normal(0, 1, n),
        }
    )
    series = sensor_grid(frame).assign(is_anomaly=False)
    pipe = anomaly.fit_detector(series, params)
    out = {}
    for batch in (1, 100, 1000):
        context = series.tail(24 + batch)  # each call sends a day of history as context
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            anomaly.score_readings(pipe, context)
            times.append(time.perf_counter() - t0)
        out[f"batch_{batch}_ms"] = round(1000 * float(np.median(times)), 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nab-dir", type=Path, default=None)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    params = load_params(args.params)["anomaly"]
    results = {
        "nab_runner": bench_nab(nab.nab_params(params), args.nab_dir),
        "detector_latency_median": bench_latency(params),
    }
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
