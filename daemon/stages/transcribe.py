"""Transcribe stage: each imported clip is transcribed with Whisper and cut into pieces that
become lines of the voice's dataset (see daemon.dataset.lists for the format)."""

from __future__ import annotations

import glob
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from loguru import logger

from daemon.core import atomic
from daemon.core.config import ConfigError, Settings, load_voice_settings, shorten
from daemon.core.jobs import ImportData, Job, JobKind, JobState, Outcome, TranscribeData
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.core.worker import Blocked, Device, Stage, StageContext
from daemon.dataset.lists import (
    CLIP_RATE,
    Transcripts,
    clean_text,
    known_language,
    remove_piece_files,
    unknown_characters,
    write_lists,
)
from daemon.dataset.slicing import Piece, adjust, plan_pieces
from daemon.dataset.whisper import WhisperOptions, load_for_whisper, shared_whisper
from daemon.quality.audit import PieceAudit, hear_pieces, is_suspect, record_clip
from daemon.quality.speaker import shared_encoder
from daemon.tts.latents import NoClips
from daemon.weights.store import ModelMissing

CRASH_RETRY_AFTER = 24 * 3600.0  # s before a transcription given up by the crash guard runs again


class TranscribeStage(Stage):
    """The transcribe job: one per imported clip."""

    kind = JobKind.TRANSCRIBE
    priority = 2  # after imports and renders: a burst of clips is imported before Whisper runs
    device = Device.SHARED
    foreground = "transcribe"
    retry_after_crash = CRASH_RETRY_AFTER

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self.whisper = shared_whisper()
        self.encoder = shared_encoder(self.settings.tts.device)

    def run(self, job: Job, ledger: Ledger) -> None:
        voice = self.root.voice(job.voice)
        settings = self.voice_settings(voice)
        clip = job.input_path
        if not clip.exists():
            ledger.finish(job.id, TranscribeData(outcome=Outcome.REMOVED))
            return
        options = self.options(settings)
        transcripts = Transcripts(voice)
        previous = transcripts.entries.get(clip.name)
        if self.is_current(previous, job, options):
            ledger.finish(job.id, TranscribeData(outcome=Outcome.UNCHANGED))
            return
        language = self.language(voice, settings, options)
        transcript = self.whisper.transcribe(
            options, load_for_whisper(clip), language, progress_logger(clip.name)
        )
        audio, _ = sf.read(clip, dtype="float32")
        pieces = self.cut(audio, transcript.segments, settings)
        remove_piece_files(voice, previous)
        remove_unlisted_pieces(voice, clip)
        written = self.write_pieces(voice, clip, audio, pieces)
        heard, heard_seconds = self.hear_again(voice, clip, written, transcript.language)
        entry = {
            "clip": clip.name,
            "original": original_name(ledger, job),
            "source_sha256": job.content_hash,
            "options": options.signature(),
            "language": transcript.language,
            "duration": transcript.duration,
            "text": transcript.text,
            "segments": transcript.segments,
            "pieces": written,
        }
        transcripts.entries[clip.name] = entry
        transcripts.save()
        counts = write_lists(voice, transcripts, settings)
        problem = no_lines_reason(clip.name, transcript.segments, pieces)
        ledger.finish(
            job.id,
            TranscribeData(
                Outcome.NO_SPEECH if problem else Outcome.TRANSCRIBED,
                problem=problem,
                audio_seconds=transcript.duration,
                seconds=transcript.seconds + heard_seconds,  # the ETA counts both
                heard_seconds=heard_seconds,
                pieces=len(pieces),
            ),
        )
        logger.info(
            "transcribed {} ({}): {} pieces in {:.1f} s, heard again in {:.1f} s ({:.2f}x real "
            "time); dataset now {} train / {} validation lines",
            clip.name,
            voice.name,
            len(pieces),
            transcript.seconds,
            heard_seconds,
            transcript.duration / max(transcript.seconds + heard_seconds, 1e-6),
            counts["train"],
            counts["validation"],
        )
        if problem:
            logger.warning("{} ({}): {}", clip.name, voice.name, problem)
        warn_suspects(voice, heard, settings)

    def hear_again(
        self, voice: VoicePaths, clip: Path, pieces: list[dict[str, Any]], language: str
    ) -> tuple[list[PieceAudit], float]:
        """The audit: every piece heard on its own by the model still loaded, recorded in
        audit.json before whisper.json lists the pieces; with the seconds it took."""
        started = time.monotonic()
        speaker = self.piece_speaker(voice)
        heard = hear_pieces(self.whisper, voice, clip.name, pieces, language, speaker)
        record_clip(voice, clip.name, heard)
        return heard, time.monotonic() - started

    def piece_speaker(self, voice: VoicePaths) -> Callable[[np.ndarray, int], float | None]:
        """How alike a piece's speaker and the voice's are (None: too little speech, or no
        clip of the voice with enough to compare with)."""
        from daemon.quality.speaker import NotEnoughSpeech, similarity, voice_embedding

        try:
            reference = voice_embedding(voice, self.encoder)
        except (NoClips, NotEnoughSpeech):
            return lambda audio, rate: None

        def compare(audio: np.ndarray, rate: int) -> float | None:
            try:
                return round(similarity(self.encoder.embed(audio, rate), reference), 4)
            except NotEnoughSpeech:
                return None

        return compare

    def on_idle(self) -> None:
        """Whisper stays loaded while clips keep coming and is released when they stop."""
        self.whisper.release()
        self.encoder.release()

    def release(self) -> None:
        self.whisper.release()
        self.encoder.release()

    @classmethod
    def reconcile(cls, root: Root, ledger: Ledger) -> int:
        """A transcription for every imported clip (one lost to kill -9 is queued again),
        and another try for one the crash-loop guard gave up a day ago: a clip that is not
        in the dataset is never given up for good."""
        return queue_transcriptions(ledger) + retry_crashed(ledger, cls.retry_after_crash)

    def give_up(self, job: Job, reason: str) -> None:
        """A note beside the dataset, and no pieces of a transcription that never finished."""
        voice = self.root.voice(job.voice)
        remove_unlisted_pieces(voice, job.input_path)
        note = voice.dataset / f"{job.input_path.stem}.error.txt"
        atomic.write_text(
            note,
            f"transcribing {job.input_path.name} failed: {reason}\n`voicedrop transcribe "
            f"{voice.name}` tries every clip of the voice again.\n",
        )

    def voice_settings(self, voice: VoicePaths) -> Settings:
        try:
            return load_voice_settings(self.settings, voice.config_file)
        except ConfigError as exc:
            raise Blocked(str(exc)) from exc

    def options(self, settings: Settings) -> WhisperOptions:
        try:
            return WhisperOptions.from_settings(settings, self.root)
        except ModelMissing as exc:
            raise Blocked(str(exc)) from exc

    def is_current(self, previous: dict | None, job: Job, options: WhisperOptions) -> bool:
        """Incremental: the same clip with the same Whisper settings is never redone."""
        return (
            previous is not None
            and not job.data.force
            and previous["source_sha256"] == job.content_hash
            and previous["options"] == options.signature()
        )

    def language(self, voice: VoicePaths, settings: Settings, options: WhisperOptions) -> str:
        """The configured language, else the one detected once for this voice and stored."""
        known = known_language(voice, settings)
        if known is not None:
            return known
        stored = voice.dataset / "language.json"
        clips = longest_clips(voice)
        language, probability = self.whisper.detect_language(
            options, [load_for_whisper(c) for c in clips]
        )
        record = {"language": language, "probability": probability, "from": [c.name for c in clips]}
        atomic.write_text(stored, json.dumps(record, indent=1))
        logger.info(
            "voice {} speaks {!r} (p={:.2f}, from {})",
            voice.name,
            language,
            probability,
            ", ".join(record["from"]),
        )
        return language

    def cut(self, audio: np.ndarray, segments: list[dict], settings: Settings) -> list[Piece]:
        rules = settings.dataset
        planned = plan_pieces(segments, rules.min_seconds, rules.max_seconds)
        adjusted = [
            adjust(
                piece,
                audio,
                CLIP_RATE,
                start_offset=rules.start_offset,
                end_offset=rules.end_offset,
                trim=rules.trim_silence,
                min_seconds=rules.min_seconds,
                max_seconds=rules.max_seconds,
            )
            for piece in planned
        ]
        return [p for p in adjusted if p.duration >= rules.min_seconds]

    def write_pieces(
        self, voice: VoicePaths, clip: Path, audio: np.ndarray, pieces: list[Piece]
    ) -> list[dict[str, Any]]:
        written = []
        for index, piece in enumerate(pieces):
            name = f"{clip.stem}_{index:05d}.wav"
            samples = audio[round(piece.start * CLIP_RATE) : round(piece.end * CLIP_RATE)]
            with atomic.atomic_path(voice.dataset / "audio" / name) as tmp:
                sf.write(tmp, samples, CLIP_RATE, subtype="FLOAT", format="WAV")
            text = clean_text(piece.text)
            written.append(
                {
                    "file": name,
                    "start": piece.start,
                    "end": piece.end,
                    "text": text,
                    "unknown": unknown_characters(text),
                }
            )
        return written


