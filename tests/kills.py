"""Killing a real ``provision`` process part-way (the kill tests of every provider): start ``python -m provision ...``
as a child process, SIGKILL it at a chosen point of its conversation with an emulator, and always reap it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from tests.conftest import REPO

POLL_SECONDS = 0.005
"""How often `run_and_kill` reads the emulator's request log, in seconds."""


class RequestLog(Protocol):
    """An emulator's request log as the admin fixtures expose it (`tests.conftest.Admin`, `AzureAdmin`,
    `GcsAdmin`)."""

    def reset_log(self) -> None: ...

    def log(self) -> list[dict[str, Any]]: ...

    def mutating(self) -> list[dict[str, Any]]: ...


SETTLE_SECONDS = 10.0
"""How long `settle` waits at most for the emulator to answer the requests a killed process left in flight."""


def settle(log: RequestLog, limit: float = SETTLE_SECONDS) -> None:
    """Wait until every request in ``log`` has been answered (its entry has a ``status``), at most ``limit``
    seconds: the log holds a request from its arrival, and the emulator carries out a request whose client was
    killed meanwhile; what the test reads next must see its outcome. Requests never answered (the body was cut
    off by the kill) are waited for only until ``limit``."""
    deadline = time.monotonic() + limit
    while any("status" not in e for e in log.log()) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS * 4)


@contextmanager
def provision_process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m provision ARGS`` started as a child process (this checkout on PYTHONPATH, the test's environment
    otherwise, output discarded). Yields the process; on exit it is killed and reaped if still running."""
    process = subprocess.Popen([sys.executable, "-m", "provision", *args], env=dict(os.environ, PYTHONPATH=str(REPO)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def state_files() -> list[str]:
    """The names of every file left in the state directory (``PROVISION_STATE_DIR``), hidden ones included: after
    a ``destroy`` of the only env there must be none (a temporary copy of the state a killed run left holds its
    secrets)."""
    directory = Path(os.environ["PROVISION_STATE_DIR"])
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def sigkill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process`` (no clean-up of any kind runs in it)."""
    os.kill(process.pid, signal.SIGKILL)


def run_and_kill(log: RequestLog, k: int, *args: str) -> int | None:
    """Reset ``log``, start ``provision ARGS`` (`provision_process`) and SIGKILL it as soon as ``log`` holds at least
    ``k`` mutating requests (read every `POLL_SECONDS`). Returns the number of mutating requests seen when it was
    killed (``k`` or a few more: the process runs on while the log is read); None when it exited first."""
    log.reset_log()
    with provision_process(*args) as process:
        while process.poll() is None:
            seen = len(log.mutating())
            if seen >= k:
                sigkill(process)
                process.wait()
                settle(log)
                return seen
            time.sleep(POLL_SECONDS)
        return None
