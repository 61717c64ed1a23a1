"""Where the savings come from: the share of an archived GB that dedup + compression remove, per file type.

Estimated from the daily records alone: `saved_gb` regressed on `archived_gb x share_<type>` with non-negative
least squares and no intercept, so each coefficient is a type's savings ratio. On synthetic data the generator's
ratios can be put next to the estimate; on a real log it is the only view of them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from ml.data.schemas import ARCHIVE_SHARE_COLUMNS

FILE_TYPES = [c.removeprefix("share_") for c in ARCHIVE_SHARE_COLUMNS]


def savings_by_type(daily: pd.DataFrame, truth: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per file type: GB archived, estimated savings ratio (capped at 1), GB saved by that ratio,
    and `true_ratio` when `truth` ({type: ratio}) is given."""
    rows = daily[daily["archived_gb"] > 0]
    if rows.empty:
        raise ValueError("no day archived anything: savings by type cannot be estimated")
    volume = rows[ARCHIVE_SHARE_COLUMNS].to_numpy(float) * rows["archived_gb"].to_numpy(float)[:, None]
    scale = np.sqrt(rows["archived_gb"].to_numpy(float))[:, None]  # relative errors: big days do not dominate
    ratio, _ = nnls(volume / scale, rows["saved_gb"].to_numpy(float) / scale[:, 0])
    ratio = np.minimum(ratio, 1.0)
    out = pd.DataFrame(
        {
            "file_type": FILE_TYPES,
            "archived_gb": volume.sum(axis=0),
            "savings_ratio": ratio,
            "saved_gb": volume.sum(axis=0) * ratio,
        }
    )
    if truth is not None:
        out["true_ratio"] = [float(truth[t]) for t in FILE_TYPES]
    return out
