"""NAB's own score (Numenta Anomaly Benchmark v1.1), re-implemented and vectorised.

Reproduces `nab/sweeper.py` + `nab/optimizer.py` + `nab/runner.normalize` of github.com/numenta/NAB:

- Probationary period: the first `min(floor(0.15 n), 750)` rows of each file are not scored.
- Each row gets a weight from its position: inside a labelled window, `tp * S(pos) / S(-1)` with
  `pos = -(right - i + 1) / width` (about +tp at the window start, near 0 at its end); outside every
  window, `fp * S(pos)` with `pos = (i - right_prev) / (width_prev - 1)` after the last window that ended
  (-fp before any window); `S(x) = 2 sigmoid(-5 x) - 1`, and -1 beyond x > 3.
- A window's value is the weight of its best (earliest) detection, or `-fn` when it has none; every
  detection outside windows adds its (negative) weight. A row is a detection when `score >= threshold`.
- One threshold for the whole corpus, per profile: the one (among all distinct scores and "never")
  maximising the corpus total, found like NAB's sweeper by walking the scores from high to low.
- Normalised: `100 (raw - null) / (perfect - null)`, null = every scored window missed, perfect =
  `tp` per labelled window.

The sweep is one sort of the corpus' scores plus cumulative sums (a window's contribution changes only
when a new earliest detection appears in it), so a 365k-row corpus is scored in well under a second.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml.data import sources

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
NEVER = 1.1  # NAB's sweep starts above every score in [0, 1]: no detection at all
MAX_TP = 2.0 / (1.0 + math.exp(-5.0)) - 1.0  # S(-1), the weight of a detection at a window's first row


@dataclass(frozen=True)
class Profile:
    """A NAB cost profile: weights of a true positive, a false positive and a false negative."""

    tp: float
    fp: float
    fn: float


# NAB's config/profiles.json (also `../shared/data/nab/profiles.json`).
NAB_PROFILES = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}


@dataclass(frozen=True)
class FileLayout:
    """Where each row of one file stands for scoring: its unweighted position score and its window.

    `window` is -1 outside every window, else the window's index in the file; `scored` is False in the
    probationary period. `n_windows` counts the file's labelled windows (scored or not).
    """

    name: str
    unweighted: np.ndarray
    window: np.ndarray
    scored: np.ndarray
    n_windows: int

    @property
    def category(self) -> str:
        return self.name.split("/")[0]


def load_profiles(path: str | Path) -> dict[str, Profile]:
    """NAB's profiles.json -> {profile name: Profile}."""
    raw = json.loads(Path(path).read_text())
    return {
        name: Profile(
            tp=float(p["CostMatrix"]["tpWeight"]),
            fp=float(p["CostMatrix"]["fpWeight"]),
            fn=float(p["CostMatrix"]["fnWeight"]),
        )
        for name, p in raw.items()
    }


def scaled_sigmoid(position) -> np.ndarray:
    """NAB's scaled sigmoid: 2 sigmoid(-5 x) - 1, and -1 for x > 3 (far after a window)."""
    x = np.asarray(position, dtype=float)
    return np.where(x > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(x, 3.0))) - 1.0)


def file_layout(name: str, timestamps, windows: Sequence[tuple]) -> FileLayout:
    """The scoring layout of one file from its timestamps (file order) and its labelled [start, end] windows.

    As NAB, a window is entered at the row whose timestamp equals its start and left at the (first) row
    equal to its end; a window whose start is not a timestamp of the file stops the walk (NAB never
    enters it nor any later window).
    """
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps)).asi8
    n = len(ts)
    position = np.full(n, np.nan)
    window = np.full(n, -1, dtype=np.int64)
    first_of = {}
    for i, t in enumerate(ts):  # first occurrence of each timestamp, as list.index
        first_of.setdefault(t, i)
    prev_right, prev_width, cursor = None, None, 0
    for k, (start, end) in enumerate(windows):
        a = first_of.get(pd.Timestamp(start).value)
        if a is None or a < cursor:
            break
        b = first_of[pd.Timestamp(end).value]
        width = float(b - a + 1)
        _after_window(position, cursor, a, prev_right, prev_width)
        idx = np.arange(a, b + 1)
        position[a : b + 1] = -(b - idx + 1) / width
        window[a : b + 1] = k
        prev_right, prev_width, cursor = b, width, b + 1
    _after_window(position, cursor, n, prev_right, prev_width)
    unweighted = scaled_sigmoid(position)
    unweighted[np.isinf(position)] = -1.0
    scored = np.arange(n) >= sources.nab_probationary_rows(n)
    return FileLayout(name, unweighted, window, scored, n_windows=len(windows))


