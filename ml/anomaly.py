"""Sensor anomaly detection: an sklearn Pipeline of `ml.features` transformers ending in an Isolation Forest.

The same fitted Pipeline scores in the notebook, in batch (`data/scores/`), in the NAB runner and in the
service. Scores are causal (a reading's score uses readings up to it), mapped to [0, 1] as the share of
normal training readings that look less anomalous, and thresholded at a target false-alarm rate on
normal training data. Each flagged reading names the feature that pushed its score most.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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
        super().fit(X, y=y, sample_weight=sample_weight)
        self.feature_medians_ = np.median(X, axis=0)
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
        return (self.anomaly_score(X) >= self.threshold_).astype(int)

    def explain(self, X, feature_names=SENSOR_FEATURES) -> np.ndarray:
        """Per row, the feature whose replacement by its normal (training median) value lowers the score most."""
        X = np.asarray(X, dtype=float)
        if len(X) == 0:
            return np.array([], dtype=object)
        base = -self.score_samples(X)
        drops = np.empty((len(X), X.shape[1]))
        for j in range(X.shape[1]):
            Xj = X.copy()
            Xj[:, j] = self.feature_medians_[j]
            drops[:, j] = base + self.score_samples(Xj)
        return np.asarray(feature_names, dtype=object)[drops.argmax(axis=1)]


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
    normal = train["value"].notna()
    if "is_anomaly" in train:
        normal &= ~train["is_anomaly"].astype(bool)
    feats = pipe.named_steps["features"].fit(train[normal]).transform(train)
    # the forest learns from the earlier part of the training period; the threshold is set on the later
    # part, which the forest has not seen (in-sample scores would understate the false-alarm rate)
    held_out = training_rows(train, 1.0 - params.get("calibration_fraction", 0.3)).to_numpy() == 0
    X, keep = feats.to_numpy(), normal.to_numpy()
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
    flagged = score >= detector.threshold_
    out.loc[present, "score"] = score
    out.loc[present, "is_anomaly"] = flagged
    which = {"flagged": flagged, "all": np.ones_like(flagged), "none": np.zeros_like(flagged)}[explain]
    if which.any():
        idx = out.index[present][which]
        out.loc[idx, "top_feature"] = detector.explain(X[which])
    return out


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
    from ml import sources

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

    from ml import sources

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

    ap = argparse.ArgumentParser(prog="python -m ml.anomaly", description=__doc__.splitlines()[0])
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
