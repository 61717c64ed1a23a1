"""Sensor anomaly detection: an sklearn Pipeline of `ml.features` transformers ending in an Isolation Forest.

The same fitted Pipeline scores in the notebook, in batch (`data/scores/`), in the NAB runner and in the
service. Scores are causal (a reading's score uses readings up to it), mapped to [0, 1] as the share of
normal training readings that look less anomalous, and thresholded at a target false-alarm rate on
normal training data. Each flagged reading names the feature furthest from its normal training value.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline

from ml.features import SENSOR_FEATURES, SensorWindowFeatures

N_QUANTILES = 1000


class CalibratedIsolationForest(IsolationForest):
    """An IsolationForest that also maps raw scores to [0, 1] and holds a false-alarm-rate threshold.

    `anomaly_score` = share of normal training readings whose raw score is below this one's (an
    empirical CDF), so 0.99 reads "more unusual than 99% of normal training readings". `threshold_` is
    1 - `false_alarm_rate`: at most that share of normal training readings is flagged. `predict`
    returns 1 for an anomaly and 0 otherwise.
    """

    def __init__(
        self,
        *,
        n_estimators=200,
        max_samples=256,
        max_features=1.0,
        bootstrap=False,
        n_jobs=None,
        random_state=None,
        verbose=0,
        warm_start=False,
        false_alarm_rate=0.01,
    ):
        super().__init__(
            n_estimators=n_estimators,
            max_samples=max_samples,
            contamination="auto",
            max_features=max_features,
            bootstrap=bootstrap,
            n_jobs=n_jobs,
            random_state=random_state,
            verbose=verbose,
            warm_start=warm_start,
        )
        self.false_alarm_rate = false_alarm_rate

    def fit(self, X, y=None, sample_weight=None):
        X = np.asarray(X, dtype=float)
        with warnings.catch_warnings():  # short NAB probation periods: fewer rows than max_samples is fine
            warnings.filterwarnings("ignore", message="max_samples .* is greater than the total number")
            super().fit(X, y=y, sample_weight=sample_weight)
        self.feature_medians_ = np.median(X, axis=0)
        iqr = np.subtract(*np.percentile(X, [75, 25], axis=0)) / 1.349
        self.feature_scales_ = np.maximum(np.maximum(iqr, X.std(axis=0)), 1e-6)
        return self.calibrate(X)

    def calibrate(self, X):
        """Set the [0,1] mapping and threshold from normal readings (held out from `fit` when possible)."""
        raw = -self.score_samples(np.asarray(X, dtype=float))
        self.calibration_ = np.quantile(raw, np.linspace(0.0, 1.0, N_QUANTILES + 1))
        self.threshold_ = 1.0 - float(self.false_alarm_rate)
        return self

    def anomaly_score(self, X) -> np.ndarray:
        """Raw isolation score -> [0, 1): the empirical CDF of normal readings, with a smooth tail above
        their maximum so that readings stranger than anything seen in training still rank."""
        raw = -self.score_samples(np.asarray(X, dtype=float))
        cal, n = self.calibration_, N_QUANTILES + 1
        score = np.searchsorted(cal, raw, side="right") / n
        above = raw >= cal[-1]
        scale = max(cal[-1] - cal[-max(2, n // 100)], 1e-6)  # spread of the top 1% of normal scores
        score[above] = (n - 1) / n + (1 - np.exp(-(raw[above] - cal[-1]) / scale)) / n
        return score

    def predict(self, X) -> np.ndarray:
        return (self.anomaly_score(X) > self.threshold_).astype(int)

    def explain(self, X, feature_names=SENSOR_FEATURES) -> np.ndarray:
        """Per row, the feature furthest from its normal training value, in robust standard deviations.

        (Replacing one feature at a time and re-scoring was tried first: with correlated features it named
        the same one for every kind of anomaly, which explains nothing.)
        """
        X = np.asarray(X, dtype=float)
        if len(X) == 0:
            return np.array([], dtype=object)
        z = np.abs(X - self.feature_medians_) / self.feature_scales_
        return np.asarray(feature_names, dtype=object)[z.argmax(axis=1)]


def make_detector(params: dict) -> Pipeline:
    """The unfitted Pipeline: window features -> calibrated Isolation Forest, all knobs from params."""
    return Pipeline(
        [
            (
                "features",
                SensorWindowFeatures(short_window=params["short_window"], long_window=params["long_window"]),
            ),
            (
                "detector",
                CalibratedIsolationForest(
                    n_estimators=params["n_estimators"],
                    max_samples=params["max_samples"],
                    false_alarm_rate=params["false_alarm_rate"],
                    random_state=params["seed"],
                ),
            ),
        ]
    )


def training_rows(series: pd.DataFrame, train_fraction: float) -> pd.Series:
    """Time-ordered split: True for each sensor's first `train_fraction` of its timeline."""
    first = series.groupby("sensor_id")["timestamp"].transform("min")
    last = series.groupby("sensor_id")["timestamp"].transform("max")
    return series["timestamp"] < first + (last - first) * train_fraction