def _after_window(position: np.ndarray, lo: int, hi: int, prev_right, prev_width) -> None:
    """Positions of the out-of-window rows lo..hi-1 relative to the window that ended last (in place)."""
    if hi <= lo:
        return
    if prev_right is None:
        position[lo:hi] = np.inf  # no window before: a plain false positive (-1)
    else:
        with np.errstate(divide="ignore"):
            position[lo:hi] = np.abs(prev_right - np.arange(lo, hi)) / (prev_width - 1.0)


def corpus_layouts(nab_dir: str | Path) -> dict[str, FileLayout]:
    """Layouts of every `data/<category>/<file>.csv` of a NAB-layout dir, keyed `<category>/<file>.csv`."""
    root = Path(nab_dir)
    labels = json.loads((root / sources.NAB_LABELS_FILE).read_text())
    out = {}
    for f in sorted((root / "data").glob("*/*.csv")):
        key = f"{f.parent.name}/{f.name}"
        ts = pd.read_csv(f, usecols=["timestamp"])["timestamp"]
        out[key] = file_layout(key, ts, [tuple(w) for w in labels.get(key, [])])
    return out


def read_published_scores(path: str | Path) -> dict[str, np.ndarray]:
    """A `file,timestamp,anomaly_score` csv(.gz) of a detector's scores -> {file: scores in file order}."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        frame = pd.read_csv(fh, usecols=["file", "anomaly_score"])
    return {k: g["anomaly_score"].to_numpy(dtype=float) for k, g in frame.groupby("file", sort=True)}


# --- the sweep ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusRows:
    """The scored rows of a corpus, concatenated: score, unweighted weight, global window id, file index."""

    score: np.ndarray
    unweighted: np.ndarray
    window: np.ndarray  # -1 outside windows, else a corpus-wide id
    file: np.ndarray
    names: list[str]
    n_labelled: int


def corpus_rows(scores: Mapping[str, np.ndarray], layouts: Mapping[str, FileLayout]) -> CorpusRows:
    missing = sorted(set(layouts) - set(scores))
    if missing:
        raise ValueError(f"no scores for {len(missing)} file(s) of the corpus, e.g. {missing[0]!r}")
    parts, offset = [], 0
    names = sorted(layouts)
    for i, name in enumerate(names):
        lay, s = layouts[name], np.asarray(scores[name], dtype=float)
        if len(s) != len(lay.unweighted):
            raise ValueError(f"{name}: {len(s)} scores for {len(lay.unweighted)} rows")
        keep = lay.scored
        win = np.where(lay.window[keep] >= 0, lay.window[keep] + offset, -1)
        parts.append((np.nan_to_num(s[keep], nan=0.0), lay.unweighted[keep], win, np.full(keep.sum(), i)))
        offset += max(lay.n_windows, 1)
    cat = [np.concatenate(p) for p in zip(*parts, strict=True)]
    return CorpusRows(*cat, names=names, n_labelled=sum(layouts[k].n_windows for k in names))


def _deltas(rows: CorpusRows, profile: Profile, order: np.ndarray) -> np.ndarray:
    """Per row (in `order`, scores descending): how much the total changes when that row becomes a detection."""
    inside = rows.window[order] >= 0
    weight = np.where(
        inside, rows.unweighted[order] * profile.tp / MAX_TP, rows.unweighted[order] * profile.fp
    )
    delta = np.where(inside, 0.0, weight)
    # inside a window only a new best (earliest) detection changes the total: a running max per window
    idx = np.flatnonzero(inside)
    win = rows.window[order][idx]
    regroup = np.argsort(win, kind="stable")  # by window, score order kept within each
    w, g = weight[idx][regroup], win[regroup]
    best = pd.Series(w).groupby(g).cummax().to_numpy()
    prev = np.empty_like(best)
    prev[1:] = best[:-1]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    prev[first] = -profile.fn
    delta[idx[regroup]] = best - prev
    return delta


def sweep(rows: CorpusRows, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds descending, starting at NEVER; raw corpus score at each), as NAB's sweeper lists them."""
    order = np.argsort(-rows.score, kind="stable")
    s = rows.score[order]
    n_scored_windows = len(np.unique(rows.window[rows.window >= 0]))
    base = -profile.fn * n_scored_windows
    total = base + np.cumsum(_deltas(rows, profile, order))
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True)) if len(s) else np.array([], dtype=int)
    return np.concatenate([[NEVER], s[ends]]), np.concatenate([[base], total[ends]])


