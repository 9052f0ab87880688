"""From a stable drop to a queued job, or to rejected/ with a reason a user can act on."""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from daemon.book.lexicon import lexicon_digest
from daemon.core import atomic
from daemon.core.config import Settings
from daemon.core.files import file_sha256, reject_file
from daemon.core.jobs import JobKind, JobState
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.service.watch import Drop
from daemon.tts.outputs import error_file, is_rendered, name_problem, refusal_note


class Intake:
    """Decides what a stable drop becomes: an import job, a rejection, or nothing."""

    def __init__(self, root: Root, settings: Settings, ledger: Ledger) -> None:
        self.root = root
        self.settings = settings
        self.ledger = ledger
        self.warned_voices: set[str] = set()
        self.refused: set[Path] = set()  # texts said once not to be rendered

    def take(self, drop: Drop) -> bool:
        """Returns whether a new job was queued."""
        problem = self.root.voice_folder_problem(self.root.inbox / drop.voice)
        if problem:
            self.refuse_voice(drop.voice, problem)
            return False
        voice = self.root.voice(drop.voice)
        if drop.folder == "outbox":
            return self.queue_render(drop.path)
        if drop.path.is_symlink():
            reject_file(voice, drop.path, symlink_reason(drop.path))
            return False
        if not drop.path.is_file():
            return False
        extension = drop.path.suffix.lower().lstrip(".")
        if extension not in self.settings.imports.extensions:
            reject_file(voice, drop.path, extension_reason(extension, self.settings))
            return False
        return self.queue_import(voice, drop.path)

    def queue_import(self, voice: VoicePaths, path: Path) -> bool:
        content_hash = file_sha256(path)
        job, created = self.ledger.enqueue(JobKind.IMPORT, voice.name, path, content_hash)
        if created:
            logger.info("queued {} for voice {}", path.name, voice.name)
            return True
        if job.state == JobState.FAILED:
            self.ledger.requeue(job.id, path)
            logger.info("queued {} again (it failed before: {})", path.name, job.last_error)
            return True
        if job.input_path == path and job.state in (
            JobState.PENDING,
            JobState.RUNNING,
            JobState.WAITING,
        ):
            return False
        reject_file(voice, path, duplicate_reason(self.root, job.data.original or job.input_path))
        return False

    def queue_render(self, text: Path) -> bool:
        """Render a text whose audio is missing or whose sidecar names another text hash or
        lexicon (an edited lexicon.yaml renders the voice's texts again: their unchanged
        chunks come from the cache); a text that failed waits for an edit, or for its
        .error.txt to be deleted."""
        if text.is_symlink() or not text.is_file():
            return False
        problem = name_problem(text)
        if problem is not None:
            self.refuse_once(text, problem)
            return False
        withdraw_refusal(text)
        content_hash = file_sha256(text)
        voice = text.parent.name
        if is_rendered(text, content_hash, lexicon_digest(self.root.voice(voice))):
            return False
        job, created = self.ledger.enqueue(JobKind.RENDER, voice, text, content_hash)
        if created:
            logger.info("queued {} for rendering in voice {}", text.name, voice)
            return True
        retry_failed = job.state == JobState.FAILED and not error_file(text).exists()
        if job.state == JobState.DONE or retry_failed:
            self.ledger.requeue(job.id, text)
            logger.info("queued {} for rendering again", text.name)
            return True
        return False

    def refuse_once(self, text: Path, problem: str) -> None:
        """Say once why a text is not rendered, in a note beside it where its name leaves room;
        no job is queued, so it is not tried (and failed) again at every rescan."""
        if text in self.refused:
            return
        self.refused.add(text)
        logger.error("not rendering {}: {}", text, problem)
        note = refusal_note(text)
        if note is None:
            return
        try:
            atomic.write_text(note, f"{problem}\n")
        except OSError as exc:
            logger.error("could not write {}: {} (`status` lists the text)", note.name, exc)

    def check_voice_folders(self) -> None:
        """Say once why a voice folder is refused; its files are never even listed."""
        for name, problem in self.root.voice_names()[1].items():
            self.refuse_voice(name, problem)

    def refuse_voice(self, name: str, problem: str) -> None:
        if name not in self.warned_voices:
            self.warned_voices.add(name)
            logger.error("refusing voice folder {!r}: {}", name, problem)


def symlink_reason(path: Path) -> str:
    return (
        f"{path.name} is a symbolic link (to {os.readlink(path)}); voicedrop never follows "
        "links in the inbox. Copy the audio file itself into the folder."
    )


def extension_reason(extension: str, settings: Settings) -> str:
    shown = f".{extension}" if extension else "no extension"
    allowed = ", ".join(settings.imports.extensions)
    return (
        f"{shown} is not an audio file type voicedrop imports (allowed: {allowed}; "
        "change import.extensions in config.yaml to add one)."
    )


def duplicate_reason(root: Root, first: Path) -> str:
    try:
        shown = first.relative_to(root.path)
    except ValueError:
        shown = first
    return f"the same audio (identical content) was already imported as {shown}; nothing to do."


def withdraw_refusal(text: Path) -> None:
    """A refusal that no longer holds (the rival was renamed) leaves no note behind."""
    note = refusal_note(text)
    if note is not None and note.exists():
        try:
            note.unlink()
        except OSError as exc:  # a folder made read-only meanwhile: the note is only stale
            logger.warning("could not remove {}: {}", note, exc)