def warn_suspects(voice: VoicePaths, heard: list[PieceAudit], settings: Settings) -> None:
    for piece in (p for p in heard if is_suspect(p, settings.dataset)):
        logger.warning(
            "audio/{} ({}) is suspect: CER {:.2f} (dataset.max_cer {}), speaker similarity {} "
            "(dataset.min_similarity {}); heard {!r} for {!r}",
            piece.file,
            voice.name,
            piece.cer,
            settings.dataset.max_cer,
            "-" if piece.similarity is None else f"{piece.similarity:.2f}",
            settings.dataset.min_similarity,
            shorten(piece.heard),
            shorten(piece.text),
        )


def original_name(ledger: Ledger, job: Job) -> str:
    """The file the user dropped, as named in originals/ (the import job knows it)."""
    imported = ledger.find(JobKind.IMPORT, job.voice, job.content_hash)
    if imported is None or imported.data.original is None:
        return job.input_path.name
    return imported.data.original.name


def longest_clips(voice: VoicePaths) -> list[Path]:
    """Enough of the voice's longest clips to fill Whisper's 30 s detection window."""
    clips = sorted(voice.clips.glob("*.wav"), key=lambda c: sf.info(c).duration, reverse=True)
    chosen, total = [], 0.0
    for clip in clips:
        chosen.append(clip)
        total += sf.info(clip).duration
        if total >= 30:
            break
    return chosen


