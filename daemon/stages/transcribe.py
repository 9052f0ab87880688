"""Dataset stage: transcribe each imported clip with Whisper, cut it into pieces and keep
voices/<voice>/dataset/ in the format ai-voice-cloning and DL-Art-School read:

    audio/<clip stem>_<NNNNN>.wav     22050 Hz pieces of 0.6-11.6 s
    train.txt, validation.txt         lines "audio/<file>.wav|<text>"
    whisper.json                      raw segments and pieces, keyed by source clip
    language.json                     the language detected once for the voice
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from loguru import logger

from daemon.core import atomic
from daemon.core.config import ConfigError, Settings, load_voice_settings
from daemon.core.ledger import Job, Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.core.worker import Blocked
from daemon.dataset.slicing import Piece, adjust, plan_pieces
from daemon.dataset.whisper import Whisper, WhisperOptions, load_for_whisper
from daemon.service.intake import IMPORT
from daemon.weights.store import ModelMissing

TRANSCRIBE = "transcribe"
PRUNE = "prune"
CLIP_RATE = 22050
UNKNOWN_TOKEN = 1
DEFAULT_REAL_TIME_FACTOR = 0.3


class Transcripts:
    """whisper.json: everything known about each source clip's transcription."""

    def __init__(self, voice: VoicePaths) -> None:
        self.path = voice.dataset / "whisper.json"
        self.entries: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        )

    def save(self) -> None:
        atomic.write_text(self.path, json.dumps(self.entries, indent=1, ensure_ascii=False))


def dataset_lines(transcripts: Transcripts, settings: Settings) -> dict[str, list[str]]:
    """Every piece of every clip, split deterministically into train and validation."""
    lines: dict[str, list[str]] = {"train": [], "validation": []}
    for clip in sorted(transcripts.entries.values(), key=lambda e: e["clip"]):
        for piece in clip["pieces"]:
            line = f"audio/{piece['file']}|{piece['text']}"
            split = "validation" if is_validation(piece, settings) else "train"
            lines[split].append(line)
    return lines


def is_validation(piece: dict[str, Any], settings: Settings) -> bool:
    """A stable share chosen by hash of the file name, plus ai-voice-cloning's rule that lines
    too short to learn from (text or audio) are only used for validation."""
    rules = settings.dataset
    if len(piece["text"]) < rules.validation_text_length:
        return True
    if piece["end"] - piece["start"] < rules.validation_audio_length:
        return True
    digest = hashlib.sha256(piece["file"].encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rules.validation_share


def write_lists(voice: VoicePaths, transcripts: Transcripts, settings: Settings) -> dict[str, int]:
    lines = dataset_lines(transcripts, settings)
    for split, rows in lines.items():
        atomic.write_text(voice.dataset / f"{split}.txt", "".join(f"{row}\n" for row in rows))
    return {split: len(rows) for split, rows in lines.items()}


def clean_text(text: str) -> str:
    """One line, no field separator: the list format has no escaping."""
    return " ".join(text.replace("|", " ").split())


@functools.cache
def tortoise_tokenizer() -> Any:
    from tortoise.utils.tokenizer import VoiceBpeTokenizer

    return VoiceBpeTokenizer()


def unknown_characters(text: str) -> str:
    """Characters TorToiSe's tokenizer maps to [UNK]: DLAS drops such lines silently."""
    tokenizer = tortoise_tokenizer()
    if UNKNOWN_TOKEN not in tokenizer.encode(text):
        return ""
    return "".join(sorted({c for c in text if UNKNOWN_TOKEN in tokenizer.encode(f"a{c}b")}))


class DatasetStage:
    """The transcribe job: one per imported clip."""

    kind = TRANSCRIBE

    def __init__(self, root: Root, settings: Settings, whisper: Whisper | None = None) -> None:
        self.root = root
        self.settings = settings
        self.whisper = whisper or Whisper()

    def run(self, job: Job, ledger: Ledger) -> None:
        voice = self.root.voice(job.voice)
        settings = self.voice_settings(voice)
        clip = job.input_path
        if not clip.exists():
            ledger.finish(job.id, outcome="removed")
            return
        options = self.options(settings)
        transcripts = Transcripts(voice)
        previous = transcripts.entries.get(clip.name)
        if self.is_current(previous, job, options):
            ledger.finish(job.id, outcome="unchanged")
            return
        language = self.language(voice, settings, options)
        transcript = self.whisper.transcribe(
            options, load_for_whisper(clip), language, progress_logger(clip.name)
        )
        audio, _ = sf.read(clip, dtype="float32")
        pieces = self.cut(audio, transcript.segments, settings)
        remove_piece_files(voice, previous)
        entry = {
            "clip": clip.name,
            "original": original_name(ledger, job),
            "source_sha256": job.content_hash,
            "options": options.signature(),
            "language": transcript.language,
            "duration": transcript.duration,
            "text": transcript.text,
            "segments": transcript.segments,
            "pieces": self.write_pieces(voice, clip, audio, pieces),
        }
        transcripts.entries[clip.name] = entry
        transcripts.save()
        counts = write_lists(voice, transcripts, settings)
        problem = no_lines_reason(clip.name, transcript.segments, pieces)
        ledger.finish(
            job.id,
            outcome="no_speech" if problem else "transcribed",
            problem=problem,
            audio_seconds=transcript.duration,
            seconds=transcript.seconds,
            pieces=len(pieces),
        )
        logger.info(
            "transcribed {} ({}): {} pieces in {:.1f} s ({:.2f}x real time); dataset now {} "
            "train / {} validation lines",
            clip.name,
            voice.name,
            len(pieces),
            transcript.seconds,
            transcript.duration / max(transcript.seconds, 1e-6),
            counts["train"],
            counts["validation"],
        )
        if problem:
            logger.warning("{} ({}): {}", clip.name, voice.name, problem)

    def on_idle(self) -> None:
        """Whisper stays loaded while clips keep coming and is released when they stop."""
        self.whisper.release()

    def give_up(self, job: Job, reason: str) -> None:
        voice = self.root.voice(job.voice)
        note = voice.dataset / f"{job.input_path.stem}.error.txt"
        atomic.write_text(note, f"transcribing {job.input_path.name} failed: {reason}\n")

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
            and not job.data.get("force")
            and previous["source_sha256"] == job.content_hash
            and previous["options"] == options.signature()
        )

    def language(self, voice: VoicePaths, settings: Settings, options: WhisperOptions) -> str:
        """The configured language, else the one detected once for this voice and stored."""
        if settings.whisper.language:
            return settings.whisper.language
        stored = voice.dataset / "language.json"
        if stored.exists():
            return json.loads(stored.read_text(encoding="utf-8"))["language"]
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


