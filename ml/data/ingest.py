"""Medallion ingestion: bronze keeps each batch as received, silver holds typed, validated, upserted tables.

Bronze is append-only (a batch file is stored once under its content hash, never rewritten). Silver is
rebuilt by upserting each new batch into the previous table by key, the latest `sys_updated_at` (or the
later batch) winning, so re-ingesting a batch changes nothing. Rows that fail row-level checks go to a
quarantine table with the reason; a file whose structure is wrong (missing column, wrong delimiter,
empty, mostly unparseable) is refused whole with a message naming the file, the column and rows.
Every write is atomic (temp file + rename, then the folder is synced): a crash mid-ingest leaves the
previous silver intact. One batch at a time: `ingest_batch` holds a file lock on the silver folder from
reading the ledger to writing it, so two ingests at once cannot both merge into the same old silver.
Reading and typing a landing file, and which files a domain has, is `ml.data.landing`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
from filelock import FileLock

from ml.config import load_params, resolve
from ml.data import schemas, sources
from ml.data.landing import (
    COLUMN_TYPES,
    KEYS,
    DataValidationError,
    RowErrors,
    coerce_columns,
    ingest_files,
    read_received,
)

SILVER_TABLES = {
    "sensor_readings": "sensor_readings.parquet",
    "anomaly_windows": "anomaly_windows.parquet",
    "incidents": "incidents.parquet",
    "archive_activity": "archive_activity.parquet",
    "quarantine": "quarantine.parquet",
}
QUARANTINE_COLUMNS = ["table", "file", "row", "column", "reason", "record"]
LEDGER = "_batches.json"  # which batch hashes silver already holds
LOCK = ".ingest.lock"  # held by one ingest_batch at a time
COUNTS = "ingest_counts.jsonl"  # under the ingest root: one line per received file (the service's counters)
MAX_FILE_MB = 1024  # default size cap of one received file (params.yaml ingest.max_file_mb)
SCHEMAS = {
    "sensor_readings": schemas.sensor_readings,
    "anomaly_windows": schemas.anomaly_windows,
    "incidents": schemas.incidents,
    "archive_activity": schemas.archive_activity,
}
ORDER_BY = {"incidents": "sys_updated_at"}  # latest wins; other tables: the later batch wins


def _validate_rows(df: pd.DataFrame, table: str, errors: RowErrors) -> None:
    """Run the pandera schema lazily and record each failing row with the failed check."""
    schema = SCHEMAS[table]
    candidates = df.drop(index=[p for p in errors.problems if p in df.index])
    try:
        schema.validate(candidates, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        file_level = fc[fc["index"].isna()]
        if len(file_level):  # dtype / column presence problems are not row-level
            first = file_level.iloc[0]
            raise DataValidationError(
                "", f"schema check '{first['check']}' failed", column=first["column"]
            ) from exc
        for _, case in fc.iterrows():
            pos = int(case["index"])  # positions: the frame keeps the received row order as its index
            col = case["column"]
            head = str(case["check"]).split(":")[0]  # a frame-level check names its column before a colon
            value = case["failure_case"]
            if head in df.columns:  # the case may be another column's value of the failing row
                col, value = head, df.at[pos, head]
                value = value.item() if isinstance(value, np.generic) else value
            elif not isinstance(col, str):
                col = table
            errors.add([pos], col, f"{case['check']}: {col}={value!r}")


def _dedupe(df: pd.DataFrame, table: str, errors: RowErrors) -> pd.DataFrame:
    """Drop exact re-sent duplicates; quarantine rows that share a key but disagree."""
    key = KEYS[table] + ([ORDER_BY[table]] if table in ORDER_BY else [])
    ok = df.drop(index=[p for p in errors.problems if p in df.index])
    exact = ok.duplicated(keep="first")
    ok = ok[~exact]
    clash = ok.duplicated(subset=key, keep=False)
    errors.add(ok.index[clash], key[0], f"duplicate key {key} with conflicting values")
    drop = exact.index[exact]
    if table in ORDER_BY:  # several versions of one record in a batch: only the latest is current
        ok = ok[~clash].sort_values(ORDER_BY[table], kind="stable")
        drop = drop.append(ok.index[ok.duplicated(subset=KEYS[table], keep="last")])
    return df.drop(index=drop)


def clean_batch(raw: pd.DataFrame, table: str, file: str, max_bad_fraction: float = 0.05):
    """Type, validate and de-duplicate one received batch -> (good rows, quarantine rows, n exact dups).

    Raises DataValidationError when the file is structurally wrong or when more than
    `max_bad_fraction` of its rows fail (the file, not a few rows, is then the problem).
    """
    if raw.empty:
        raise DataValidationError(file, "empty file: no rows")
    raw = raw.reset_index(drop=True)
    errors = RowErrors()
    typed = coerce_columns(raw, table, file, errors)
    deduped = _dedupe(typed, table, errors)
    try:
        _validate_rows(deduped, table, errors)
    except DataValidationError as exc:
        raise DataValidationError(file, exc.reason, exc.column) from exc
    n_dups = len(typed) - len(deduped)
    bad_positions = sorted(errors.problems)
    if len(bad_positions) > max_bad_fraction * len(raw):
        column, reason = errors.problems[bad_positions[0]]
        raise DataValidationError(
            file,
            f"{len(bad_positions)} of {len(raw)} rows invalid (limit {max_bad_fraction:.0%}); first: {reason}",
            column=column,
            rows=[p + 1 for p in bad_positions],
        )
    quarantine = pd.DataFrame(
        {
            "table": table,
            "file": file,
            "row": [p + 1 for p in bad_positions],
            "column": [errors.problems[p][0] for p in bad_positions],
            "reason": [errors.problems[p][1] for p in bad_positions],
            "record": [json.dumps(raw.iloc[p].to_dict(), default=str) for p in bad_positions],
        },
        columns=QUARANTINE_COLUMNS,
    )
    good = deduped.drop(index=deduped.index.intersection(bad_positions)).reset_index(drop=True)
    return good[list(COLUMN_TYPES[table])], quarantine, n_dups


# --- silver storage ---------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write bytes via a temp file in the same directory, an atomic rename and a sync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), FILE_MODE)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write a frame as parquet atomically (never a half-written table)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(buf.getvalue(), path)


def read_silver(silver_dir: Path, table: str) -> pd.DataFrame:
    """The current silver table, or an empty one with the right columns."""
    path = Path(silver_dir) / SILVER_TABLES[table]
    if path.exists():
        return pd.read_parquet(path)
    cols = QUARANTINE_COLUMNS if table == "quarantine" else list(COLUMN_TYPES[table])
    return pd.DataFrame(columns=cols)


def upsert(current: pd.DataFrame, new: pd.DataFrame, table: str) -> pd.DataFrame:
    """Merge new rows into a table by key: the latest `sys_updated_at` (else the newer batch) wins."""
    key = KEYS[table]
    if current.empty:
        merged = new.copy()
    elif new.empty:
        merged = current.copy()
    else:
        merged = pd.concat([current.astype(new.dtypes.to_dict()), new], ignore_index=True)
    merged["_arrival"] = np.arange(len(merged))
    order = [ORDER_BY[table], "_arrival"] if table in ORDER_BY else ["_arrival"]
    merged = merged.sort_values(order, kind="stable").drop_duplicates(subset=key, keep="last")
    return merged.drop(columns="_arrival").sort_values(key, kind="stable").reset_index(drop=True)


@dataclass
class BatchResult:
    """What one batch did to silver: counts for the log and metrics."""

    table: str
    file: str
    sha256: str
    rows_received: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    silver_rows: int = 0
    skipped: bool = False
    quarantined: list[str] = field(default_factory=list)  # the first 5, "row N (column): reason"


def _bronze_path(bronze_dir: Path, table: str, file: str, digest: str) -> Path:
    name = Path(file).name
    return bronze_dir / table / f"{digest[:12]}__{name}"


def ingest_batch(
    data: bytes,
    file: str,
    table: str,
    root: Path,
    *,
    parse: Callable[[bytes, str], pd.DataFrame] = read_received,
    max_bad_fraction: float = 0.05,
    max_file_mb: float = MAX_FILE_MB,
) -> BatchResult:
    """Land one received batch: keep it in bronze, validate it, upsert its good rows into silver.

    Holds the silver folder's lock for the whole batch. A file over `max_file_mb`, or one that does not
    decode (not UTF-8, nested too deeply) is refused with a DataValidationError naming it.
    """
    root = Path(root)
    bronze, silver = root / "bronze", root / "silver"
    if len(data) > max_file_mb * 2**20:
        raise DataValidationError(
            file, f"file is {len(data) / 2**20:.1f} MB, above the {max_file_mb:g} MB cap"
        )
    silver.mkdir(parents=True, exist_ok=True)
    with FileLock(silver / LOCK):
        return _ingest_locked(data, file, table, bronze, silver, parse, max_bad_fraction)


def _ingest_locked(data, file, table, bronze, silver, parse, max_bad_fraction) -> BatchResult:
    digest = hashlib.sha256(data).hexdigest()
    result = BatchResult(table=table, file=file, sha256=digest)
    ledger_path = silver / LEDGER
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else []
    if any(e["sha256"] == digest and e["table"] == table for e in ledger):
        result.skipped = True
        result.silver_rows = len(read_silver(silver, table))
        return result
    bronze_file = _bronze_path(bronze, table, file, digest)
    if not bronze_file.exists():  # bronze is never rewritten
        atomic_write_bytes(data, bronze_file)
    try:
        raw = parse(data, file)
    except UnicodeDecodeError as exc:
        raise DataValidationError(file, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except RecursionError as exc:
        raise DataValidationError(file, "nested too deeply to parse") from exc
    good, quarantine, n_dups = clean_batch(raw, table, file, max_bad_fraction)
    merged = upsert(read_silver(silver, table), good, table)
    atomic_write_parquet(merged, silver / SILVER_TABLES[table])
    if len(quarantine):
        q = pd.concat([read_silver(silver, "quarantine"), quarantine], ignore_index=True)
        atomic_write_parquet(q.drop_duplicates(ignore_index=True), silver / SILVER_TABLES["quarantine"])
    result.quarantined = [f"row {r.row} ({r.column}): {r.reason}" for r in quarantine.head(5).itertuples()]
    result.rows_received, result.rows_loaded = len(raw), len(good)
    result.rows_quarantined, result.rows_duplicate, result.silver_rows = len(quarantine), n_dups, len(merged)
    ledger.append({"table": table, "file": Path(file).name, "sha256": digest})
    atomic_write_bytes(json.dumps(ledger, indent=1).encode(), ledger_path)
    return result


def ingest_file(path: str | os.PathLike, table: str, root: Path, **kw) -> BatchResult:
    """Read a file's bytes and ingest them as one batch (the path is only used here and in messages).

    The size cap is checked before reading, so an oversized file is never loaded into memory."""
    path = Path(path)
    cap = kw.get("max_file_mb", MAX_FILE_MB)
    size = path.stat().st_size
    if size > cap * 2**20:
        raise DataValidationError(str(path), f"file is {size / 2**20:.1f} MB, above the {cap:g} MB cap")
    return ingest_batch(path.read_bytes(), str(path), table, root, **kw)


def count_received(
    root: Path,
    domain: str,
    table: str,
    file,
    *,
    result: BatchResult | None = None,
    refused: str | None = None,
) -> None:
    """Append what one received file gave to `<root>/ingest_counts.jsonl` (rows in, loaded, quarantined,
    duplicates; or refused with the reason). Append-only, so sums over it are counters (`read_counts`)."""
    line = {"time": pd.Timestamp.now(tz="UTC").isoformat(), "domain": domain, "table": table,
            "file": Path(file).name, "status": "refused" if refused else ("skipped" if result.skipped else "loaded")}  # fmt: skip
    if result is not None and not result.skipped:
        line |= {"rows_in": result.rows_received, "rows_loaded": result.rows_loaded,
                 "rows_quarantined": result.rows_quarantined, "rows_duplicate": result.rows_duplicate}  # fmt: skip
    if refused:
        line["reason"] = refused
    path = Path(root) / COUNTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_counts(root: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Per domain, the totals of `ingest_counts.jsonl`: rows_in, rows_loaded, rows_quarantined,
    rows_duplicate, files (received), files_refused. An unreadable line is skipped, never fatal."""
    totals: dict[str, dict[str, int]] = {}
    path = Path(root) / COUNTS
    if not path.exists():
        return totals
    keys = ("rows_in", "rows_loaded", "rows_quarantined", "rows_duplicate")
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            line = json.loads(raw)
            t = totals.setdefault(str(line["domain"]), dict.fromkeys((*keys, "files", "files_refused"), 0))
        except (ValueError, KeyError, TypeError):
            continue
        t["files"] += 1
        t["files_refused"] += line.get("status") == "refused"
        for k in keys:
            t[k] += int(line.get(k, 0) or 0)
    return totals


