"""The prediction log: every item the service answers becomes one record, written in batches off the request
path to `<root>/<model>/date=YYYY-MM-DD/<time>-<pid>-<n>.parquet`, read back by the monitoring job.

A record: request_id, time (UTC), endpoint, model_name, model_version, model_sha256, the item's input as
received and its output (both JSON text), and the item's position in its request. A request whose list
(`readings`, `items`, `incidents`) answers item by item in `results` gives one record per item; any other
(`/check_drift`) gives one record for the whole request.

`record()` never blocks and never raises: it puts the request and response objects on a bounded queue and
counts what does not fit (`dropped`); a writer thread turns them into rows and writes every `batch` rows or
`flush_seconds`. Folders older than `retention_days` are deleted as the writer goes. The inputs may hold
personal data (ticket text, caller names): see the README.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic_core import to_json

log = logging.getLogger("opslab.predlog")
ITEM_LISTS = ("readings", "items", "incidents")
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("time", pa.timestamp("us")),
        ("endpoint", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("model_sha256", pa.string()),
        ("item", pa.int64()),
        ("input", pa.string()),
        ("output", pa.string()),
    ]
)  # time: naive UTC
COLUMNS = SCHEMA.names


def _dump(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    return dump(mode="json") if dump is not None else obj


def _text(obj: Any) -> str:
    """JSON text (pydantic-core's encoder: several times faster than `json.dumps`, same values back)."""
    return to_json(obj).decode()


def rows_of(
    endpoint: str, request: Any, response: Any, request_id: str, at: datetime
) -> list[dict[str, Any]]:
    """The log rows of one answered request: one per item where the answer is item by item."""
    req, resp = _dump(request), _dump(response)
    stamp = {k: resp.get(k) for k in ("model_name", "model_version", "model_sha256")}
    base = {"request_id": request_id, "time": at, "endpoint": endpoint, **stamp}
    results = resp.get("results")
    for key in ITEM_LISTS:
        items = req.get(key)
        if isinstance(items, list) and isinstance(results, list) and len(items) == len(results):
            extra = {k: v for k, v in req.items() if k != key}  # request-level fields (top_k, k, ...)
            return [
                {
                    **base,
                    "item": i,
                    "input": _text({**extra, key[:-1]: it}),
                    "output": _text(res),
                }  # fmt: skip
                for i, (it, res) in enumerate(zip(items, results, strict=True))
            ]
    out = {k: v for k, v in resp.items() if k not in stamp}
    return [{**base, "item": 0, "input": _text(req), "output": _text(out)}]


class PredictionLog:
    """A bounded, batched, never-blocking writer of prediction records (off: `root` None)."""

    def __init__(
        self,
        root: str | os.PathLike | None,
        *,
        max_queue: int = 10_000,
        batch: int = 500,
        flush_seconds: float = 2.0,
        retention_days: int = 30,
        start: bool = True,
    ) -> None:
        self.root = None if root is None else Path(root)
        self.batch, self.flush_seconds, self.retention_days = batch, flush_seconds, retention_days
        self.dropped = self.written = self.failed = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._seq = 0
        self._folders: set[Path] = set()  # made already (mkdir is slow on overlay file systems)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.root is not None and start:
            self._thread = threading.Thread(target=self._run, name="opslab-predlog", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def record(self, endpoint: str, request: Any, response: Any, request_id: str) -> None:
        """Queue one answered request; never blocks, never raises (a full queue counts as dropped)."""
        if self.root is None:
            return
        try:
            self._queue.put_nowait((endpoint, request, response, request_id, datetime.now(UTC)))
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self.flush()
        self._stop.set()

    def _run(self) -> None:
        rows: list[dict[str, Any]] = []
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                entry = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                entry = None
            if isinstance(entry, threading.Event):  # a flush marker
                self._write(rows)
                rows, last = [], time.monotonic()
                entry.set()
                continue
            if entry is not None:
                try:
                    rows += rows_of(*entry)
                except Exception:  # noqa: BLE001 - a record that cannot be made must not stop the writer
                    self.failed += 1
                    log.exception("prediction log: could not make rows of a %s answer", entry[0])
            if rows and (len(rows) >= self.batch or time.monotonic() - last >= self.flush_seconds):
                self._write(rows)
                rows, last = [], time.monotonic()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """One parquet file per model and day of `rows`, written with pyarrow (a pandas frame and groupby
        per batch cost ~5x more of the worker's CPU, taken from the requests it shares the GIL with)."""
        if not rows:
            return
        try:
            naive: dict[datetime, datetime] = {}  # a request's rows share one time: convert it once
            times = [naive.get(t) or naive.setdefault(t, t.astimezone(UTC).replace(tzinfo=None))
                     for t in (r["time"] for r in rows)]  # fmt: skip
            parts: dict[tuple[str, date], list[int]] = {}
            for i, (row, at) in enumerate(zip(rows, times, strict=True)):
                parts.setdefault((str(row["model_name"] or "unknown"), at.date()), []).append(i)
            for (model, day), idx in parts.items():
                folder = self.root / model / f"date={day:%Y-%m-%d}"
                if folder not in self._folders:
                    folder.mkdir(parents=True, exist_ok=True)
                    self._folders.add(folder)
                self._seq += 1
                name = f"{datetime.now(UTC):%H%M%S%f}-{os.getpid()}-{self._seq}.parquet"
                columns = {c: [rows[i][c] for i in idx] for c in COLUMNS if c != "time"}
                columns["time"] = [times[i] for i in idx]  # the naive UTC times, converted once above
                table = pa.table(columns, schema=SCHEMA)
                buf = io.BytesIO()
                pq.write_table(table, buf)
                try:
                    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
                except FileNotFoundError:  # the folder was removed since it was made (by hand, by a test)
                    folder.mkdir(parents=True, exist_ok=True)
                    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(buf.getvalue())
                os.replace(tmp, folder / name)
            self.written += len(rows)
            prune(self.root, self.retention_days)
        except Exception:  # noqa: BLE001 - logging must never take the service down
            self.failed += len(rows)
            log.exception("prediction log: could not write %d records under %s", len(rows), self.root)


def prune(root: Path, retention_days: int, today: date | None = None) -> list[Path]:
    """Delete `date=` folders older than `retention_days`; the deleted folders."""
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
    gone = []
    for folder in Path(root).glob("*/date=*"):
        try:
            day = date.fromisoformat(folder.name.split("=", 1)[1])
        except ValueError:
            continue
        if day < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder)
    return gone


def read_log(root: str | os.PathLike, model: str | None = None, since: Any = None) -> pd.DataFrame:
    """The logged records (of one model, written at or after `since`), oldest first."""
    files = sorted(Path(root).glob(f"{model or '*'}/date=*/*.parquet"))
    if not files:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if since is not None:
        frame = frame[frame["time"] >= pd.Timestamp(since)]
    return frame.sort_values(["time", "request_id", "item"], kind="stable").reset_index(drop=True)


def parsed(frame: pd.DataFrame, column: str) -> list[Mapping[str, Any]]:
    """The JSON text of `input` or `output` back as dicts."""
    return [json.loads(v) for v in frame[column]]
