"""Reference datasets saved with each model at training time: the sample `/check_drift` and the monitoring compare with.

A model's reference is a fixed-size, seeded (and optionally stratified) sample of the raw records it was
trained on, written inside its MLflow model directory (`reference/`: parquet + JSON with rows, dtypes and
sha256), so it is versioned, exported and carried into a Bento with the model itself. Kept apart from
the drift modules so training stages depend on this small module only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.data.schemas import OPEN_TIME_COLUMNS

REFERENCE_DIR = "reference"  # inside a model directory
REFERENCE_FILE = "reference.parquet"
REFERENCE_META = "reference.json"

# the raw columns a domain's reference keeps (what /check_drift receives), and the column it is stratified by
DOMAINS: dict[str, tuple[tuple[str, ...] | None, str | None]] = {
    "sensors": (("sensor_id", "timestamp", "value"), "sensor_id"),
    "incidents": (None, "assignment_group"),  # None: ml.data.schemas.OPEN_TIME_COLUMNS
}


def training_reference(
    records: pd.DataFrame, domain: str, cfg: Mapping[str, Any], outputs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The reference to save with a model trained on `records`: `cfg["reference_rows"]` raw rows (seed
    `cfg["seed"]`, params.yaml `monitoring`), stratified by sensor (sensors) or assignment group (incidents).

    `outputs` (indexed like `records`): the model's own answers on those rows in training, kept beside each
    sampled row, where the model cannot score a sample of single rows later (the anomaly detector's
    scores need the contiguous series); the monitoring job compares served outputs with them."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {sorted(DOMAINS)}, got {domain!r}")
    columns, stratify = DOMAINS[domain]
    if columns is None:
        columns = tuple(OPEN_TIME_COLUMNS)
    missing = [c for c in columns if c not in records.columns]
    if missing:
        raise ValueError(f"{domain} training records lack column(s) {missing} needed for the reference")
    frame = records[list(columns)]
    if outputs is not None:
        clash = [c for c in outputs.columns if c in frame.columns]
        if clash:
            raise ValueError(f"{domain} reference: output column(s) {clash} are record columns")
        if not outputs.index.equals(records.index):
            raise ValueError(f"{domain} reference: outputs are not indexed like records")
        frame = frame.join(outputs)
    return reference_sample(frame, n=int(cfg["reference_rows"]), seed=int(cfg["seed"]), stratify=stratify)


def reference_sample(
    frame: pd.DataFrame, n: int = 5000, seed: int = 0, stratify: str | None = None
) -> pd.DataFrame:
    """A fixed-size, seeded sample of `frame` (all of it when smaller), in the frame's own row order.

    With `stratify`, each value of that column (missing included) keeps its share of rows: proportional
    allocation, remainders to the largest fractions, ties broken by the value's order.
    """
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if stratify is not None and stratify not in frame.columns:
        raise ValueError(f"stratify column {stratify!r} is not in the frame (columns: {list(frame.columns)})")
    if len(frame) <= n:
        return frame.reset_index(drop=True).copy()
    rng = np.random.default_rng(seed)
    if stratify is None:
        pick = np.sort(rng.choice(len(frame), size=n, replace=False))
        return frame.iloc[pick].reset_index(drop=True)
    codes, _ = pd.factorize(frame[stratify], use_na_sentinel=False, sort=True)
    sizes = np.bincount(codes)
    quota = sizes * n / len(frame)
    take = np.floor(quota).astype(int)
    rest = n - take.sum()
    order = np.lexsort((np.arange(len(sizes)), -(quota - take)))  # largest remainder first, stable
    take[order[:rest]] += 1
    positions = []
    for code, k in enumerate(take):
        members = np.flatnonzero(codes == code)
        if k:
            positions.append(rng.choice(members, size=int(k), replace=False))
    pick = np.sort(np.concatenate(positions))
    return frame.iloc[pick].reset_index(drop=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_reference(
    frame: pd.DataFrame, directory: str | os.PathLike, *, meta: dict[str, Any] | None = None
) -> Path:
    """Write a reference dataset as `reference.parquet` plus `reference.json` (rows, columns, dtypes, sha256).

    The directory can then be logged with the model (an extra MLflow artifact). Returns the directory.
    """
    if frame.empty:
        raise ValueError("refusing to save an empty reference dataset")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    data = out / REFERENCE_FILE
    tmp = out / f".{REFERENCE_FILE}.tmp"
    frame.reset_index(drop=True).to_parquet(tmp, index=False)
    os.replace(tmp, data)
    info = {
        "rows": int(len(frame)),
        "columns": [str(c) for c in frame.columns],
        "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
        "file": REFERENCE_FILE,
        "sha256": _sha256(data),
        **(meta or {}),
    }
    (out / REFERENCE_META).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return out


def load_reference(directory: str | os.PathLike) -> pd.DataFrame:
    """Read a reference saved by `save_reference`, checking its sha256 and row count against the JSON."""
    src = Path(directory)
    meta_path = src / REFERENCE_META
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: no reference metadata (was save_reference run for {src}?)")
    meta = json.loads(meta_path.read_text())
    name = meta.get("file", REFERENCE_FILE)
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"{meta_path}: file {name!r} must be a plain file name inside {src}")
    data = src / name
    if not data.exists():
        raise FileNotFoundError(f"{data}: reference data file is missing")
    digest = _sha256(data)
    if digest != meta.get("sha256"):
        raise ValueError(
            f"{data}: sha256 {digest[:12]}... does not match {str(meta.get('sha256'))[:12]}... in {meta_path}"
        )
    frame = pd.read_parquet(data)
    if len(frame) != meta.get("rows"):
        raise ValueError(f"{data}: {len(frame)} rows, but {meta_path} says {meta.get('rows')}")
    return frame


def reference_info(directory: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a saved reference (rows, columns, dtypes, sha256, anything passed as meta)."""
    return json.loads((Path(directory) / REFERENCE_META).read_text())
