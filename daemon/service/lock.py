"""One daemon per root: an flock on .voicedrop/lock, and who holds it.

Kept apart from the daemon so `voicedrop status` and the CLI can ask whether a daemon runs
without importing the pipeline (torch, scipy, PyAV).
"""

from __future__ import annotations

import fcntl
import os
from typing import IO

from daemon.core.paths import Root


class AlreadyRunning(Exception):
    """Another daemon holds this root."""


class InstanceLock:
    """flock on .voicedrop/lock: released by the kernel even after kill -9."""

    def __init__(self, root: Root) -> None:
        self.path = root.lock_file
        self.handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"another voicedrop daemon (pid {pid}) is already running on {self.path.parents[1]}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def running_pid(root: Root) -> int | None:
    """The pid of the daemon holding `root`, or None when no daemon runs there."""
    if not root.lock_file.exists():
        return None
    with open(root.lock_file, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
    return None