def normal_rows(series: pd.DataFrame, mask: pd.Series | np.ndarray | None = None) -> np.ndarray:
    """Rows that may set a model or a threshold: inside `mask`, with a reading, outside labelled windows."""
    keep = series["value"].notna().to_numpy()
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    if "is_anomaly" in series:
        keep &= ~series["is_anomaly"].astype(bool).to_numpy()
    return keep


def fit_detector(series: pd.DataFrame, params: dict, train_mask: pd.Series | None = None) -> Pipeline:
    """Fit on the training period: features on every training reading, the forest on the normal ones only.

    The last `calibration_fraction` of the training period (per sensor) is held out from the forest and
    sets the false-alarm threshold.

    `series` is a sensor grid (sensor_id, timestamp, value, optional is_anomaly); rows with a missing
    value or inside a labelled window do not train the forest or its threshold.
    """
    pipe = make_detector(params)
    mask = training_rows(series, params["train_fraction"]) if train_mask is None else train_mask
    train = series[mask]
    normal = normal_rows(train)
    feats = pipe.named_steps["features"].fit(train[normal]).transform(train)
    # the forest learns from the earlier part of the training period; the threshold is set on the later
    # part, which the forest has not seen (in-sample scores would understate the false-alarm rate)
    held_out = training_rows(train, 1.0 - params.get("calibration_fraction", 0.3)).to_numpy() == 0
    X, keep = feats.to_numpy(), normal
    detector = pipe.named_steps["detector"].fit(X[keep & ~held_out])
    if (keep & held_out).sum() >= 50:
        detector.calibrate(X[keep & held_out])
    return pipe


def score_readings(pipe: Pipeline, readings: pd.DataFrame, *, explain: str = "flagged") -> pd.DataFrame:
    """Score raw readings with a fitted detector: score in [0,1], is_anomaly, threshold, top feature.

    Rows whose value is missing get no score. `explain` = "flagged" (only anomalies name a feature),
    "all", or "none".
    """
    out = readings[["sensor_id", "timestamp", "value"]].copy()
    out["score"] = np.nan
    out["is_anomaly"] = False
    detector = pipe.named_steps["detector"]
    out["threshold"] = detector.threshold_
    out["top_feature"] = None
    present = out["value"].notna().to_numpy()
    if not present.any():
        return out
    feats = pipe.named_steps["features"].transform(readings)  # full context, including missing rows
    X = feats.to_numpy()[present]
    score = detector.anomaly_score(X)
    flagged = score > detector.threshold_
    out.loc[present, "score"] = score
    out.loc[present, "is_anomaly"] = flagged
    which = {"flagged": flagged, "all": np.ones_like(flagged), "none": np.zeros_like(flagged)}[explain]
    if which.any():
        idx = out.index[present][which]
        out.loc[idx, "top_feature"] = detector.explain(X[which])
    return out


# --- honest comparison: the forest and the baselines on the same split ------------------------------
BASELINES = ("rolling_zscore", "seasonal_residual")


def eval_starts(series: pd.DataFrame, train_fraction: float) -> pd.Series:
    """Per sensor, the first timestamp after its training period: where evaluation begins."""
    test = series[~training_rows(series, train_fraction)]
    return test.groupby("sensor_id")["timestamp"].min()


def baseline_scores(series: pd.DataFrame, period: int = 24) -> dict[str, pd.Series]:
    """The two causal baselines' scores for a sensor grid (aligned to its rows)."""
    from ml.sensors import evaluation

    frame = series[["sensor_id", "timestamp", "value"]]
    return {
        "rolling_zscore": evaluation.rolling_zscore_scores(frame, window=period),
        "seasonal_residual": evaluation.seasonal_residual_scores(frame, period=period),
    }


