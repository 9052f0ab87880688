"""Prune stage: when originals are deleted from voices/<voice>/originals/, the lines and
pieces cut from them leave the dataset."""

from __future__ import annotations

import hashlib

from loguru import logger

from daemon.core.config import load_voice_settings
from daemon.core.jobs import Job, JobKind, Outcome, PruneData
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
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
        for name in removed:
            (voice.clips / name).unlink(missing_ok=True)
        counts = write_lists(
            voice, transcripts, load_voice_settings(self.settings, voice.config_file)
        )
        ledger.finish(job.id, PruneData(Outcome.PRUNED, removed=tuple(removed)))
        logger.info(
            "voice {}: removed {} and its lines (originals deleted); {} train lines left",
            voice.name,
            ", ".join(removed),
            counts["train"],
        )

    def give_up(self, job: Job, reason: str) -> None:
        logger.error("voice {}: could not prune the dataset: {}", job.voice, reason)

    @classmethod
    def reconcile(cls, root: Root, ledger: Ledger) -> int:
        """A prune for every voice whose originals were deleted while the daemon was down."""
        queued = 0
        for voice_dir in sorted(root.voices.glob("*/dataset/whisper.json")):
            voice = root.voice(voice_dir.parents[1].name)
            removed = removed_clips(voice, Transcripts(voice))
            if removed:
                key = hashlib.sha256("\n".join(removed).encode()).hexdigest()
                queued += ledger.enqueue(JobKind.PRUNE, voice.name, voice.dataset, key)[1]
        return queued
