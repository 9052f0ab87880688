"""Watch inbox/ and outbox/: events are hints, the directory listing is the truth.

A path is handed on only once it is *stable*: no event for `watch.stable_for` seconds and
size + mtime unchanged across that time, so half-copied files are never taken.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loguru import logger
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon.book.document import BOOK_SUFFIXES
from daemon.core.config import Settings
from daemon.core.paths import REJECTED_DIR, Root
from daemon.tts.outputs import AUDIO_SUFFIXES, CHECK_SUFFIX, ERROR_SUFFIX, is_text

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "9p", "afs", "ceph")
IGNORED_NAMES = ("Thumbs.db", "desktop.ini", "@eaDir", "$RECYCLE.BIN", "lost+found")
IGNORED_PATTERNS = ("*.part", "*.tmp", "*.crdownload", "*.partial", "*.download", "*~")
SIDECAR_SUFFIXES = (".reason.txt", ERROR_SUFFIX, CHECK_SUFFIX)  # notes the daemon writes


@dataclass(frozen=True)
class Drop:
    """A stable file a user dropped: `folder` is "inbox" or "outbox"."""

    folder: str
    voice: str
    path: Path


def filesystem_type(path: Path) -> str:
    """The mount table's type for the filesystem holding `path` (longest mount-point match)."""
    target = os.path.realpath(path)
    best, best_type = "", "unknown"
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount_point = fields[1].replace("\\040", " ")
                inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, best_type = mount_point, fields[2]
    except OSError:
        return "unknown"
    return best_type


def needs_polling(fs_type: str) -> bool:
    """Native events do not arrive for changes made by other machines on network filesystems."""
    return fs_type.split(".")[0] in NETWORK_FILESYSTEMS or fs_type.startswith("fuse")


def choose_mode(settings: Settings, root: Root) -> str:
    if settings.watch.mode != "auto":
        return settings.watch.mode
    fs_type = filesystem_type(root.path)
    mode = "poll" if needs_polling(fs_type) else "native"
    logger.info("watch mode {} ({} filesystem at {})", mode, fs_type, root.path)
    return mode


def is_ignored(relative: Path, extra_patterns: tuple[str, ...] = ()) -> bool:
    """OS litter, partial downloads, hidden files and our own reason/error sidecars."""
    for part in relative.parts:
        if part.startswith(".") or part in IGNORED_NAMES:
            return True
    name = relative.name
    patterns = IGNORED_PATTERNS + extra_patterns
    return name.endswith(SIDECAR_SUFFIXES) or any(fnmatch.fnmatch(name, p) for p in patterns)


def classify(root: Root, path: Path, settings: Settings) -> Drop | None:
    """Map a path to the drop it is, or None for anything voicedrop does not take."""
    for folder, base in (("inbox", root.inbox), ("outbox", root.outbox)):
        try:
            relative = path.relative_to(base)
        except ValueError:
            continue
        if len(relative.parts) < 2 or is_ignored(relative, settings.watch.ignore):
            return None
        voice = relative.parts[0]
        if folder == "inbox" and relative.parts[1] == REJECTED_DIR:
            return None
        if folder == "outbox" and (len(relative.parts) != 2 or not is_text(path)):
            return None
        return Drop(folder, voice, path)
    return None


def misplaced_reason(root: Root, path: Path) -> str | None:
    """Why a file a user clearly meant for voicedrop is not taken where it lies."""
    if path.parent == root.inbox and not path.name.startswith("."):
        return (
            f"{path.name} lies directly in inbox/: clips go into inbox/<voice>/ (make a folder "
            "named after the voice and move it there)"
        )
    if is_text(path) and path.is_relative_to(root.outbox):
        depth = len(path.relative_to(root.outbox).parts)
        if depth != 2 and not path.name.startswith("."):
            return f"{path} is not taken: texts go directly into outbox/<voice>/"
    return None