def raw_scores_at(rows: CorpusRows, profile: Profile, threshold: float) -> np.ndarray:
    """Raw NAB score of each file (in `rows.names` order) at one threshold."""
    hit = rows.score >= threshold
    inside = rows.window >= 0
    out = np.zeros(len(rows.names))
    fp = hit & ~inside
    np.add.at(out, rows.file[fp], rows.unweighted[fp] * profile.fp)
    wins = np.unique(rows.window[inside])
    value = pd.Series(-profile.fn, index=wins)
    det = hit & inside
    best = pd.Series(rows.unweighted[det] * profile.tp / MAX_TP).groupby(rows.window[det]).max()
    value.loc[best.index] = best.to_numpy()
    file_of = pd.Series(rows.file[inside]).groupby(rows.window[inside]).first()
    np.add.at(out, file_of.loc[wins].to_numpy(), value.to_numpy())
    return out


def normalise(raw: float, null: float, perfect: float) -> float | None:
    """100 (raw - null) / (perfect - null); None when the two references coincide (nothing to detect)."""
    return None if perfect == null else 100.0 * (raw - null) / (perfect - null)


def score_corpus(
    scores: Mapping[str, np.ndarray],
    layouts: Mapping[str, FileLayout],
    profiles: Mapping[str, Profile] | None = None,
) -> dict:
    """NAB's final scores of one detector on a corpus: per profile the best corpus threshold and its score.

    Returns {profile: score}, `thresholds` {profile: threshold}, `raw` {profile: raw total}, and
    `categories` / `files`: the standard profile's normalised score per category / file at the
    standard threshold (None where there is no window to detect).
    """
    profiles = dict(profiles or NAB_PROFILES)
    rows = corpus_rows(scores, layouts)
    out: dict = {"thresholds": {}, "raw": {}}
    for name, prof in profiles.items():
        thresholds, totals = sweep(rows, prof)
        best = int(np.argmax(totals))  # the first (highest) threshold among equal totals, as NAB's sort
        null = -prof.fn * len(np.unique(rows.window[rows.window >= 0]))
        out[name] = normalise(float(totals[best]), null, prof.tp * rows.n_labelled)
        out["thresholds"][name] = float(thresholds[best])
        out["raw"][name] = float(totals[best])
    std_name = "standard" if "standard" in profiles else next(iter(profiles))
    out.update(breakdown(rows, layouts, profiles[std_name], out["thresholds"][std_name]))
    return out


def breakdown(
    rows: CorpusRows, layouts: Mapping[str, FileLayout], profile: Profile, threshold: float
) -> dict:
    """Normalised score per category and per file at one threshold (each against its own null and perfect)."""
    raw = pd.Series(raw_scores_at(rows, profile, threshold), index=rows.names)
    scored_windows = pd.Series(0, index=rows.names)
    counts = pd.Series(rows.window[rows.window >= 0]).groupby(rows.file[rows.window >= 0]).nunique()
    scored_windows.iloc[counts.index.to_numpy()] = counts.to_numpy()
    labelled = pd.Series({k: layouts[k].n_windows for k in rows.names})
    frame = pd.DataFrame({"raw": raw, "scored": scored_windows, "labelled": labelled})
    frame["category"] = [layouts[k].category for k in rows.names]

    def norm(g: pd.DataFrame) -> float | None:
        s = normalise(g["raw"].sum(), -profile.fn * g["scored"].sum(), profile.tp * g["labelled"].sum())
        return None if s is None else round(float(s), 2)

    cats = {c: norm(g) for c, g in frame.groupby("category", sort=True)}
    files = {k: norm(frame.loc[[k]]) for k in rows.names}
    fp_cost = frame.groupby("category")["raw"].sum().where(frame.groupby("category")["labelled"].sum() == 0)
    return {
        "categories": cats,
        "files": files,
        "no_window_cost": {k: round(float(v), 3) for k, v in fp_cost.dropna().items()},
    }
