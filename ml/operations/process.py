"""The operations jobs' commands as subprocesses: `python` is this interpreter, a program next to it (the venv's
`dvc`) is found there (cron has no venv on PATH), and a run past its time limit is stopped with its children."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def argv_for(command: str, fill: Mapping[str, str] | None = None) -> list[str]:
    """A command line from params.yaml as an argv: `{name}` placeholders filled (shell-quoted) first."""
    for key, value in (fill or {}).items():
        command = command.replace("{" + key + "}", value)
    argv = shlex.split(command)
    if not argv:
        raise ValueError(f"empty command {command!r}")
    venv_bin = Path(sys.executable).parent
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    elif "/" not in argv[0] and (venv_bin / argv[0]).is_file():
        argv[0] = str(venv_bin / argv[0])
    return argv


def run(
    argv: list[str], *, cwd: Path, timeout_s: float, grace_s: float = 30.0
) -> tuple[int, float, str | None]:
    """Run `argv` in its own process group, output to ours. -> (exit code, seconds, error or None).

    Past `timeout_s` the whole group gets SIGTERM, then SIGKILL after `grace_s` (dvc's notebook kernels too);
    that, or a command that cannot start, is exit code -1 with the reason.
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, start_new_session=True)
    except OSError as exc:
        return -1, 0.0, f"could not start {argv[0]}: {exc}"
    try:
        return proc.wait(timeout=timeout_s), time.monotonic() - start, None
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        proc.wait()
        return -1, time.monotonic() - start, f"stopped after {timeout_s:.0f} s (its time limit)"