def progress_logger(name: str):
    started = time.monotonic()
    last = [0.0]

    def report(done: float) -> None:
        now = time.monotonic()
        if now - last[0] < 5 or done <= 0:
            return
        last[0] = now
        eta = (now - started) * (1 - done) / done
        logger.info("transcribing {}: {:.0%} (ETA {:.0f} s)", name, min(done, 1.0), eta)

    return report


def no_lines_reason(name: str, segments: list[dict], pieces: list[Piece]) -> str | None:
    if pieces:
        return None
    if not segments:
        return f"no speech found in {name} (Whisper heard nothing to transcribe); it adds no lines"
    return (
        f"speech found in {name}, but every piece was shorter than the dataset minimum or too "
        "long to cut between words; it adds no lines"
    )


def queue_transcriptions(ledger: Ledger) -> int:
    queued = 0
    for job in ledger.jobs(kind=JobKind.IMPORT, state=JobState.DONE):
        data: ImportData = job.data
        if data.outcome == Outcome.IMPORTED and data.clip is not None and data.clip.exists():
            queued += ledger.enqueue(JobKind.TRANSCRIBE, job.voice, data.clip, job.content_hash)[1]
    return queued


def retry_crashed(ledger: Ledger, after: float) -> int:
    """Transcriptions the crash-loop guard gave up at least `after` seconds ago, queued
    again with fresh attempts."""
    cutoff = time.time() - after
    crashed = [
        job
        for job in ledger.jobs(kind=JobKind.TRANSCRIBE, state=JobState.FAILED)
        if job.data.outcome == Outcome.CRASHED and (job.finished_at or 0) <= cutoff
    ]
    for job in crashed:
        ledger.requeue(job.id, job.input_path)
        logger.info("{}: transcribing {} again after its crashes", job.voice, job.input_path.name)
    return len(crashed)


def queue_rebuild(ledger: Ledger, voice: VoicePaths) -> int:
    """Transcribe every clip of a voice again (after a model change) and detect its language
    anew; returns the number of clips queued."""
    (voice.dataset / "language.json").unlink(missing_ok=True)
    queue_transcriptions(ledger)
    jobs = ledger.jobs(kind=JobKind.TRANSCRIBE, voice=voice.name)
    for job in jobs:
        ledger.requeue(job.id, job.input_path, replace(job.data, force=True))
    return len(jobs)


def remove_unlisted_pieces(voice: VoicePaths, clip: Path) -> None:
    """Pieces of `clip` that whisper.json does not list: written by a run that was killed
    before it could record them."""
    entry = Transcripts(voice).entries.get(clip.name) or {}
    listed = {piece["file"] for piece in entry.get("pieces", [])}
    for piece in (voice.dataset / "audio").glob(f"{glob.escape(clip.stem)}_[0-9]*.wav"):
        if piece.name not in listed:
            piece.unlink(missing_ok=True)