# --- sources ----------------------------------------------------------------------------------
def _frame_parser(loader: Callable[[Path], pd.DataFrame]) -> Callable[[bytes, str], pd.DataFrame]:
    """Adapt a real-data loader (path -> canonical frame) to the bytes parser interface."""

    def parse(data: bytes, file: str) -> pd.DataFrame:
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / Path(file).name
            p.write_bytes(data)
            frame = loader(p)
        return frame.astype(object).where(frame.notna(), None)

    return parse


def run(params: dict, *, root: Path | None = None) -> dict:
    """Ingest every configured source into bronze/silver and return counts for metrics/ingest.json."""
    cfg = params["ingest"]
    root = resolve(root or cfg.get("root", "data"))
    landing = resolve(cfg.get("landing", "data/landing"))
    max_bad = float(cfg.get("max_bad_row_fraction", 0.05))
    cap = {"max_file_mb": float(cfg.get("max_file_mb", MAX_FILE_MB))}
    results: list[BatchResult] = []

    def take(domain: str, table: str, path, **kw) -> None:
        """Ingest one file and count it (refused ones too) in the ingest root's counts."""
        try:
            results.append(ingest_file(path, table, root, max_bad_fraction=max_bad, **cap, **kw))
        except DataValidationError as exc:
            count_received(root, domain, table, path, refused=str(exc))
            raise
        count_received(root, domain, table, path, result=results[-1])

    for domain, source in cfg["sources"].items():
        kind = source["kind"]
        if kind == "synthetic":
            for table, path in ingest_files(landing, domain):
                take(domain, table, path)
        elif kind == "nab":
            data_dir = resolve(source["path"])
            for csv in sorted((data_dir / "data").rglob("*.csv")):
                sid = str(csv.relative_to(data_dir / "data").with_suffix(""))
                parse = _frame_parser(lambda p, sid=sid: sources.read_nab_csv(p, sensor_id=sid))
                take(domain, "sensor_readings", csv, parse=parse)
            labels = data_dir / "labels" / "combined_windows.json"
            if labels.exists():
                take(domain, "anomaly_windows", labels, parse=_frame_parser(sources.read_nab_labels))
        elif kind == "servicenow_eventlog":
            parse = _frame_parser(sources.load_incident_event_log)
            take(domain, "incidents", resolve(source["path"]), parse=parse)
        elif kind == "archive_csv":  # a real archive log in the CSV contract: one file or a folder of them
            for csv in sources.archive_log_files(resolve(source["path"])):
                take(domain, "archive_activity", csv, parse=_frame_parser(sources.read_archive_log))
        else:
            raise ValueError(f"params.yaml ingest.sources.{domain}.kind: unknown source kind {kind!r}")
    silver = root / "silver"
    counts = {
        "bronze_files": sum(1 for p in (root / "bronze").rglob("*") if p.is_file()),
        "bronze_rows": int(sum(r.rows_received for r in results)),
        "silver_rows": {t: len(read_silver(silver, t)) for t in SILVER_TABLES},
        "batches": [asdict(r) for r in results],
    }
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.data.ingest", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--metrics", default=None, help="write counts as JSON here (DVC metrics)")
    ap.add_argument(
        "--fresh", action="store_true", help="remove bronze/silver first (rebuild from the sources)"
    )
    args = ap.parse_args(argv)
    params = load_params(args.params)
    root = resolve(params["ingest"].get("root", "data"))
    if args.fresh:
        for d in ("bronze", "silver"):
            shutil.rmtree(root / d, ignore_errors=True)
    try:
        counts = run(params)
    except DataValidationError as exc:
        print(f"ingest refused a file: {exc}", file=sys.stderr)
        return 2
    for b in counts["batches"]:
        state = (
            "skipped (already in silver)"
            if b["skipped"]
            else (
                f"{b['rows_loaded']} loaded, {b['rows_quarantined']} quarantined, {b['rows_duplicate']} duplicates"
            )
        )
        print(f"  {b['table']:<16} {Path(b['file']).name:<40} {state}")
        for line in b["quarantined"]:
            print(f"      quarantined {line}")
    print(f"silver rows: {counts['silver_rows']}")
    if args.metrics:
        summary = {k: v for k, v in counts.items() if k != "batches"}
        summary["batches"] = len(counts["batches"])
        atomic_write_bytes((json.dumps(summary, indent=2) + "\n").encode(), resolve(args.metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
