"""Sensor anomaly detection: an sklearn Pipeline of `ml.features` transformers ending in an Isolation Forest.

The same fitted Pipeline scores in the notebook, in batch (`data/scores/`), in the NAB runner
(`ml.sensors.nab`) and in the service. Scores are causal (a reading's score uses readings up to it). Per
sensor, in time order, the forest's raw score becomes a calibrated score in [0, 1] with the same meaning
on every series (`ml.sensors.likelihood`): the anomaly likelihood of the raw score against its trailing
distribution, raised for a reading outside the range the sensor has shown so far (0.5 and up), and
suppressed for `hold` readings after a peak unless exceeded. The threshold is set at a target false-alarm
rate on normal training data. Each flagged reading names the feature furthest from its normal training
value. Params are the `anomaly:` section of params.yaml (`ml.config.section`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline

from ml import config
from ml.features import SENSOR_FEATURES, SensorWindowFeatures
from ml.sensors import baselines, evaluation, likelihood

N_QUANTILES = 1000
MIN_THRESHOLD = 0.3  # a calibrated score below this is a 1-in-1,000 event or likelier: never an alarm


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
        history=8640,
        std_floor=0.01,
        hold=100,
        novelty_margin=0.0,
        calibration="likelihood",
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
        self.history = history
        self.std_floor = std_floor
        self.hold = hold
        self.novelty_margin = novelty_margin
        self.calibration = calibration

    def fit(self, X, y=None, sample_weight=None):
        X = np.asarray(X, dtype=float)
        with warnings.catch_warnings():  # short NAB probation periods: fewer rows than max_samples is fine
            warnings.filterwarnings("ignore", message="max_samples .* is greater than the total number")
            super().fit(X, y=y, sample_weight=sample_weight)
        self.feature_medians_ = np.median(X, axis=0)
        iqr = np.subtract(*np.percentile(X, [75, 25], axis=0)) / 1.349
        self.feature_scales_ = np.maximum(np.maximum(iqr, X.std(axis=0)), 1e-6)
        raw = -self.score_samples(X)
        self.raw_mean_, self.raw_std_ = float(raw.mean()), float(max(raw.std(), self.std_floor))
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

    def stream_score(self, X, values, seen: tuple[float, float] = (np.inf, -np.inf)) -> np.ndarray:
        """Calibrated scores in [0, 1] of ONE sensor's readings in time order (see the module doc).

        `values` are the raw readings (the novelty rule); `seen` = (min, max) of the sensor's training
        readings, so a short request still knows the range seen so far.
        """
        how = getattr(self, "calibration", "likelihood")  # models pickled before it existed
        if how == "ecdf":  # the share of normal training readings less anomalous (the ablation's "before")
            score = self.anomaly_score(X)
        elif how == "off":  # the forest unused (the ablation: does the forest earn its place?)
            score = np.zeros(len(X))
        else:
            raw = -self.score_samples(np.asarray(X, dtype=float))
            score = likelihood.anomaly_likelihood(
                raw,
                average=1,
                history=self.history,
                std_floor=self.std_floor,
                prior=(getattr(self, "raw_mean_", raw.mean()), getattr(self, "raw_std_", self.std_floor)),
            )
        margin = getattr(self, "novelty_margin", None)
        if margin is not None:
            novel = likelihood.range_novelty(values, margin=margin, seen=seen)
            score = np.maximum(score, np.where(novel > 0, 0.5 + 0.5 * novel, 0.0))
        return likelihood.hold_suppression(score, getattr(self, "hold", 0))

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


def make_detector(params: Mapping[str, Any]) -> Pipeline:
    """The unfitted Pipeline: window features -> calibrated Isolation Forest, knobs from the `anomaly:` params."""
    params = config.section("anomaly", params)
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
                    history=params["likelihood_history"],
                    std_floor=params["likelihood_std_floor"],
                    hold=params["hold"],
                    novelty_margin=params["novelty_margin"],
                    calibration=params["calibration"],
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


def fit_detector(
    series: pd.DataFrame, params: Mapping[str, Any], train_mask: pd.Series | None = None
) -> Pipeline:
    """Fit on the training period: features on every training reading, the forest on the normal ones only.

    The last `calibration_fraction` of the training period (per sensor) is held out from the forest and
    sets the false-alarm threshold.

    `series` is a sensor grid (sensor_id, timestamp, value, optional is_anomaly); rows with a missing
    value or inside a labelled window do not train the forest or its threshold. `params` are merged over
    the project's `anomaly:` section (unknown keys refused).
    """
    params = config.section("anomaly", params)
    pipe = make_detector(params)
    mask = training_rows(series, params["train_fraction"]) if train_mask is None else train_mask
    train = series[mask]
    normal = normal_rows(train)
    feats = pipe.named_steps["features"].fit(train[normal]).transform(train)
    # the forest learns from the earlier part of the training period; the threshold is set on the later
    # part, which the forest has not seen (in-sample scores would understate the false-alarm rate)
    held_out = training_rows(train, 1.0 - params["calibration_fraction"]).to_numpy() == 0
    X, keep = feats.to_numpy(), normal
    detector = pipe.named_steps["detector"].fit(X[keep & ~held_out])
    calib = keep & held_out
    if calib.sum() >= 50:
        detector.calibrate(X[calib])
    else:
        calib = keep
    # the alarm threshold: the target false-alarm rate of the calibrated (streaming) score on normal rows
    stream = score_readings(pipe, train, explain="none")["score"].to_numpy()[calib]
    if np.isfinite(stream).any():
        q = float(np.nanquantile(stream, 1.0 - params["false_alarm_rate"]))
        detector.threshold_ = max(q, MIN_THRESHOLD)
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
    features = pipe.named_steps["features"]
    feats = features.transform(readings)  # full context, including missing rows
    X = feats.to_numpy()[present]
    score = np.full(len(out), np.nan)
    order = out.assign(_p=present).sort_values(["sensor_id", "timestamp"], kind="stable")
    for sid, g in order[order["_p"]].groupby("sensor_id", sort=False):
        pos = out.index.get_indexer(g.index)
        st = features.sensors_.get(str(sid), {})
        seen = (st.get("lo", np.inf), st.get("hi", -np.inf))
        score[pos] = detector.stream_score(feats.to_numpy()[pos], g["value"].to_numpy(), seen=seen)
    score = score[present]
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
    frame = series[["sensor_id", "timestamp", "value"]]
    return {
        "rolling_zscore": baselines.rolling_zscore_scores(frame, window=period),
        "seasonal_residual": baselines.seasonal_residual_scores(frame, period=period),
    }


def compare_detectors(
    series: pd.DataFrame,
    windows: pd.DataFrame,
    params: Mapping[str, Any],
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
    params = config.section("anomaly", params)
    pipe = fit_detector(series, params, train_mask=train_mask)
    scored = score_readings(pipe, series)
    results = {
        "isolation_forest": evaluation.evaluate_detector(
            scored,
            windows,
            score_col="score",
            threshold=pipe.named_steps["detector"].threshold_,
            eval_start=eval_start,
            merge_gap=params["merge_gap"],
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
            merge_gap=params["merge_gap"],
        )
    return evaluation.detector_table(results), scored, pipe


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
