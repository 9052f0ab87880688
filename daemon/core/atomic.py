"""Crash-safe file writes: a reader never sees a half-written output, even after kill -9."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".voicedrop-tmp-"


def current_umask() -> int:
    """Read once at import, before any thread runs: os.umask can only be read by setting it."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = current_umask()


def fsync_directory(directory: Path) -> None:
    """Persist a rename: without this the new name can vanish on power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{target.stem[:40]}-", suffix=target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; outputs follow the umask
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, target)
        fsync_directory(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def remove_stale_temp_files(directory: Path) -> int:
    """Drop temp files a killed process left below `directory`; they were never outputs."""
    removed = 0
    for stale in directory.rglob(f"{TEMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed
