"""Import stage: decode a dropped clip, keep the original, write the normalised clip.

Steps, each safe to repeat after kill -9: pick the output names (recorded in the job),
decode and check, write clips/<name>.wav atomically, move the original into originals/,
mark the job done with its analysis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from loguru import logger

from daemon.audio import clips
from daemon.core.config import ConfigError, ImportSettings, load_voice_settings
from daemon.core.files import file_sha256, move_file, reject_file
from daemon.core.jobs import ClipAnalysis, ImportData, Job, JobKind, Outcome
from daemon.core.ledger import Ledger
from daemon.core.paths import VoicePaths, free_name
from daemon.core.worker import Blocked, Rejected, Stage

CLIP_RATE = 22050


class ImportStage(Stage):
    kind = JobKind.IMPORT

    def run(self, job: Job, ledger: Ledger) -> None:
        voice = self.root.voice(job.voice)
        source = self.find_source(job)
        if source == job.input_path and file_sha256(source) != job.content_hash:
            ledger.finish(job.id, ImportData(outcome=Outcome.SUPERSEDED))
            logger.info("{} changed after it was queued; the new content is queued anew", source)
            return
        if job.data.clip is None:
            job = ledger.set_data(job.id, self.plan_names(voice, job.input_path))
        rules = self.voice_rules(voice)
        mono, analysis = self.decode_and_check(source, rules)
        clip, original = job.data.clip, job.data.original
        clips.write_clip(clip, mono, CLIP_RATE)
        if source != original:
            move_file(source, original)
        ledger.enqueue(JobKind.TRANSCRIBE, voice.name, clip, job.content_hash)
        ledger.finish(
            job.id, ImportData(Outcome.IMPORTED, original=original, clip=clip, analysis=analysis)
        )
        for warning in analysis.warnings:
            logger.warning("{} ({}): {}", clip.name, voice.name, warning)
        logger.info(
            "imported {} into voice {}: {:.1f} s, {:.1f} LUFS",
            original.name,
            voice.name,
            analysis.duration,
            analysis.lufs,
        )

    def voice_rules(self, voice: VoicePaths) -> ImportSettings:
        """A broken voice.yaml blocks the voice's jobs until fixed; the clips are not at fault."""
        try:
            return load_voice_settings(self.settings, voice.config_file).imports
        except ConfigError as exc:
            raise Blocked(str(exc)) from exc

    def give_up(self, job: Job, reason: str) -> None:
        source = self.find_source(job)
        reject_file(self.root.voice(job.voice), source, reason)

    def find_source(self, job: Job) -> Path:
        """The dropped file, or where a killed earlier attempt already moved it."""
        if job.input_path.is_file() and not job.input_path.is_symlink():
            return job.input_path
        original = job.data.original
        if original is not None and original.is_file():
            return original
        raise Rejected(f"{job.input_path.name} disappeared from the inbox before it was imported")

    def plan_names(self, voice: VoicePaths, dropped: Path) -> ImportData:
        """Never overwrite: a clash gets a numbered name, chosen once and kept across retries."""
        voice.originals.mkdir(parents=True, exist_ok=True)
        voice.clips.mkdir(parents=True, exist_ok=True)
        original = free_name(voice.originals, dropped.name)
        clip = free_name(voice.clips, f"{original.stem}.wav")
        return ImportData(original=original, clip=clip)

    def decode_and_check(
        self, source: Path, rules: ImportSettings
    ) -> tuple[np.ndarray, ClipAnalysis]:
        try:
            decoded = clips.decode(source)
            clips.check_usable(
                decoded, min_seconds=rules.min_seconds, min_sample_rate=rules.min_sample_rate
            )
        except clips.BadAudio as exc:
            raise Rejected(str(exc)) from exc
        mono = clips.to_mono(decoded, CLIP_RATE)
        return mono, clips.analyse(
            decoded,
            mono,
            CLIP_RATE,
            short_seconds=rules.warn_short_seconds,
            long_seconds=rules.warn_long_seconds,
        )
