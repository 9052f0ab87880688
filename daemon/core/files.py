"""Moving and fingerprinting the user's files: the one sha256 helper, the one move that is
safe across filesystems, and the one way a file is set aside in rejected/ with its reason."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

from loguru import logger

from daemon.core import atomic
from daemon.core.paths import NAME_MAX, VoicePaths, free_name, safe_name

BLOCK = 1 << 20
_cache: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> hashlib._Hash:
    """The running digest of a file (a partial download goes on from it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest


def file_sha256(path: Path) -> str:
    """The content hash of a dropped file or a text: always read afresh."""
    return sha256_of(path).hexdigest()


def file_signature(path: Path) -> tuple[str, int, int]:
    """What identifies a model file's content cheaply: one retrained in place gets a new one."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return (str(resolved), stat.st_size, stat.st_mtime_ns)


def cached_sha256(path: Path) -> str:
    """sha256 of a model file, computed once per signature: checkpoints are gigabytes. Not
    for dropped files, which `cp -p` can replace keeping size and mtime."""
    key = file_signature(path)
    if key not in _cache:
        _cache[key] = file_sha256(Path(key[0]))
    return _cache[key]


def move_file(source: Path, target: Path) -> None:
    """Rename within the root's filesystem; copy, fsync and unlink only across devices."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # inbox on another filesystem than voices/
            raise
        with atomic.atomic_path(target) as tmp:
            shutil.copy2(source, tmp)
        source.unlink()
    atomic.fsync_directory(target.parent)
    atomic.fsync_directory(source.parent)


def link_or_copy(source: Path, target: Path) -> None:
    """A second name for the same bytes (a hard link), or a durable copy across filesystems:
    `source` stays where it is."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        with atomic.atomic_path(target) as tmp:
            shutil.copy2(source, tmp)
    atomic.fsync_directory(target.parent)


def reject_file(voice: VoicePaths, path: Path, reason: str) -> Path:
    """Move `path` (a symlink itself, never its target) into rejected/ beside its reason.

    The reason is written first: if the daemon dies in between, the file is still in the
    inbox and is simply looked at again.
    """
    fits = len(f"{path.name}.reason.txt".encode()) <= NAME_MAX
    target = free_name(voice.rejected, path.name if fits else safe_name(path.name))
    atomic.write_text(target.with_name(target.name + ".reason.txt"), reason.rstrip() + "\n")
    move_file(path, target)
    logger.warning("rejected {}: {}", path.name, reason)
    return target
