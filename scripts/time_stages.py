"""Time every DVC stage from scratch, in pipeline order, and print seconds per stage (the speed budget)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import yaml

from ml.config import ROOT


def main() -> int:
    stages = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    timings = {}
    for stage in stages:
        t0 = time.perf_counter()
        subprocess.run(
            ["dvc", "repro", "--force", "--single-item", stage],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        timings[stage] = round(time.perf_counter() - t0, 1)
        print(f"  {stage:<12} {timings[stage]:>7.1f} s", flush=True)
    print(f"  {'total':<12} {sum(timings.values()):>7.1f} s")
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "stage_timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
