"""The detector on NAB-format data: a per-file comparison with the baselines, and the NAB runner.

`python -m ml.sensors.nab --data-dir NAB --out results [--score]` scores a NAB-layout corpus causally
(each file trains only on its probationary period) and writes NAB results files; with `--score` it also
computes NAB's own score (`ml.sensors.nab_score`: one corpus threshold per profile, normalised 0..100)
and writes it to `--metrics` (default metrics/nab.json) and a per-category chart next to the published
detectors when their scores are in `<data-dir>/published_scores/`.
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
from ml.sensors import anomaly, nab_score


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
    score: bool = False,
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
    written, scores = [], {}
    for f, res in zip(files, results, strict=True):
        rel = f.relative_to(data_root)
        dest = Path(out_dir) / detector / rel.parent / f"{detector}_{rel.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        res.to_csv(dest, index=False)
        written.append(str(dest))
        scores[rel.as_posix()] = res["anomaly_score"].to_numpy()
    summary = {
        "files": len(written),
        "rows": int(sum(len(r) for r in results)),
        "seconds": round(time.perf_counter() - t0, 1),
        "out": str(Path(out_dir) / detector),
    }
    if score:
        summary.update(nab_metrics(scores, nab_score.corpus_layouts(data_dir)))
        summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary


def nab_metrics(scores: dict, layouts: dict) -> dict:
    """NAB's final scores of a detector's scores (the three profiles, the thresholds, per category)."""
    r = nab_score.score_corpus(scores, layouts)
    return {
        **{p: round(float(r[p]), 2) for p in nab_score.PROFILES},
        "threshold": round(r["thresholds"]["standard"], 6),
        "thresholds": {p: round(t, 6) for p, t in r["thresholds"].items()},
        "categories": r["categories"],
        "no_window_cost": r["no_window_cost"],
    }


def published_metrics(data_dir: Path, layouts: dict | None = None) -> dict:
    """`nab_metrics` of every detector in `<data_dir>/published_scores/*.csv.gz` (empty when none)."""
    layouts = layouts or nab_score.corpus_layouts(data_dir)
    out = {}
    for path in sorted((Path(data_dir) / "published_scores").glob("*.csv*")):
        name = path.name.split(".")[0]
        out[name] = nab_metrics(nab_score.read_published_scores(path), layouts)
    return out


def category_table(metrics: dict, ours: str = "opslab") -> pd.DataFrame:
    """NAB standard score per category (rows) for our detector and the published ones (columns), with the
    corpus scores of each profile as the last rows; from a `metrics/nab.json` dict."""
    detectors = {ours: metrics, **metrics.get("published", {})}
    table = pd.DataFrame({name: m.get("categories", {}) for name, m in detectors.items()})
    totals = pd.DataFrame(
        {name: {f"corpus: {p}": m.get(p) for p in nab_score.PROFILES} for name, m in detectors.items()}
    )
    return pd.concat([table, totals]).astype(float)


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
    ap.add_argument("--score", action="store_true", help="compute NAB's score and write --metrics")
    ap.add_argument("--metrics", type=Path, default=Path("metrics/nab.json"))
    ap.add_argument(
        "--chart", type=Path, default=None, help="per-category chart (default: <charts>/nab_categories.png)"
    )
    args = ap.parse_args(argv)
    params = config.load_params(args.params)["anomaly"]
    summary = run_nab(args.data_dir, args.out, params, labels=args.labels, n_jobs=args.jobs, score=args.score)
    if not args.score:
        print(json.dumps(summary))
        return 0
    summary["published"] = published_metrics(args.data_dir)
    metrics = {k: v for k, v in summary.items() if k != "out"}
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    for p in nab_score.PROFILES:
        print(f"{p:20s} {summary[p]:6.2f}")
    print(
        f"threshold {summary['threshold']}, {summary['files']} files, {summary['rows']} rows, {summary['seconds']} s"
    )
    chart = args.chart or config.resolve(params["charts"]) / "nab_categories.png"
    # function-level import: matplotlib only when a chart is drawn (the runner itself does not need it)
    from ml.sensors import charts

    charts.save_nab_categories(metrics, chart)
    print(f"wrote {args.metrics} and {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
