"""Rebuilding the job ledger from the folders: the folders are the truth, the ledger a cache.

Run at every start: after a lost ledger every clip is recorded again, after a partial loss
(a ledger restored from an older backup) only the clips it does not know. What a lost ledger
knew that matters is on disk: each clip in voices/<voice>/clips/ beside its
original in originals/ was imported (the content hash intake dedupes drops by is the
original's sha256), and each clip with an entry in dataset/whisper.json was transcribed. Both
are recorded as done jobs; the stages' `reconcile()` then queues what is missing (the
transcriptions of the other clips) and the start-up scan of outbox/ queues texts without a
current wav. A clip's analysis is not rebuilt: `status` falls back to its duration.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.core.files import file_sha256
from daemon.core.jobs import FoundJob, ImportData, JobKind, Outcome, TranscribeData
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoiceNameError, VoicePaths
from daemon.dataset.lists import Transcripts

CLASH_NUMBER = re.compile(r"-\d+$")  # free_name's `stem-2.ext` for a name already taken


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild found: the log line a user reads after a lost ledger."""

    clips: int
    transcribed: int
    orphans: tuple[str, ...]  # clips with no original left: not known as imported


def rebuild_ledger(root: Root, ledger: Ledger) -> Rebuilt:
    """Record each imported and transcribed clip the ledger does not know as a done job; a
    voice whose clips are all known costs one query."""
    clips, transcribed, orphans = 0, 0, []
    for voice in voices_with_clips(root):
        unknown = unknown_clips(voice, ledger)
        if not unknown:
            continue
        found, voice_orphans = voice_jobs(voice)
        found = [job for job in found if clip_of(job).name in unknown]
        clips += ledger.restore(job for job in found if job.kind == JobKind.IMPORT)
        transcribed += ledger.restore(job for job in found if job.kind == JobKind.TRANSCRIBE)
        orphans += [f"{voice.name}/{name}" for name in voice_orphans if name in unknown]
    return Rebuilt(clips, transcribed, tuple(orphans))


def unknown_clips(voice: VoicePaths, ledger: Ledger) -> set[str]:
    """Names of the clips in clips/ that no import job of the ledger wrote."""
    known = {job.data.clip for job in ledger.jobs(kind=JobKind.IMPORT, voice=voice.name)}
    return {clip.name for clip in voice.clips.glob("*.wav") if clip not in known}


def clip_of(job: FoundJob) -> Path:
    return job.data.clip if isinstance(job.data, ImportData) else job.input_path


def voices_with_clips(root: Root) -> list[VoicePaths]:
    """Folders of voices/ with clips; one no voice can have (a hidden one) is not a voice."""
    if not root.voices.is_dir():
        return []
    voices = []
    for folder in sorted(root.voices.iterdir()):
        try:
            voice = root.voice(folder.name)
        except VoiceNameError:
            continue
        if voice.clips.is_dir():
            voices.append(voice)
    return voices


def voice_jobs(voice: VoicePaths) -> tuple[list[FoundJob], list[str]]:
    """The done import (and transcribe) job of each clip with an original, and the names of
    the clips without one."""
    transcripts = Transcripts(voice).entries
    pairs = pair_originals(voice, transcripts)
    jobs: list[FoundJob] = []
    for clip, original in pairs.items():
        content_hash = file_sha256(original)
        imported = ImportData(Outcome.IMPORTED, original=original, clip=clip, analysis=None)
        jobs.append(FoundJob(JobKind.IMPORT, voice.name, original, content_hash, imported))
        entry = transcripts.get(clip.name)
        if entry is not None and entry.get("source_sha256") == content_hash:
            jobs.append(
                FoundJob(JobKind.TRANSCRIBE, voice.name, clip, content_hash, transcribed(entry))
            )
    orphans = sorted(clip.name for clip in voice.clips.glob("*.wav") if clip not in pairs)
    return jobs, orphans


def transcribed(entry: dict[str, Any]) -> TranscribeData:
    """A clip's transcription as its job recorded it (Whisper's time is not known again, so
    the ETA of `status` keeps to the measured clips)."""
    pieces = len(entry.get("pieces", []))
    return TranscribeData(
        Outcome.TRANSCRIBED if pieces else Outcome.NO_SPEECH,
        audio_seconds=entry.get("duration"),
        pieces=pieces,
    )


def pair_originals(voice: VoicePaths, transcripts: dict[str, dict[str, Any]]) -> dict[Path, Path]:
    """Each clip's original, each original used once: the one its transcription names, else
    the one with the clip's stem (`a.wav` from `a.mp3`), else one with the stem before the
    clash number import gave the clip (`a-2.wav` from `a.wav` beside `a.mp3`)."""
    clips = sorted(voice.clips.glob("*.wav"))
    originals = sorted(p for p in voice.originals.glob("*") if p.is_file())
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for original in originals:
        by_stem[original.stem].append(original)
    pairs: dict[Path, Path] = {}
    for clip in clips:
        named = transcripts.get(clip.name, {}).get("original")
        if named is not None and voice.originals / named in by_stem[Path(named).stem]:
            pairs[clip] = voice.originals / named
            by_stem[Path(named).stem].remove(pairs[clip])
    for stem_of in (lambda clip: clip.stem, lambda clip: CLASH_NUMBER.sub("", clip.stem)):
        for clip in clips:
            if clip not in pairs and by_stem[stem_of(clip)]:
                pairs[clip] = by_stem[stem_of(clip)].pop(0)
    return pairs