class StabilityTracker:
    """Paths seen recently, each with the time it may be taken if nothing changes."""

    def __init__(self, stable_for: float, on_change: Callable[[], None] = lambda: None) -> None:
        self.stable_for = stable_for
        self.on_change = on_change
        self.lock = threading.Lock()
        self.entries: dict[Path, tuple[float, tuple[int, int] | None]] = {}

    def touch(self, path: Path) -> None:
        signature = file_signature(path)
        with self.lock:
            self.entries[path] = (time.monotonic() + self.stable_for, signature)
        self.on_change()

    def due(self) -> list[Path]:
        """Paths quiet for `stable_for` whose size and mtime did not move meanwhile."""
        now = time.monotonic()
        with self.lock:
            expired = [p for p, (deadline, _) in self.entries.items() if deadline <= now]
        stable = []
        for path in expired:
            signature = file_signature(path)
            with self.lock:
                deadline, seen = self.entries.get(path, (None, None))
                if deadline is None or deadline > now:
                    continue
                if signature is None:
                    del self.entries[path]
                elif signature == seen:
                    del self.entries[path]
                    stable.append(path)
                else:
                    self.entries[path] = (now + self.stable_for, signature)
        return sorted(stable)

    def next_deadline(self) -> float | None:
        with self.lock:
            return min((d for d, _ in self.entries.values()), default=None)

    def __len__(self) -> int:
        with self.lock:
            return len(self.entries)


def file_signature(path: Path) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


class DropFolderHandler(FileSystemEventHandler):
    """Turns watchdog events into tracker touches; a new folder is listed, since files moved
    in along with it bring no events of their own."""

    def __init__(self, tracker: StabilityTracker, scan_folder: Callable[[Path], None]) -> None:
        self.tracker = tracker
        self.scan_folder = scan_folder

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        target = getattr(event, "dest_path", "") or event.src_path
        path = Path(os.fsdecode(target))
        if event.event_type == "deleted":
            self.output_deleted(path)
            return
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                self.scan_folder(path)
            return
        self.tracker.touch(path)

    def output_deleted(self, path: Path) -> None:
        """Deleting a rendered audio file or its sidecar asks for the text to be rendered
        again, and deleting a text's .error.txt asks for another try, at once (not at the
        next rescan)."""
        if path.name.endswith(ERROR_SUFFIX):
            stem = path.name.removesuffix(ERROR_SUFFIX)
        elif path.suffix in (*AUDIO_SUFFIXES, ".json"):
            stem = path.stem
        else:
            return
        for suffix in BOOK_SUFFIXES:
            text = path.with_name(stem + suffix)
            if text.is_file():
                self.tracker.touch(text)


class Watcher:
    """The observer plus the start-up and periodic scans that catch what events missed."""

    def __init__(self, root: Root, settings: Settings, tracker: StabilityTracker) -> None:
        self.root = root
        self.settings = settings
        self.tracker = tracker
        self.mode = choose_mode(settings, root)
        self.observer: BaseObserver | None = None

    def start(self) -> None:
        if self.mode == "poll":
            self.observer = PollingObserver(timeout=self.settings.watch.poll_interval)
        else:
            self.observer = Observer()
        handler = DropFolderHandler(self.tracker, self.scan_folder)
        for folder in (self.root.inbox, self.root.outbox):
            folder.mkdir(parents=True, exist_ok=True)
            self.observer.schedule(handler, str(folder), recursive=True)
        self.observer.start()

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=10)

    def scan(self) -> int:
        """List every drop folder; returns how many files were handed to the tracker."""
        count = 0
        for folder in (self.root.inbox, self.root.outbox):
            for path in walk_files(folder):
                self.tracker.touch(path)
                count += 1
        return count

    def scan_folder(self, folder: Path) -> None:
        for path in walk_files(folder):
            self.tracker.touch(path)


def walk_files(folder: Path) -> Iterator[Path]:
    """Every file below `folder`, without following symlinked folders or entering hidden ones."""
    if not folder.is_dir():
        return
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            yield Path(directory) / name
