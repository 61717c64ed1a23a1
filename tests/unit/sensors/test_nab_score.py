"""NAB's own score: tiny hand-made corpora (null = 0, perfect = 100, a false positive costs, earlier is
worth more, one threshold for the corpus) and the published detectors' scores on the real corpus."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.sensors import nab_score as ns

N = 200  # rows per file: a probation of 30 rows


def layout(name="cat/a.csv", windows=((100, 119),), n=N) -> ns.FileLayout:
    ts = pd.date_range("2024-01-01", periods=n, freq="5min")
    return ns.file_layout(name, ts, [(ts[a], ts[b]) for a, b in windows])


def scores_with(n=N, **hits) -> np.ndarray:
    s = np.zeros(n)
    for i, v in hits.items():
        s[int(i[1:])] = v
    return s


def test_probation_is_min_of_15_percent_and_750():
    assert layout().scored.sum() == N - 30
    assert (~layout(n=10_000, windows=()).scored).sum() == 750


def test_null_detector_scores_0_and_perfect_detector_100():
    lay = {"cat/a.csv": layout()}
    assert ns.score_corpus({"cat/a.csv": np.zeros(N)}, lay)["standard"] == 0.0
    perfect = ns.score_corpus({"cat/a.csv": scores_with(i100=1.0)}, lay)
    assert all(perfect[p] == pytest.approx(100.0) for p in ns.PROFILES)


def test_earlier_detection_is_worth_more_and_a_false_positive_costs():
    lay = {"cat/a.csv": layout()}
    early = ns.score_corpus({"cat/a.csv": scores_with(i102=1.0)}, lay)["standard"]
    late = ns.score_corpus({"cat/a.csv": scores_with(i115=1.0)}, lay)["standard"]
    with_fp = ns.score_corpus({"cat/a.csv": scores_with(i102=1.0, i50=1.0)}, lay)["standard"]
    assert 100 > early > late > 0
    assert with_fp == pytest.approx(early - 100 * 0.11 / 2)  # fp weight 0.11; perfect - null = 1 - (-1)
    assert ns.score_corpus({"cat/a.csv": scores_with(i50=1.0)}, lay)["standard"] == 0.0  # best: never alarm


def test_a_false_positive_just_after_a_window_costs_less_and_probation_is_free():
    lay = {"cat/a.csv": layout()}
    hit = {"i100": 1.0}
    just_after = ns.score_corpus({"cat/a.csv": scores_with(i121=1.0, **hit)}, lay)["raw"]["standard"]
    far_after = ns.score_corpus({"cat/a.csv": scores_with(i190=1.0, **hit)}, lay)["raw"]["standard"]
    in_probation = ns.score_corpus({"cat/a.csv": scores_with(i10=1.0, **hit)}, lay)["raw"]["standard"]
    assert in_probation > just_after > far_after
    assert in_probation - far_after == pytest.approx(0.11)


def test_one_threshold_for_the_whole_corpus():
    lay = {"cat/a.csv": layout(), "cat/b.csv": layout("cat/b.csv")}
    # each file alone would pick its own threshold; the corpus gets the one that is best overall
    scores = {"cat/a.csv": scores_with(i100=0.9, i50=0.5), "cat/b.csv": scores_with(i100=0.4)}
    r = ns.score_corpus(scores, lay)
    assert r["thresholds"]["standard"] == 0.4 and r["categories"]["cat"] == pytest.approx(r["standard"])
    assert r["standard"] == pytest.approx(100 * (2 * ns.MAX_TP / ns.MAX_TP - 0.11 + 2) / 4)


def test_sweep_matches_a_brute_force_threshold_loop():
    rng = np.random.default_rng(0)
    lay = {"c/a.csv": layout(windows=((60, 79), (150, 169))), "c/b.csv": layout("c/b.csv")}
    scores = {k: rng.random(N).round(2) for k in lay}
    rows = ns.corpus_rows(scores, lay)
    thresholds, totals = ns.sweep(rows, ns.NAB_PROFILES["standard"])
    for t, total in zip(thresholds[1:], totals[1:], strict=True):
        assert total == pytest.approx(ns.raw_scores_at(rows, ns.NAB_PROFILES["standard"], t).sum())


def test_scores_must_cover_every_file():
    with pytest.raises(ValueError, match="no scores"):
        ns.score_corpus({}, {"cat/a.csv": layout()})


@pytest.mark.realdata
def test_reproduces_the_published_nab_scores(shared_data):
    root = shared_data / "nab"
    layouts = ns.corpus_layouts(root)
    assert len(layouts) == 58 and ns.load_profiles(root / "profiles.json") == ns.NAB_PROFILES
    published = {
        "numenta": (70.10, 63.21, 74.32),
        "randomCutForest": (51.72, 38.36, 59.75),
    }
    for name, expected in published.items():
        r = ns.score_corpus(ns.read_published_scores(root / "published_scores" / f"{name}.csv.gz"), layouts)
        got = tuple(r[p] for p in ns.PROFILES)
        assert got == pytest.approx(expected, abs=0.05), name
