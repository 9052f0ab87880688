"""Prune stage: when originals are deleted from voices/<voice>/originals/, the lines and
pieces cut from them leave the dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path

from loguru import logger

from daemon.core.config import load_voice_settings
from daemon.core.jobs import ImportData, Job, JobKind, JobState, Outcome, PruneData
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.core.worker import Stage
from daemon.dataset.lists import Transcripts, remove_piece_files, removed_clips, write_lists


class PruneStage(Stage):
    """Drops the lines, pieces and clip of every clip whose original was removed from
    originals/: the voice's latents and `status` no longer count it either."""

    kind = JobKind.PRUNE
    foreground = "transcribe"

    def run(self, job: Job, ledger: Ledger) -> None:
        voice = self.root.voice(job.voice)
        transcripts = Transcripts(voice)
        removed = removed_clips(voice, transcripts)
        for name in removed:
            remove_piece_files(voice, transcripts.entries.pop(name))
        transcripts.save()
        clips = {voice.clips / name for name in removed} | set(orphaned_clips(voice, ledger))
        for clip in clips:
            clip.unlink(missing_ok=True)
        counts = write_lists(
            voice, transcripts, load_voice_settings(self.settings, voice.config_file)
        )
        names = tuple(sorted(clip.name for clip in clips))
        ledger.finish(job.id, PruneData(Outcome.PRUNED, removed=names))
        logger.info(
            "voice {}: removed {} and its lines (originals deleted); {} train lines left",
            voice.name,
            ", ".join(names),
            counts["train"],
        )

    def give_up(self, job: Job, reason: str) -> None:
        logger.error("voice {}: could not prune the dataset: {}", job.voice, reason)

    @classmethod
    def reconcile(cls, root: Root, ledger: Ledger) -> int:
        """A prune for every voice whose originals were deleted while the daemon was down."""
        queued = 0
        for originals in sorted(root.voices.glob("*/originals")):
            voice = root.voice(originals.parent.name)
            orphans = (clip.name for clip in orphaned_clips(voice, ledger))
            removed = sorted({*removed_clips(voice, Transcripts(voice)), *orphans})
            if removed:
                key = hashlib.sha256("\n".join(removed).encode()).hexdigest()
                queued += ledger.enqueue(JobKind.PRUNE, voice.name, voice.dataset, key)[1]
        return queued


def orphaned_clips(voice: VoicePaths, ledger: Ledger) -> list[Path]:
    """Clips still in clips/ whose original was deleted, transcribed or not: latents come
    from clips/, so a clip left there keeps a deleted recording in the voice. Only an import
    record pairs a clip with its original for certain, so only it may delete a clip."""
    orphans = []
    for job in ledger.jobs(kind=JobKind.IMPORT, voice=voice.name, state=JobState.DONE):
        data: ImportData = job.data
        if data.outcome != Outcome.IMPORTED or data.clip is None or data.original is None:
            continue
        if data.clip.exists() and not data.original.exists():
            orphans.append(data.clip)
    return sorted(orphans)