def compare_detectors(
    series: pd.DataFrame,
    windows: pd.DataFrame,
    params: dict,
    *,
    eval_start: pd.Series,
    train_mask: pd.Series,
    period: int = 24,
) -> tuple[pd.DataFrame, pd.DataFrame, Pipeline]:
    """Fit the forest on the training rows and score everything; baselines get the same false-alarm budget.

    Every detector's threshold is the (1 - false_alarm_rate) point of its scores on normal training
    readings (labelled windows and missing readings excluded), and every detector is judged by
    `ml.sensors.evaluation.evaluate_detector` on the same evaluation period. Returns (comparison table,
    scored readings with every detector's score, the fitted pipeline).
    """
    from ml.sensors import evaluation

    pipe = fit_detector(series, params, train_mask=train_mask)
    scored = score_readings(pipe, series)
    results = {
        "isolation_forest": evaluation.evaluate_detector(
            scored,
            windows,
            score_col="score",
            threshold=pipe.named_steps["detector"].threshold_,
            eval_start=eval_start,
            merge_gap=params.get("merge_gap", 3),
        )
    }
    normal = normal_rows(series, train_mask)
    for name, score in baseline_scores(series, period).items():
        scored[f"score_{name}"] = score.to_numpy()
        threshold = evaluation.threshold_for_false_alarm_rate(
            score.to_numpy()[normal], params["false_alarm_rate"]
        )
        results[name] = evaluation.evaluate_detector(
            scored,
            windows,
            score_col=f"score_{name}",
            threshold=threshold,
            eval_start=eval_start,
            merge_gap=params.get("merge_gap", 3),
        )
    return evaluation.compare_detectors(results), scored, pipe


def false_alarm_sweep(
    scored: pd.DataFrame,
    series: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    rates,
    train_mask,
    eval_start,
    merge_gap: int = 3,
) -> pd.DataFrame:
    """Event/point metrics of every detector over a range of false-alarm budgets (one row per detector x rate)."""
    from ml.sensors import evaluation

    normal = normal_rows(series, train_mask)
    rows = []
    for rate in rates:
        cols = {"isolation_forest": ("score", 1.0 - rate)}
        for name in BASELINES:
            col = f"score_{name}"
            cols[name] = (
                col,
                evaluation.threshold_for_false_alarm_rate(scored[col].to_numpy()[normal], rate),
            )
        for name, (col, threshold) in cols.items():
            m = evaluation.evaluate_detector(
                scored,
                windows,
                score_col=col,
                threshold=threshold,
                eval_start=eval_start,
                merge_gap=merge_gap,
            )
            rows.append({"detector": name, "false_alarm_rate": rate, **m})
    return pd.DataFrame(rows)


def nab_sample_comparison(nab_dir: Path, params: dict) -> pd.DataFrame:
    """Per NAB file: train on its probationary period, then the forest and baselines on the rest."""
    from ml import features
    from ml.data import sources

    readings, windows = sources.load_nab_dir(nab_dir)
    rows = []
    for sid, raw in readings.groupby("sensor_id", sort=True):
        grid = features.label_windows(features.sensor_grid(raw), windows)
        n = len(grid)
        train_mask = pd.Series(np.arange(n) < sources.nab_probationary_rows(n), index=grid.index)
        start = pd.Series({sid: grid.loc[~train_mask, "timestamp"].min()})
        step = features.infer_freq(grid["timestamp"])
        period = max(2, int(pd.Timedelta("1D") / step))
        table, _, _ = compare_detectors(
            grid,
            windows[windows["sensor_id"] == sid],
            nab_params(params),
            eval_start=start,
            train_mask=train_mask,
            period=period,
        )
        rows.append(table.reset_index().assign(sensor_id=sid))
    return pd.concat(rows, ignore_index=True)


# --- NAB runner -------------------------------------------------------------------------------
def nab_params(params: dict) -> dict:
    """Detector params for NAB files: each file trains on its own probationary period."""
    merged = {**params, **params.get("nab", {})}
    merged.pop("nab", None)
    return merged


def run_nab_file(
    csv: Path, data_dir: Path, params: dict, windows: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Score one NAB file causally, training only on its probationary period; NAB results rows, same order."""
    from ml.data import sources

    readings = sources.read_nab_csv(csv, sensor_id=str(csv.relative_to(data_dir).with_suffix("")))
    n = len(readings)
    prob = sources.nab_probationary_rows(n)
    train_mask = pd.Series(np.arange(n) < max(prob, 2), index=readings.index)
    series = readings.assign(is_anomaly=False)
    pipe = fit_detector(series, nab_params(params), train_mask=train_mask)
    scored = score_readings(pipe, readings, explain="none")
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
    from joblib import Parallel, delayed

    from ml.data import sources

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
    from ml.config import load_params

    ap = argparse.ArgumentParser(prog="python -m ml.sensors.anomaly", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    nab = sub.add_parser("nab", help="score a NAB-format corpus causally and write NAB results files")
    nab.add_argument(
        "--data-dir", required=True, type=Path, help="NAB root (with data/ and labels/) or a csv folder"
    )
    nab.add_argument(
        "--out", required=True, type=Path, help="results root; files go to <out>/opslab/<category>/"
    )
    nab.add_argument(
        "--labels", type=Path, default=None, help="combined_windows.json (default: <data-dir>/labels)"
    )
    nab.add_argument("--params", default="params.yaml")
    nab.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    params = load_params(args.params)["anomaly"]
    summary = run_nab(args.data_dir, args.out, params, labels=args.labels, n_jobs=args.jobs)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
