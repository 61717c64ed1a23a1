"""Archive forecasts for sources with recent history: the batch scorer and the function `/forecast_archive` calls.

`forecast_latest(model, daily)` forecasts each source from the end of its last day (the batch scores);
`forecast_archive(model, records)` validates request records first and returns the same numbers as JSON-ready
dicts, so the endpoint's answer equals the batch prediction for the same history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ml.data import schemas
from ml.data.landing import RowErrors, coerce_columns
from ml.features import ARCHIVE_INPUT_COLUMNS

REQUEST_TABLE = "archive_activity"  # request records are typed and checked as this silver table's rows


class ArchiveRequestError(ValueError):
    """Request records that cannot be forecast: names the field, and the record (0-based) when there is one."""

    def __init__(self, field: str, reason: str, record: int | None = None):
        self.field, self.reason, self.record = field, reason, record
        where = f" (record {record})" if record is not None else ""
        super().__init__(f"{field}: {reason}{where}")


def forecast_latest(model, daily: pd.DataFrame) -> pd.DataFrame:
    """One row per source: its last day as the origin, every output's forecast and interval (`model.predict`
    columns). The history before the last day is what the features read."""
    if daily.empty:
        raise ValueError("no records to forecast from")
    pred = model.predict(daily)
    dates = pd.to_datetime(daily["date"]).dt.normalize()
    last = dates.groupby(daily["source_id"]).transform("max")
    rows = daily.index[(dates == last).to_numpy()]
    out = pred.loc[rows].copy()
    out.insert(0, "origin", dates.loc[rows].to_numpy())
    out.insert(0, "source_id", daily.loc[rows, "source_id"].to_numpy())
    return out.sort_values("source_id", kind="stable").reset_index(drop=True)


def validate_history(
    records: Iterable[Mapping[str, Any]] | pd.DataFrame, min_history_days: int
) -> pd.DataFrame:
    """Request records -> typed daily records, or ArchiveRequestError naming the first bad field.

    The input contract: a list of objects, one per source and day, each with `source_id` (text), `date`
    (an ISO day, `YYYY-MM-DD`), `total_files` (whole number >= 0), `avg_file_size_mb` (>= 0), the five type
    shares `share_documents`, `share_images`, `share_video`, `share_email`, `share_other` (each in [0, 1],
    summing to 1 ± 0.01), `archive_frequency_per_day` (>= 0), `retention_days` (whole number > 0),
    `archived_gb` and `saved_gb` (>= 0, saved <= archived); `source_type`, `files_archived` and `source` are
    optional. One record per source and day; every source needs `min_history_days` days from its first to
    its last record (a day without a record archived nothing). Other fields are refused by name.
    """
    frame = (
        pd.DataFrame(list(records))
        if not isinstance(records, pd.DataFrame)
        else records.reset_index(drop=True)
    )
    if frame.empty:
        raise ArchiveRequestError("records", "no records given")
    known = set(schemas.ARCHIVE_COLUMNS)
    unknown = [c for c in frame.columns if c not in known]
    if unknown:
        raise ArchiveRequestError(str(unknown[0]), f"unknown field; known: {schemas.ARCHIVE_COLUMNS}")
    missing = [c for c in ARCHIVE_INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ArchiveRequestError(missing[0], "required field missing")
    errors = RowErrors()
    raw = frame.astype(object).where(frame.notna(), None)
    typed = coerce_columns(raw, REQUEST_TABLE, "<request>", errors)
    absent = [c for c in ARCHIVE_INPUT_COLUMNS if c not in ("date",) and typed[c].isna().any()]
    if errors.problems:
        row, (column, reason) = min(errors.problems.items())
        raise ArchiveRequestError(column, reason, row)
    if absent:
        raise ArchiveRequestError(absent[0], "missing value", int(np.flatnonzero(typed[absent[0]].isna())[0]))
    try:
        schemas.archive_activity.validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        case = exc.failure_cases.dropna(subset=["index"]).sort_values("index").iloc[0]
        head = str(case["check"]).split(":")[0]  # a row-level rule names its column before the colon
        column = head if head in typed.columns else str(case["column"])
        raise ArchiveRequestError(column, f"failed check {case['check']}", int(case["index"])) from exc
    span = typed.groupby("source_id")["date"].agg(lambda d: (d.max() - d.min()).days + 1)
    short = span[span < min_history_days]
    if len(short):
        raise ArchiveRequestError(
            "date",
            f"source {short.index[0]!r} has {int(short.iloc[0])} days of history; need {min_history_days}",
        )
    return typed


def forecast_archive(model, records: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    """What `/forecast_archive` answers: per source, its origin (last day) and both targets for every horizon
    with their intervals, after `validate_history` (whose docstring is the input contract). Equals
    `forecast_latest` on the same records. Raises ArchiveRequestError (a 422 naming the field)."""
    daily = validate_history(records, model.min_history_days())
    out = forecast_latest(model, daily)
    out["origin"] = out["origin"].dt.strftime("%Y-%m-%d")
    return [
        {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in r.items()}
        for r in out.to_dict("records")
    ]