def original_name(ledger: Ledger, job: Job) -> str:
    """The file the user dropped, as named in originals/ (the import job knows it)."""
    imported = ledger.find(IMPORT, job.voice, job.content_hash)
    if imported is None or "original" not in imported.data:
        return job.input_path.name
    return Path(imported.data["original"]).name


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


def remove_piece_files(voice: VoicePaths, entry: dict[str, Any] | None) -> None:
    for piece in (entry or {}).get("pieces", []):
        (voice.dataset / "audio" / piece["file"]).unlink(missing_ok=True)


class PruneStage:
    """Drops the lines and pieces of clips whose original was removed from originals/."""

    kind = PRUNE

    def __init__(self, root: Root, settings: Settings) -> None:
        self.root = root
        self.settings = settings

    def run(self, job: Job, ledger: Ledger) -> None:
        voice = self.root.voice(job.voice)
        transcripts = Transcripts(voice)
        removed = removed_clips(voice, transcripts)
        for name in removed:
            remove_piece_files(voice, transcripts.entries.pop(name))
        transcripts.save()
        counts = write_lists(
            voice, transcripts, load_voice_settings(self.settings, voice.config_file)
        )
        ledger.finish(job.id, removed=removed)
        logger.info(
            "voice {}: removed the lines of {} (originals deleted); {} train lines left",
            voice.name,
            ", ".join(removed),
            counts["train"],
        )

    def give_up(self, job: Job, reason: str) -> None:
        logger.error("voice {}: could not prune the dataset: {}", job.voice, reason)

    def on_idle(self) -> None:
        """Nothing is kept loaded."""


def removed_clips(voice: VoicePaths, transcripts: Transcripts) -> list[str]:
    return sorted(
        name
        for name, entry in transcripts.entries.items()
        if not (voice.originals / entry["original"]).exists()
    )


def reconcile(root: Root, ledger: Ledger) -> int:
    """Queue what the folders say is missing: a transcription for every imported clip, a
    prune for every voice whose originals were deleted. Returns how many jobs were queued."""
    queued = 0
    for job in ledger.jobs(kind=IMPORT, state="done"):
        clip = job.data.get("clip")
        if job.data.get("outcome") == "imported" and clip and Path(clip).exists():
            queued += ledger.enqueue(TRANSCRIBE, job.voice, Path(clip), job.content_hash)[1]
    for voice_dir in sorted(root.voices.glob("*/dataset/whisper.json")):
        voice = root.voice(voice_dir.parents[1].name)
        removed = removed_clips(voice, Transcripts(voice))
        if removed:
            key = hashlib.sha256("\n".join(removed).encode()).hexdigest()
            queued += ledger.enqueue(PRUNE, voice.name, voice.dataset, key)[1]
    return queued


def queue_rebuild(root: Root, ledger: Ledger, voice: VoicePaths) -> int:
    """Transcribe every clip of a voice again (after a model change) and detect its language
    anew; returns the number of clips queued."""
    (voice.dataset / "language.json").unlink(missing_ok=True)
    reconcile(root, ledger)
    jobs = ledger.jobs(kind=TRANSCRIBE, voice=voice.name)
    for job in jobs:
        ledger.requeue(job.id, job.input_path)
        ledger.set_data(job.id, force=True)
    return len(jobs)


def transcription_progress(ledger: Ledger, voice: str) -> dict[str, Any]:
    """Clips transcribed and to go, with an ETA from this voice's measured speed."""
    jobs = ledger.jobs(kind=TRANSCRIBE, voice=voice)
    done = [j for j in jobs if j.state == "done" and "seconds" in j.data]
    todo = [j for j in jobs if j.state in ("pending", "running")]
    audio = sum(j.data["audio_seconds"] for j in done)
    factor = sum(j.data["seconds"] for j in done) / audio if audio else DEFAULT_REAL_TIME_FACTOR
    remaining = sum(sf.info(j.input_path).duration for j in todo if j.input_path.exists())
    return {
        "transcribed": len([j for j in jobs if j.state == "done"]),
        "to_transcribe": len(todo),
        "eta_seconds": round(remaining * factor, 1),
        "problems": [j.data["problem"] for j in done if j.data.get("problem")],
    }
