"""A voice's own autoregressive model: the fine-tune its renders use, wherever it came from.

`voices/<voice>/models/autoregressive.pth` is the model renders use. It gets there from
voicedrop's own training, from `voicedrop models use VOICE FILE`, or from a checkpoint dropped
into `voices/<voice>/models/` (DL-Art-School / ai-voice-cloning write `<step>_gpt.pth`). Every
file is checked strictly against the autoregressive model's dimensions before it is used, the
replaced model is kept under `previous/` (`voicedrop models rollback VOICE` puts the last one
back), and `autoregressive.json` says where the model came from. Installing is crash-safe: the
active model is always either the old or the new file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from loguru import logger

from daemon.core.atomic import TEMP_PREFIX, fsync_directory, write_text
from daemon.core.files import file_sha256
from daemon.tts.checkpoints import build_autoregressive, load_strict
from daemon.tts.spec import AUTOREGRESSIVE_FILE, BadCheckpoint, ModelSpec

PROVENANCE_FILE = "autoregressive.json"
PREVIOUS_DIR = "previous"
KEEP_PREVIOUS = 3  # each is the size of the model (1.7 GB released): keep a few, not all
REFUSED_SUFFIX = ".error.txt"


@dataclass(frozen=True)
class InstalledModel:
    """What `autoregressive.json` records about the model renders use."""

    sha256: str
    origin: str  # "training", "models use" or "dropped"
    source: str  # the file it was made from
    installed_at: float


def check_fits(source: Path, spec: ModelSpec) -> None:
    """Raise BadCheckpoint unless `source` loads strictly into the autoregressive model."""
    load_strict(build_autoregressive(spec), source)


def use_model(models_dir: Path, source: Path, spec: ModelSpec, origin: str) -> InstalledModel:
    """Check `source`, copy it atomically into place and keep the model it replaces."""
    source = Path(source)
    if not source.is_file():
        raise BadCheckpoint(f"{source} does not exist or is not a file")
    check_fits(source, spec)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".pth", dir=models_dir)
    os.close(fd)
    staged = Path(name)
    try:
        shutil.copyfile(source, staged)
        with open(staged, "rb+") as copied:
            os.fsync(copied.fileno())
        return install(models_dir, staged, origin, source)
    finally:
        staged.unlink(missing_ok=True)


class NoPreviousModel(Exception):
    """The voice has no replaced model kept to go back to."""


def install(models_dir: Path, staged: Path, origin: str, source: Path) -> InstalledModel:
    """Make `staged` (a file on the voice folder's filesystem: it is renamed) the active model,
    keeping the old one."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    active = models_dir / AUTOREGRESSIVE_FILE
    record = InstalledModel(file_sha256(staged), origin, str(source), time.time())
    _keep_previous(models_dir, active)
    os.replace(staged, active)
    fsync_directory(models_dir)
    write_text(models_dir / PROVENANCE_FILE, json.dumps(asdict(record), indent=1) + "\n")
    logger.info(
        "{}: now renders with {} ({}, from {})", models_dir.parent.name, active.name, origin, source
    )
    return record


def rollback(models_dir: Path) -> InstalledModel:
    """Put the last replaced model back, byte for byte (it is renamed, not rewritten). The
    model it replaces is kept in previous/ in turn, so a second rollback undoes the first."""
    kept = sorted((Path(models_dir) / PREVIOUS_DIR).glob("autoregressive-*.pth"))
    if not kept:
        raise NoPreviousModel(
            f"voice {Path(models_dir).parent.name} has no previous model to go back to "
            f"({Path(models_dir) / PREVIOUS_DIR} holds none): a model is kept there only once "
            "another replaced it"
        )
    last = kept[-1]
    earlier = read_provenance(last.with_suffix(".json"))  # where it first came from
    record = install(models_dir, last, "rollback", Path(earlier.source) if earlier else last)
    last.with_suffix(".json").unlink(missing_ok=True)
    return record


def installed(models_dir: Path) -> InstalledModel | None:
    """The provenance of the active model, or None (no model, or one from before this file)."""
    if not (Path(models_dir) / AUTOREGRESSIVE_FILE).is_file():
        return None
    return read_provenance(Path(models_dir) / PROVENANCE_FILE)


def read_provenance(path: Path) -> InstalledModel | None:
    """An autoregressive.json (or a kept model's copy), or None when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return InstalledModel(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        return None


def adopt_dropped(models_dir: Path, spec: ModelSpec) -> list[Path]:
    """Use checkpoints a user dropped into the voice's models folder, oldest first.

    A file that does not fit gets `<name>.error.txt` beside it and the current model stays;
    deleting the error file makes voicedrop look at the checkpoint again."""
    adopted = []
    for dropped in dropped_checkpoints(Path(models_dir)):
        refusal = dropped.with_name(dropped.name + REFUSED_SUFFIX)
        try:
            check_fits(dropped, spec)
            install(models_dir, dropped, "dropped", dropped)
            adopted.append(dropped)
        except BadCheckpoint as exc:
            logger.warning("{} is not used: {}", dropped, exc)
            _write_refusal(refusal, f"{dropped.name} was not used: {exc}\n")
        except OSError as exc:  # the folder, not the file: keep rendering with the current model
            logger.warning("{} could not be put in place ({}); will try again", dropped, exc)
    return adopted


def _write_refusal(path: Path, text: str) -> None:
    try:
        write_text(path, text)
    except OSError as exc:
        logger.warning("could not write {}: {}", path, exc)


def dropped_checkpoints(models_dir: Path) -> list[Path]:
    """`*.pth` files in the folder other than the active model, not yet refused."""
    if not models_dir.is_dir():
        return []
    found = [
        path
        for path in models_dir.glob("*.pth")
        if path.name != AUTOREGRESSIVE_FILE
        and not path.name.startswith(TEMP_PREFIX)
        and path.is_file()
        and not path.is_symlink()
        and not path.with_name(path.name + REFUSED_SUFFIX).exists()
    ]
    return sorted(found, key=lambda path: (path.stat().st_mtime_ns, path.name))


def _keep_previous(models_dir: Path, active: Path) -> None:
    """Hard-link the active model into previous/ (no copy of gigabytes; the active name is
    replaced afterwards in one rename), then drop the oldest beyond KEEP_PREVIOUS."""
    if not active.is_file():
        return
    folder = models_dir / PREVIOUS_DIR
    folder.mkdir(exist_ok=True)
    kept = (
        folder / f"autoregressive-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}.pth"
    )
    try:
        os.link(active, kept)
    except OSError:
        shutil.copyfile(active, kept)
    provenance = models_dir / PROVENANCE_FILE
    if provenance.is_file():
        shutil.copyfile(provenance, kept.with_suffix(".json"))
    for old in sorted(folder.glob("autoregressive-*.pth"))[:-KEEP_PREVIOUS]:
        logger.info("removing {}: only the last {} replaced models are kept", old, KEEP_PREVIOUS)
        old.unlink()
        old.with_suffix(".json").unlink(missing_ok=True)
