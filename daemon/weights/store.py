"""Where model files live: one store per machine, shared by every root, and weights the user
already has, found where TorToiSe and Hugging Face keep them, without copying.

The store holds `whisper-base/` (assembled by `make setup`) and `tortoise/` (filled by
`voicedrop models fetch`, with a manifest of the sha256 checked for each file). Pure Python at
import: the daemon, `status` and `doctor` import it without torch.
"""

from __future__ import annotations

import enum
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from daemon.core.config import Settings
from daemon.core.paths import Root

STORE_ENV = "VOICEDROP_MODELS"
TORTOISE_ENV = "TORTOISE_MODELS_DIR"  # tortoise-tts 3.0.0 api.py: its Hugging Face cache_dir
TORTOISE_CACHE = Path("~/.cache/tortoise/models")  # tortoise-tts 3.0.0's default cache_dir
TORTOISE_REPO = "Manmay/tortoise-tts"  # where tortoise-tts 3.0.0's get_model_path downloads
DVAE_REPO = "jbetker/tortoise-tts-v2"  # where ai-voice-cloning downloads dvae.pth
TORTOISE_FOLDER = "tortoise"
MANIFEST_FILE = "manifest.json"
LEGACY_PREFIX = "models/"  # roots made before the store named its models relative to the root
SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")


class ModelMissing(Exception):
    """The configured Whisper model is neither a folder nor a name to download."""


class Source(enum.Enum):
    """Where a model folder was found, as `doctor` names it."""

    CONFIG = "config folder (tts.models_dir)"
    TORTOISE_ENV = f"{TORTOISE_ENV}"
    STORE = "model store"
    TORTOISE_CACHE = "tortoise's cache"


@dataclass(frozen=True)
class Location:
    folder: Path
    source: Source


class FileState(enum.Enum):
    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    MISMATCH = "MISMATCH"
    MISSING = "missing"


@dataclass(frozen=True)
class FileStatus:
    state: FileState
    detail: str


# -- the store -------------------------------------------------------------------------------


def install_folder() -> Path | None:
    """The source checkout this package runs from (where `make setup` puts models/), if any."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "pyproject.toml").is_file() else None


def store_dir(root: Root, settings: Settings) -> Path:
    """VOICEDROP_MODELS, else models.store, else the checkout's models/, else XDG data."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV]).expanduser().resolve()
    if settings.models.store:
        return root.resolve_setting_path(settings.models.store)
    checkout = install_folder()
    if checkout is not None:
        return checkout / "models"
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home).expanduser() / "voicedrop" / "models"


def tortoise_store(root: Root, settings: Settings) -> Path:
    return store_dir(root, settings) / TORTOISE_FOLDER


# -- TorToiSe weights -----------------------------------------------------------------------


def hf_snapshots(cache_dir: Path, repo: str) -> list[Path]:
    """Snapshot folders of `repo` in a Hugging Face cache: the one refs/main names first."""
    repo_dir = cache_dir / f"models--{repo.replace('/', '--')}"
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return []
    found = [p for p in snapshots.iterdir() if p.is_dir()]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    ref = repo_dir / "refs" / "main"
    main = snapshots / ref.read_text().strip() if ref.is_file() else None
    return sorted(found, key=lambda p: p != main)


def tortoise_candidates(
    root: Root, settings: Settings, tts_models_dir: str | None
) -> list[Location]:
    """Every folder that may hold TorToiSe's weights, in the order they are preferred."""
    if tts_models_dir:
        return [Location(root.resolve_setting_path(tts_models_dir), Source.CONFIG)]
    candidates = []
    env = os.environ.get(TORTOISE_ENV)
    if env:
        base = Path(env).expanduser()
        candidates += [Location(p, Source.TORTOISE_ENV) for p in hf_snapshots(base, TORTOISE_REPO)]
        candidates.append(Location(base, Source.TORTOISE_ENV))
    candidates.append(Location(tortoise_store(root, settings), Source.STORE))
    if not env:  # like tortoise itself: the variable replaces its default cache
        base = TORTOISE_CACHE.expanduser()
        candidates += [
            Location(p, Source.TORTOISE_CACHE) for p in hf_snapshots(base, TORTOISE_REPO)
        ]
    return candidates


def tortoise_models(
    root: Root, settings: Settings, tts_models_dir: str | None, decoder: str
) -> Location:
    """The folder a render with `decoder` loads from: tts.models_dir when set; else the first
    candidate holding every file it needs, else the fullest one, else the store (where
    `voicedrop models fetch` puts them)."""
    from daemon.tts.spec import missing_weights, needed_files

    candidates = tortoise_candidates(root, settings, tts_models_dir)
    needed = len(needed_files(decoder))
    present = [needed - len(missing_weights(c.folder, decoder)) for c in candidates]
    for location, count in zip(candidates, present, strict=True):
        if count == needed:
            return location
    best = max(present)
    if best == 0:
        return next(c for c in candidates if c.source in (Source.CONFIG, Source.STORE))
    return candidates[present.index(best)]


