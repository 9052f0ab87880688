"""The folder contract (README, "Folders"): where a root keeps clips, texts, voices, state."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = ".voicedrop"
REJECTED_DIR = "rejected"


class VoiceNameError(ValueError):
    """A voice name that could escape the root or confuse the folder layout."""


SAFE_STEM_BYTES = 120
NAME_MAX = 255  # bytes in one file name on ext4, xfs, btrfs, tmpfs
UNSAFE_CHARACTERS = re.compile(r"[\x00-\x1f\x7f|]")


def check_voice_name(name: str) -> str:
    """Voice names are folder names; refuse anything that is not one plain folder."""
    if not name or name in (".", ".."):
        raise VoiceNameError(f"voice name {name!r} is empty or a relative path")
    if "/" in name or "\\" in name or os.sep in name:
        raise VoiceNameError(f"voice name {name!r} contains a path separator")
    if name.startswith("."):
        raise VoiceNameError(f"voice name {name!r} starts with a dot (hidden folders are ignored)")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise VoiceNameError(f"voice name {name!r} contains control characters")
    if len(name.encode("utf-8")) > 100:
        raise VoiceNameError(f"voice name {name[:20]!r}… is longer than 100 bytes")
    return name


@dataclass(frozen=True)
class Root:
    """One working root: the repository root by default."""

    path: Path

    @classmethod
    def at(cls, path: Path | str) -> Root:
        return cls(Path(path).resolve())

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def inbox(self) -> Path:
        return self.path / "inbox"

    @property
    def outbox(self) -> Path:
        return self.path / "outbox"

    @property
    def voices(self) -> Path:
        return self.path / "voices"

    @property
    def models(self) -> Path:
        return self.path / "models"

    @property
    def state(self) -> Path:
        return self.path / STATE_DIR

    @property
    def running_config(self) -> Path:
        """The sha256 of the config.yaml the running daemon read: a later edit needs a restart."""
        return self.state / "running-config.sha256"

    @property
    def ledger_file(self) -> Path:
        return self.state / "ledger.sqlite3"

    @property
    def chunk_cache(self) -> Path:
        """Rendered chunks kept by their content (daemon/book/cache.py)."""
        return self.state / "chunks"

    @property
    def speech_spool(self) -> Path:
        """Speech requests over the API and their audio, sentence by sentence, while they
        stream (daemon/stages/speak.py); nothing in it outlives the daemon that served it."""
        return self.state / "speech"

    @property
    def lock_file(self) -> Path:
        return self.state / "lock"

    @property
    def log_dir(self) -> Path:
        return self.state / "logs"

    def voice(self, name: str) -> VoicePaths:
        return VoicePaths(self, check_voice_name(name))

    def resolve_setting_path(self, value: str) -> Path:
        """Relative paths in config.yaml are relative to the root, not the current directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.path / path

    def contains(self, path: Path) -> bool:
        """Whether `path`, with every symlink followed, stays inside the root."""
        try:
            Path(os.path.realpath(path)).relative_to(self.path)
        except ValueError:
            return False
        return True

    def voice_names(self) -> tuple[list[str], dict[str, str]]:
        """Voices are folders of inbox/ or outbox/; return (valid names, refused name → why)."""
        names: set[str] = set()
        refused: dict[str, str] = {}
        for parent in (self.inbox, self.outbox):
            if not parent.is_dir():
                continue
            for entry in parent.iterdir():
                if not entry.is_dir() or entry.name.startswith("."):
                    continue
                problem = self.voice_folder_problem(entry)
                if problem:
                    refused[entry.name] = problem
                else:
                    names.add(entry.name)
        return sorted(names - refused.keys()), refused

    def voice_folder_problem(self, folder: Path) -> str | None:
        try:
            check_voice_name(folder.name)
        except VoiceNameError as exc:
            return str(exc)
        if folder.is_symlink() and not self.contains(folder):
            return f"{folder} is a symbolic link to {os.path.realpath(folder)}, outside the root"
        return None


@dataclass(frozen=True)
class VoicePaths:
    root: Root
    name: str

    @property
    def inbox(self) -> Path:
        return self.root.inbox / self.name

    @property
    def rejected(self) -> Path:
        return self.inbox / REJECTED_DIR

    @property
    def outbox(self) -> Path:
        return self.root.outbox / self.name

    @property
    def home(self) -> Path:
        return self.root.voices / self.name

    @property
    def config_file(self) -> Path:
        return self.home / "voice.yaml"

    @property
    def originals(self) -> Path:
        return self.home / "originals"

    @property
    def clips(self) -> Path:
        return self.home / "clips"

    @property
    def dataset(self) -> Path:
        return self.home / "dataset"

    @property
    def latents(self) -> Path:
        return self.home / "latents"

    @property
    def training(self) -> Path:
        return self.home / "training"

    @property
    def models(self) -> Path:
        return self.home / "models"


def free_name(directory: Path, name: str) -> Path:
    """`name` in `directory`, or `stem-2.ext`, `stem-3.ext`… if taken: never overwrite."""
    candidate = directory / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = directory / f"{stem}-{number}{suffix}"
        number += 1
    return candidate


def safe_name(name: str, max_stem_bytes: int = SAFE_STEM_BYTES) -> str:
    """A file name that is safe everywhere voicedrop writes it: no control characters and no
    `|` (the dataset lists' field separator), and a stem short enough for the longest name
    made from it (`<stem>_00000.wav`, `<stem>.error.txt`). A shortened stem ends in a piece
    of the original name's hash, so two long names stay apart."""
    stem, suffix = Path(name).stem, Path(name).suffix
    if not suffix.isascii() or len(suffix) > 8 or UNSAFE_CHARACTERS.search(suffix):
        stem, suffix = name, ""
    stem = UNSAFE_CHARACTERS.sub("_", stem).strip() or "clip"
    if len(stem.encode("utf-8")) > max_stem_bytes:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        cut = stem.encode("utf-8")[: max_stem_bytes - 9].decode("utf-8", "ignore")
        stem = f"{cut}-{digest}"
    return stem + suffix
