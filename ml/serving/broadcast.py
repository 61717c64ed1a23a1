"""/models/reload across worker processes: a shared reload log every worker follows.

BentoML runs `serving.workers` processes (default one per core), each with its own models. The worker
that receives `POST /models/reload` applies it, then appends it to a small JSON log (under an exclusive
`flock`): `{"generation": n, "reloads": [{"generation", "models", "uris"}, ...]}`. Every worker runs a
watcher thread that `stat`s the log every `POLL_SECONDS` (a few microseconds) and replays, in order,
the reloads it has not applied: the same alias re-resolution and the same overrides, so every worker
ends up on the same versions. A replay swaps slots exactly like a local reload (a request keeps the model
it started with), so no request is lost; the other workers follow within POLL_SECONDS plus the load time.
A worker started later replays the whole log's overrides before its first load.

The log's path: `OPSLAB_RELOAD_LOG`, set by service.py in the serving process before the workers start
(they inherit it), else one per parent process in the temp directory (the workers share their parent).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

ENV_LOG = "OPSLAB_RELOAD_LOG"
POLL_SECONDS = 0.1
log = logging.getLogger("opslab.serving")


def log_path() -> Path:
    env = os.environ.get(ENV_LOG)
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"opslab-reload-{os.getuid()}-{os.getppid()}.json"


def new_log() -> Path:
    """A fresh, empty log for one `bentoml serve` (called in the serving process; workers inherit it)."""
    path = Path(tempfile.gettempdir()) / f"opslab-reload-{os.getuid()}-{os.getpid()}.json"
    path.write_text(json.dumps({"generation": 0, "reloads": []}))
    os.environ[ENV_LOG] = str(path)
    return path


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}") or {"generation": 0, "reloads": []}
    except (OSError, ValueError):
        return {"generation": 0, "reloads": []}


def append(path: Path, names: list[str] | None, uris: dict[str, str | None] | None) -> int:
    """Add one reload to the log; returns its generation."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = read(path)
        generation = int(state.get("generation", 0)) + 1
        state["generation"] = generation
        state.setdefault("reloads", []).append({"generation": generation, "models": names, "uris": uris})
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)  # readers see the old or the new log, never half of one
    return generation


class Follower:
    """Keeps one worker's Runtime on the log: `apply(names, uris)` is the Runtime's local reload."""

    def __init__(self, apply, path: Path | None = None):
        self.apply, self.path = apply, path or log_path()
        self.applied = 0
        self._stamp = None
        self._lock = threading.Lock()

    def overrides(self) -> dict[str, str | None]:
        """The overrides of every reload so far (applied before a late worker's first load)."""
        state = read(self.path)
        merged: dict[str, str | None] = {}
        for entry in state.get("reloads", []):
            merged |= entry.get("uris") or {}
        self.applied = int(state.get("generation", 0))
        return merged

    def publish(self, names, uris) -> None:
        """After a local reload: log it, and count it as applied here."""
        with self._lock:
            generation = append(self.path, names, uris)
            if generation == self.applied + 1:
                self.applied = generation

    def check(self) -> None:
        """Replay the reloads this worker has not applied (cheap when the log has not changed)."""
        try:
            st = self.path.stat()
        except OSError:
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        with self._lock:
            state = read(self.path)
            for entry in state.get("reloads", []):
                if entry["generation"] > self.applied:
                    log.info("opslab: replaying reload %s from another worker", entry["generation"])
                    self.apply(entry.get("models"), entry.get("uris"))
                    self.applied = entry["generation"]
            self._stamp = stamp

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_SECONDS):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive a bad log entry
                log.exception("opslab: following the reload log failed")

    def start(self) -> threading.Event:
        stop = threading.Event()
        threading.Thread(
            target=self.run_forever, args=(stop,), name="opslab-reload-follower", daemon=True
        ).start()
        return stop