def dvae_file(root: Root, settings: Settings, tts_models_dir: str | None) -> Path:
    """dvae.pth for fine-tuning: tortoise-tts never ships it, so it may sit apart from the
    other weights. Where it would be fetched to when it is nowhere."""
    from daemon.tts.spec import DVAE_FILE

    folders = [c.folder for c in tortoise_candidates(root, settings, tts_models_dir)]
    if not tts_models_dir:
        for base in (Path(os.environ.get(TORTOISE_ENV) or TORTOISE_CACHE).expanduser(),):
            folders += [p / ".models" for p in hf_snapshots(base, DVAE_REPO)]
    for folder in folders:
        if (folder / DVAE_FILE).is_file():
            return folder / DVAE_FILE
    if tts_models_dir:
        return folders[0] / DVAE_FILE
    return tortoise_store(root, settings) / DVAE_FILE


# -- Whisper --------------------------------------------------------------------------------


def whisper_model(root: Root, settings: Settings, *, check_name: bool = True) -> str:
    """whisper.model as a folder (absolute, relative to the root, or a folder of that name
    in the store) or a faster-whisper model name to download. `models/NAME`, the old
    default, also finds NAME in the store. `status` passes check_name False: checking a name
    against faster-whisper's list imports faster-whisper and PyAV, which it must not pay."""
    model, store = settings.whisper.model, store_dir(root, settings)
    if "/" in model or model.startswith(".") or Path(model).expanduser().is_absolute():
        path = root.resolve_setting_path(model)
        if not path.exists() and model.startswith(LEGACY_PREFIX):
            in_store = store / model.removeprefix(LEGACY_PREFIX)
            path = in_store if in_store.is_dir() else path
        return checked_whisper_folder(path)
    if (store / model).is_dir():
        return checked_whisper_folder(store / model)
    if not check_name:
        return model
    from faster_whisper import available_models

    if model in available_models():
        return model
    raise ModelMissing(
        f"the Whisper model {model!r} is not in the model store {store} and is not a "
        f"faster-whisper model name; run `make setup` or set whisper.model"
    )


def checked_whisper_folder(path: Path) -> str:
    if not path.is_dir():
        raise ModelMissing(
            f"the Whisper model {path} does not exist; run `make setup` or set whisper.model"
        )
    if not (path / "model.bin").is_file():
        raise ModelMissing(f"the Whisper model folder {path} has no model.bin; run `make setup`")
    return str(path)


# -- the manifest: what was checked when a file was fetched ---------------------------------


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """File name -> its record; a damaged manifest counts as empty (files are unverified and
    the next fetch checks them again)."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, dict) or not all(map(is_record, files.values())):
            raise ValueError("unexpected layout")
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("{} is damaged ({}); its files count as unverified", path, error)
        return {}
    return files


def is_record(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("sha256"), str)
        and isinstance(value.get("size"), int)
    )


def write_manifest(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    from daemon.core.atomic import write_text

    write_text(Path(folder) / MANIFEST_FILE, json.dumps({"files": files}, indent=1) + "\n")


def expected_sha256(path: Path) -> tuple[str, int | None, str] | None:
    """(sha256, size, where that comes from) a model file must have, when anything says so:
    the store's manifest, or the blob name of a Hugging Face cache (the LFS sha256)."""
    path = Path(path)
    record = read_manifest(path.parent).get(path.name)
    if record is not None:
        return record["sha256"], record["size"], f"{path.parent / MANIFEST_FILE}"
    if path.is_symlink():
        blob = path.resolve()
        if blob.parent.name == "blobs" and SHA256_NAME.match(blob.name):
            return blob.name, None, "its Hugging Face cache blob name"
    return None


def file_status(path: Path) -> FileStatus:
    """Whether a model file is the one that was checked when it was fetched (hashes it)."""
    from daemon.core.files import cached_sha256

    path = Path(path)
    if not path.is_file():
        return FileStatus(FileState.MISSING, f"{path} is missing")
    expected = expected_sha256(path)
    if expected is None:
        return FileStatus(FileState.UNVERIFIED, f"{path} (no recorded sha256 to check it against)")
    sha256, size, where = expected
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return FileStatus(
            FileState.MISMATCH, f"{path} has {actual_size} bytes, {where} says {size}"
        )
    actual = cached_sha256(path)
    if actual != sha256:
        return FileStatus(
            FileState.MISMATCH, f"{path} has sha256 {actual[:12]}…, {where} says {sha256[:12]}…"
        )
    return FileStatus(FileState.VERIFIED, f"{path} (sha256 {sha256[:12]}… as in {where})")


def check_before_loading(path: Path) -> None:
    """Refuse a truncated or altered model file before torch reads it."""
    from daemon.tts.spec import BadCheckpoint

    status = file_status(path)
    if status.state is FileState.MISMATCH:
        raise BadCheckpoint(
            f"{status.detail}: it is damaged or was changed; run `voicedrop models fetch` "
            "to fetch it again"
        )
