"""The NAB ablation: the detector's levers switched on one at a time, each scored by NAB's own scorer.

`ABLATION` lists cumulative configurations (param overrides of the `anomaly:` section, NAB overrides
included); `run_ablation` scores each on a NAB-layout corpus and returns one row per configuration
(standard, reward_low_FP_rate, reward_low_FN_rate, seconds). `python -m ml.sensors.nab_ablation
--data-dir DIR` writes it to `metrics/nab_ablation.json`, which notebook 02 shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

from ml import config
from ml.sensors import nab, nab_score

FINAL = "+ novelty rule (final)"
# Cumulative: each row adds one lever to the row above; the last is the shipped configuration.
ABLATION: dict[str, dict] = {
    "forest, ECDF score (before #13)": {
        "calibration": "ecdf",
        "hold": 0,
        "novelty_margin": None,
        "nab": {"n_estimators": 100, "calibration_fraction": 0.3},
    },
    "+ forest learns the whole probation": {"calibration": "ecdf", "hold": 0, "novelty_margin": None},
    "+ anomaly likelihood": {"hold": 0, "novelty_margin": None},
    "+ hold after a peak": {"novelty_margin": None},
    FINAL: {},
    "novelty rule + hold, no forest": {"calibration": "off"},
}


def run_ablation(data_dir: Path, params: dict, *, n_jobs: int = 2, names=None) -> pd.DataFrame:
    """NAB scores of every configuration in `ABLATION` (or those in `names`) on the corpus at `data_dir`."""
    rows = []
    for name, overrides in ABLATION.items():
        if names is not None and name not in names:
            continue
        merged = {**params, **overrides}
        merged["nab"] = {**params.get("nab", {}), **overrides.get("nab", {})}
        with tempfile.TemporaryDirectory() as out:
            m = nab.run_nab(data_dir, Path(out), merged, n_jobs=n_jobs, score=True)
        rows.append({"configuration": name, **{p: m[p] for p in nab_score.PROFILES}, "seconds": m["seconds"]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """CLI: run the NAB ablation and write it as JSON records."""
    ap = argparse.ArgumentParser(prog="python -m ml.sensors.nab_ablation", description=main.__doc__)
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, default=Path("metrics/nab_ablation.json"))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    table = run_ablation(args.data_dir, config.load_params(args.params)["anomaly"], n_jobs=args.jobs)
    print(table.to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table.to_dict(orient="records"), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
