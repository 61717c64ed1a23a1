"""A light open-loop HTTP load generator, for `scripts/bench_service.py` (and its unit test).

Open loop: request i of a step is due at `t0 + i / rate`, sent then whether or not earlier requests have
been answered, and its latency counts from the moment the generator starts it, so time spent waiting for
a free connection or in the server's queue is part of it (no coordinated omission). How late the generator
itself starts a request (its event loop's timers wake to the millisecond, ~1 ms late at a light rate on
these machines; more if its loop falls behind) is recorded apart (`late_ms`), not added to the latency. Plain HTTP/1.1 over asyncio streams on
keep-alive connections (a pool that grows up to `max_connections`), no HTTP library on the hot path: a
request costs the generator a few tens of microseconds of CPU, so it does not take the server's CPU.

`run_step(url, path, body, rate, seconds, headers=...)` -> a `StepResult` (per-request due time, latency,
status); `summarize` gives throughput and percentiles. `pin_self(cpus)` and `cpu_seconds(pids)` help the
bench keep the generator on its own core and account for the CPU both sides used.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


@dataclass
class StepResult:
    target_rps: float
    seconds: float
    due: list[float] = field(default_factory=list)  # due time of each request, seconds after the step start
    latency_ms: list[float] = field(default_factory=list)  # from the start to the last byte of the answer
    late_ms: list[float] = field(default_factory=list)  # from the due time to the generator's start of it
    status: list[int] = field(default_factory=list)  # HTTP status, 0: no answer (timeout, connection error)
    finished_s: float = 0.0  # when the last answer came, seconds after the step start
    connections: int = 0  # connections opened


IDLE_S = 2.0  # a keep-alive connection idle longer is closed, not reused (uvicorn closes them after 5 s)


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.reused = False
        self.idle_since = 0.0

    def close(self) -> None:
        self.writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) of one HTTP/1.1 response; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    hdr = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdr[k.strip().lower()] = v.strip()
    if hdr.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(hdr.get("content-length", "0")))
    return status, hdr.get("connection", "").lower() != "close"


class _Pool:
    def __init__(self, host: str, port: int, max_connections: int):
        self.host, self.port, self.max = host, port, max_connections
        self.idle: list[_Conn] = []
        self.opened = 0
        self.live = 0
        self.freed = asyncio.Condition()

    async def get(self) -> _Conn:
        async with self.freed:
            now = asyncio.get_running_loop().time()
            stale = [c for c in self.idle if now - c.idle_since > IDLE_S]
            if stale:
                self.idle = [c for c in self.idle if now - c.idle_since <= IDLE_S]
                self.live -= len(stale)
                for conn in stale:
                    conn.close()
            while not self.idle and self.live >= self.max:
                await self.freed.wait()
            if self.idle:
                conn = self.idle.pop()
                conn.reused = True
                return conn
            self.live += 1
        return await self._open()

    async def _open(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except BaseException:
            await self.drop(None)
            raise
        self.opened += 1
        return _Conn(reader, writer)

    async def get_new(self) -> _Conn:
        """A fresh connection (counted in `max`), never an idle one."""
        async with self.freed:
            while self.live >= self.max:
                await self.freed.wait()
            self.live += 1
        return await self._open()

    async def put(self, conn: _Conn) -> None:
        conn.idle_since = asyncio.get_running_loop().time()
        async with self.freed:
            self.idle.append(conn)
            self.freed.notify()

    async def drop(self, conn: _Conn | None) -> None:
        if conn is not None:
            conn.close()
        async with self.freed:
            self.live -= 1
            self.freed.notify()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def _request_bytes(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _run_step(
    url: str,
    path: str,
    body: bytes,
    rate: float,
    seconds: float,
    header_sets: list[dict[str, str]],
    max_connections: int,
    timeout: float,
) -> StepResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pool = _Pool(host, port, max_connections)
    raw = [_request_bytes(host, port, path, body, h) for h in header_sets]
    n = max(1, int(round(rate * seconds)))
    res = StepResult(target_rps=rate, seconds=seconds)
    res.due = [i / rate for i in range(n)]
    res.latency_ms = [float("nan")] * n
    res.late_ms = [float("nan")] * n
    res.status = [0] * n
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def one(i: int, request: bytes) -> None:
        due, start = t0 + res.due[i], loop.time()
        res.late_ms[i] = 1000.0 * (start - due)
        conn = None
        try:
            async with asyncio.timeout(timeout):
                conn = await pool.get()
                try:
                    conn.writer.write(request)
                    status, keep = await _read_response(conn.reader)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    # a reused connection the server closed before answering: once more on a new
                    # one, as HTTP clients do (a partial answer is an error)
                    if not conn.reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                        raise
                    await pool.drop(conn)
                    conn = None
                    conn = await pool.get_new()
                    conn.writer.write(request)
                    status, keep = await _read_response(conn.reader)
            res.latency_ms[i] = 1000.0 * (loop.time() - start)
            res.status[i] = status
            if keep:
                await pool.put(conn)
            else:
                await pool.drop(conn)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            res.latency_ms[i] = 1000.0 * (loop.time() - start)
            if conn is not None:
                await pool.drop(conn)

    tasks = []
    keys = itertools.cycle(raw)
    for i in range(n):
        delay = t0 + res.due[i] - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, next(keys))))
    await asyncio.gather(*tasks)
    res.finished_s = loop.time() - t0
    res.connections = pool.opened
    pool.close()
    return res


def run_step(
    url: str,
    path: str,
    body: bytes | str,
    rate: float,
    seconds: float,
    *,
    headers: dict[str, str] | list[dict[str, str]] | None = None,
    max_connections: int = 256,
    timeout: float = 5.0,
) -> StepResult:
    """`rate` POSTs a second of `body` to `url + path` for `seconds`, open loop (see the module doc).
    `headers` may be a list of header sets, used in turn (e.g. several API keys)."""
    if isinstance(body, str):
        body = body.encode()
    sets = headers if isinstance(headers, list) else [headers or {}]
    sets = [{"Content-Type": "application/json", **h} for h in sets]
    return asyncio.run(_run_step(url, path, body, rate, seconds, sets, max_connections, timeout))


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def summarize(res: StepResult, skip_s: float = 0.0) -> dict:
    """target_rps, throughput_rps (2xx answers completed between `skip_s` and the step's end, per second),
    p50/p95/p99 of the 2xx answers and errors (anything else), over requests due after `skip_s`; and how
    late the generator started them (`late_p50_ms`, `late_p95_ms`: not part of the latencies)."""
    due_all = np.asarray(res.due)
    lat_all = np.asarray(res.latency_ms)
    late_all = np.asarray(res.late_ms) if len(res.late_ms) == len(res.due) else np.zeros(len(res.due))
    ok_all = (np.asarray(res.status) >= 200) & (np.asarray(res.status) < 300)
    done = due_all + (late_all + lat_all) / 1000.0
    window = res.seconds - skip_s
    completed = int((ok_all & (done >= skip_s) & (done < res.seconds)).sum())
    keep = due_all >= skip_s
    lat, ok, status = lat_all[keep], ok_all[keep], np.asarray(res.status)[keep]
    good, late = lat[ok], late_all[keep]
    return {
        "target_rps": res.target_rps,
        "requests": int(keep.sum()),
        "throughput_rps": round(completed / window, 1) if window > 0 else None,
        "p50_ms": _pct(good, 50),
        "p95_ms": _pct(good, 95),
        "p99_ms": _pct(good, 99),
        "max_ms": round(float(good.max()), 2) if len(good) else None,
        "errors": int((~ok).sum()),
        "error_statuses": sorted({int(x) for x in status[~ok]}),
        "late_p50_ms": _pct(late, 50),
        "late_p95_ms": _pct(late, 95),
        "connections": res.connections,
        "drained_s": round(res.finished_s - res.seconds, 2),
    }


# --- cores and CPU time --------------------------------------------------------------------------------
def pin(pid: int, cpus: set[int]) -> bool:
    """Keep process `pid` (0: this one) on `cpus`; False where the OS cannot (no sched_setaffinity)."""
    try:
        os.sched_setaffinity(pid, cpus)
    except (AttributeError, OSError):
        return False
    return True


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes `pids` (gone ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields_ = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields_[11]) + int(fields_[12])) / tick  # utime, stime (fields 14, 15 of stat)
    return total


def self_cpu_seconds() -> float:
    """CPU seconds of this process so far (all threads)."""
    return time.process_time()
