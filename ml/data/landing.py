"""The landing zone: how a source names its dated batch files, the declared type of every column, and reading
a batch (or every batch of a domain) as a typed frame. Ingestion, monitoring and the quality gate read it here.

A batch file is `<domain>/<prefix><as_of as YYYYmmddTHHMM><suffix>`, e.g. `sensors/readings_20240108T0000.csv`;
the generator's `manifest.json` lists them with their exact `as_of`.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml.data import schemas

# domain -> the silver table its batches feed
TABLES = {"sensors": "sensor_readings", "incidents": "incidents", "archive": "archive_activity"}
BATCH_PREFIX = {"sensors": "readings_", "incidents": "incidents_", "archive": "archive_"}
# the format the source sends each domain in
BATCH_SUFFIX = {"sensors": ".csv", "incidents": ".json", "archive": ".csv"}
NAME_TIME_FORMAT = "%Y%m%dT%H%M"  # the as_of in a batch file name
LABELS_FILE = "anomaly_windows.csv"  # the sensors' labelled anomaly windows, next to their batches
RECORD_SUFFIXES = (".parquet", ".pq", ".csv", ".json")  # the files `read_records` reads


class DataValidationError(ValueError):
    """A file that cannot be loaded: names the file, the column and up to 5 offending rows."""

    def __init__(self, file: str | os.PathLike, reason: str, column: str | None = None, rows=()):
        self.file, self.reason, self.column = str(file), reason, column
        self.rows = [int(r) for r in list(rows)[:5]]
        where = f", column '{column}'" if column else ""
        at = f", rows {self.rows}" if self.rows else ""
        super().__init__(f"{self.file}{where}: {reason}{at}")


# --- column types -------------------------------------------------------------------------------
# The declared type of every landing column; parsing failures become row-level errors.
COLUMN_TYPES: dict[str, dict[str, str]] = {
    "sensor_readings": {
        "sensor_id": "str",
        "kind": "str",
        "unit": "str",
        "timestamp": "datetime",
        "value": "float",
    },
    "anomaly_windows": {"sensor_id": "str", "start": "datetime", "end": "datetime", "anomaly_kind": "str"},
    "incidents": {
        "number": "str",
        "opened_at": "datetime",
        "sys_updated_at": "datetime",
        "state": "str",
        "caller_id": "str",
        "contact_type": "str",
        "location": "str",
        "impact": "int",
        "urgency": "int",
        "priority": "int",
        "category": "str",
        "subcategory": "str",
        "cmdb_ci": "str",
        "owning_team": "str",
        "assignment_group": "str",
        "short_description": "str",
        "description": "str",
        "sla_target_hours": "float",
        "reassignment_count": "int",
        "resolved_at": "datetime",
        "closed_at": "datetime",
        "made_sla": "bool",
        "root_cause": "str",
        "source": "str",
    },
    "archive_activity": {
        "source_id": "str",
        "source_type": "str",
        "date": "datetime",
        "total_files": "int",
        "avg_file_size_mb": "float",
        **{c: "float" for c in schemas.ARCHIVE_SHARE_COLUMNS},
        "archive_frequency_per_day": "float",
        "retention_days": "int",
        "files_archived": "int",
        "archived_gb": "float",
        "saved_gb": "float",
        "source": "str",
    },
}
# Columns a file may omit (filled with missing); every other declared column is required.
OPTIONAL_COLUMNS = {
    "sensor_readings": {"unit"},
    "anomaly_windows": set(),
    "incidents": {"root_cause", "owning_team", "short_description", "description", "source", "location"},
    "archive_activity": {"source_type", "files_archived", "source"},
}
# What identifies a record: a re-sent record has the same key.
KEYS = {
    "sensor_readings": schemas.READING_KEY,
    "anomaly_windows": ["sensor_id", "start", "end"],
    "incidents": [schemas.INCIDENT_KEY],
    "archive_activity": schemas.ARCHIVE_KEY,
}


@dataclass
class RowErrors:
    """Row-level problems of one file: received row position (also the frame's index label) -> (column, reason)."""

    problems: dict[int, tuple[str, str]] = field(default_factory=dict)

    def add(self, positions: Iterable[int], column: str, reason: str) -> None:
        for p in positions:
            self.problems.setdefault(int(p), (column, reason))


def coerce_columns(raw: pd.DataFrame, table: str, file: str, errors: RowErrors) -> pd.DataFrame:
    """Parse each declared column to its type; values that do not parse are recorded as row errors."""
    types = COLUMN_TYPES[table]
    missing = [c for c in types if c not in raw.columns and c not in OPTIONAL_COLUMNS[table]]
    if missing:
        raise DataValidationError(
            file, f"missing required column(s) {missing}; found {list(raw.columns)}", column=missing[0]
        )
    out = pd.DataFrame(index=raw.index)
    for col, kind in types.items():
        s = raw[col] if col in raw.columns else pd.Series([None] * len(raw), index=raw.index, dtype=object)
        present = s.notna() & (s.astype(str).str.strip() != "")
        if kind == "str":
            out[col] = s.where(present, None).map(lambda v: None if v is None else str(v)).astype(object)
            continue
        if kind == "float":
            parsed = pd.to_numeric(s.where(present), errors="coerce").astype(float)
            reason = "not a number"
        elif kind == "int":
            num = pd.to_numeric(s.where(present), errors="coerce")
            whole = num.isna() | (num == np.round(num))
            num = num.where(whole)
            parsed = num.astype("Int64")
            reason = "not a whole number"
        elif kind == "datetime":
            parsed = pd.to_datetime(s.where(present), errors="coerce", format="ISO8601")
            if getattr(parsed.dt, "tz", None) is not None:
                parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            parsed = parsed.astype("datetime64[ns]")
            reason = "unparseable date"
        elif kind == "bool":
            text = s.where(present).map(lambda v: str(v).strip().lower() if v is not None else v)
            parsed = text.map({"true": True, "false": False, "1": True, "0": False}).astype("boolean")
            reason = "not true/false"
        else:  # pragma: no cover - declared types are fixed above
            raise AssertionError(kind)
        bad = present & parsed.isna()
        errors.add(np.flatnonzero(bad.to_numpy()), col, f"{reason}: {col}")
        out[col] = parsed
    return out


# --- batch file names ---------------------------------------------------------------------------


def batch_time(path: str | os.PathLike) -> pd.Timestamp:
    """The as_of a batch file's name carries (`readings_20240108T0000.csv` -> 2024-01-08 00:00)."""
    return pd.Timestamp(pd.to_datetime(Path(path).stem.split("_")[-1], format=NAME_TIME_FORMAT))


def batch_files(landing: str | os.PathLike, domain: str) -> list[Path]:
    """A domain's batch files in the landing zone, oldest first (the names' fixed-width times sort by time)."""
    folder = Path(landing) / domain
    return sorted(folder.glob(f"{BATCH_PREFIX[domain]}*{BATCH_SUFFIX[domain]}"))


def dated_batches(landing: str | os.PathLike, domain: str) -> list[tuple[pd.Timestamp, Path]]:
    """A domain's batches, oldest first, as (as_of, path): from the manifest, else from the file names."""
    root = Path(landing)
    manifest = root / "manifest.json"
    prefix = f"{domain}/{BATCH_PREFIX[domain]}"
    if manifest.exists():
        files = json.loads(manifest.read_text())["files"]
        out = [(pd.Timestamp(f["as_of"]), root / f["path"]) for f in files if f["path"].startswith(prefix)]
    else:
        out = [(batch_time(p), p) for p in batch_files(root, domain)]
    if not out:
        raise FileNotFoundError(f"{root}: no {domain} batches ({prefix}*)")
    return sorted(out, key=lambda t: t[0])


def ingest_files(landing: str | os.PathLike, domain: str) -> list[tuple[str, Path]]:
    """A domain's landing files with the silver table each feeds, in the order ingestion loads them."""
    out = [(TABLES[domain], p) for p in batch_files(landing, domain)]
    labels = Path(landing) / domain / LABELS_FILE
    if domain == "sensors" and labels.exists():
        out.append(("anomaly_windows", labels))
    return out


def newest_file(path: str | os.PathLike, domain: str | None = None) -> Path:
    """A file as given, or in a directory the newest batch file (of `domain`, else of any), else its last
    records file by name. Raises FileNotFoundError when the directory has no records file."""
    path = Path(path)
    if not path.is_dir():
        return path
    files = sorted(
        p for p in path.iterdir() if p.suffix.lower() in RECORD_SUFFIXES and not p.name.startswith(".")
    )
    prefixes = [BATCH_PREFIX[domain]] if domain else list(BATCH_PREFIX.values())
    batches = [p for p in files if p.name.startswith(tuple(prefixes))]
    chosen = batches or files
    if not chosen:
        raise FileNotFoundError(f"{path}: directory has no .parquet/.csv/.json file")
    return chosen[-1]


# --- reading ------------------------------------------------------------------------------------


def _utf8(data: bytes, file: str) -> str:
    """The bytes as text, or a DataValidationError naming the line of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataValidationError(
            file, f"not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line}; re-export as UTF-8"
        ) from exc


def read_received(data: bytes, file: str) -> pd.DataFrame:
    """Parse received bytes (CSV or JSON records) into a frame of strings, refusing empty/mis-delimited files,
    text that is not UTF-8 and JSON nested too deeply to parse."""
    if not data.strip():
        raise DataValidationError(file, "empty file")
    text = _utf8(data, file)
    if file.endswith(".json"):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataValidationError(file, f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        except RecursionError as exc:
            raise DataValidationError(file, "JSON nested too deeply to parse") from exc
        if isinstance(records, dict):
            records = records.get("records", records.get("result"))
        if not isinstance(records, list):
            raise DataValidationError(file, "expected a JSON array of records")
        return pd.DataFrame.from_records(records, coerce_float=False).astype(object)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        raise DataValidationError(file, f"not a readable CSV: {exc}") from exc
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in header:
                raise DataValidationError(
                    file, f"wrong delimiter: header is {name}-separated, expected commas"
                )
    return frame


def type_records(
    raw: pd.DataFrame, table: str, file: str = "<records>"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Received string records typed like ingestion types them -> (typed frame, unparseable count per column).

    A missing required column raises `DataValidationError` (a ValueError) naming it; columns the table does
    not declare are kept as received.
    """
    errors = RowErrors()
    typed = coerce_columns(raw, table, file, errors)
    bad: dict[str, int] = {}
    for column, _reason in errors.problems.values():
        bad[column] = bad.get(column, 0) + 1
    extra = [c for c in raw.columns if c not in typed.columns]
    return (pd.concat([typed, raw[extra]], axis=1) if extra else typed), bad


def read_records(path: str | os.PathLike, table: str | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """A records file (parquet, CSV or JSON records) as a typed frame, plus unparseable values per column.

    Parquet is read as stored. CSV/JSON are typed like ingestion does when `table` is a silver table name;
    a value that does not parse becomes missing and is counted. Raises FileNotFoundError / ValueError
    naming the file when it cannot be read.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(p), {}
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise ValueError(f"{p}: not a readable parquet file ({exc.__class__.__name__}: {exc})") from exc
    if suffix not in (".csv", ".json"):
        raise ValueError(f"{p}: unsupported file type {suffix!r}; expected .parquet, .csv or .json")
    raw = read_received(p.read_bytes(), str(p))
    if table is None:
        return raw, {}
    return type_records(raw, table, str(p))


def read_batches(paths: Iterable[str | os.PathLike], table: str) -> pd.DataFrame:
    """Batch files of one table, oldest first, typed and de-duplicated: a re-sent reading or a later version
    of a ticket replaces the earlier one, as the upsert into silver does."""
    frames = [read_records(path, table)[0].assign(_batch=i) for i, path in enumerate(paths)]
    if not frames:
        raise FileNotFoundError("no batch files given")
    frame = pd.concat(frames, ignore_index=True).sort_values("_batch", kind="stable")
    return frame.drop_duplicates(subset=KEYS[table], keep="last").drop(columns="_batch")


def read_landing(landing: str | os.PathLike, domain: str) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    """Every landing batch of a domain, typed and de-duplicated (a re-sent reading or a later version of a
    ticket replaces the earlier one), and the batches' as_of times."""
    table = TABLES[domain]
    batches = dated_batches(landing, domain)
    frame = read_batches([path for _, path in batches], table)
    order = ["opened_at", "number"] if domain == "incidents" else KEYS[table]
    return frame.sort_values(order, kind="stable").reset_index(drop=True), [a for a, _ in batches]
