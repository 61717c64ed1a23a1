"""A real `bentoml serve` process on a free loopback port, for the service tests and `bench_service`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from ml.config import ROOT


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], log: Path, port: int, host: str = "127.0.0.1") -> subprocess.Popen:
    """`bentoml serve service:OpsLab` from the project root in its own process group, output to `log`."""
    cmd = [sys.executable, "-m", "bentoml", "serve", "service:OpsLab", "--host", host, "--port", str(port)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_server(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGINT to the whole process group (BentoML's workers too), SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
