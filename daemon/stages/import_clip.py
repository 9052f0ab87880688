"""Import stage: keep the dropped clip's bytes, decode them, write the normalised clip.

Steps, each safe to repeat after kill -9: pick the output names (recorded in the job), give
the queued bytes a second name in originals/ (a hard link, checked against the queued hash),
decode and check that file, write clips/<name>.wav atomically, compare its speaker with the
voice's other clips (a mismatch is held back in voices/<voice>/speaker.json), remove the
dropped name if it still is the same file, mark the job done with its analysis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import numpy as np
from loguru import logger

from daemon.audio import clips
from daemon.core import atomic
from daemon.core.config import ConfigError, ImportSettings, load_voice_settings
from daemon.core.files import file_sha256, file_signature, link_or_copy, reject_file
from daemon.core.jobs import ClipAnalysis, ImportData, Job, JobKind, Outcome
from daemon.core.ledger import Ledger
from daemon.core.paths import VoicePaths, free_name, safe_name
from daemon.core.worker import Blocked, Device, Rejected, Stage, StageContext
from daemon.quality.held import SpeakerDecisions, mismatch_warning
from daemon.quality.speaker import NotEnoughSpeech, check_clip, shared_encoder

CLIP_RATE = 22050


class ImportStage(Stage):
    kind = JobKind.IMPORT
    device = Device.SHARED  # the speaker encoder (17 MB) stays loaded while clips come

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self.encoder = shared_encoder(self.settings.tts.device)

    def run(self, job: Job, ledger: Ledger) -> None:
        voice = self.root.voice(job.voice)
        if job.data.clip is None:
            job = ledger.set_data(job.id, self.plan_names(voice, job.input_path))
        original = self.keep_original(job)
        if original is None:
            ledger.finish(job.id, ImportData(outcome=Outcome.SUPERSEDED))
            logger.info(
                "{} changed after it was queued; the new content is queued anew", job.input_path
            )
            return
        rules = self.voice_rules(voice)
        kept = file_signature(original)
        try:
            mono, analysis = self.decode_and_check(original, rules)
        except Rejected:
            if file_signature(original) != kept:
                self.still_written(job, ledger, original)
                return
            raise
        clip = job.data.clip
        clips.write_clip(clip, mono, CLIP_RATE)
        if file_signature(original) != kept:
            self.still_written(job, ledger, original)
            return
        analysis = self.check_speaker(voice, clip, analysis, rules)
        self.leave_inbox(job.input_path, original)
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

    def on_idle(self) -> None:
        """The encoder stays loaded while clips keep coming and is released when they stop."""
        self.encoder.release()

    def release(self) -> None:
        self.encoder.release()

    def check_speaker(
        self, voice: VoicePaths, clip: Path, analysis: ClipAnalysis, rules: ImportSettings
    ) -> ClipAnalysis:
        """Compare the clip's speaker with the voice's other clips; a mismatch is held back
        (out of the latents and the dataset) before the clip is transcribed or rendered with."""
        check = None
        if rules.min_speaker_similarity > 0:
            try:
                check = check_clip(
                    voice,
                    clip,
                    self.encoder,
                    rules.min_speaker_similarity,
                    rules.speaker_reference_clips,
                )
            except NotEnoughSpeech as exc:
                logger.info("{} ({}): no speaker check: {}", clip.name, voice.name, exc)
        SpeakerDecisions(voice).settle(clip.name, check)
        warnings = analysis.warnings
        if check is not None and check.mismatch:
            warnings = (*warnings, mismatch_warning(voice.name, clip.name, check))
        return dataclasses.replace(analysis, speaker=check, warnings=warnings)

    def keep_original(self, job: Job) -> Path | None:
        """Put the very bytes that were queued into originals/ before any other work, so the
        clip and the original are always the same audio, even if the dropped file is replaced
        meanwhile. None: the file changed since it was queued (it is queued anew)."""
        original = job.data.original
        if original.is_file():  # kept by an attempt that was killed afterwards
            return original
        source = job.input_path
        if not source.is_file() or source.is_symlink():
            raise Rejected(f"{source.name} disappeared from the inbox before it was imported")
        link_or_copy(source, original)
        if file_sha256(original) != job.content_hash:
            original.unlink()
            return None
        return original

    def still_written(self, job: Job, ledger: Ledger, original: Path) -> None:
        """A copy that paused longer than `watch.stable_for` and went on while it was being
        imported: nothing made from the partial file is kept, and the file is queued again
        once it is stable."""
        job.data.clip.unlink(missing_ok=True)
        original.unlink()
        ledger.finish(job.id, ImportData(outcome=Outcome.SUPERSEDED))
        logger.info("{} was still being written; it is imported once complete", job.input_path)

    @staticmethod
    def leave_inbox(dropped: Path, original: Path) -> None:
        """Remove the dropped name if it is still the file kept in originals/; a file put in
        its place meanwhile stays, and is imported as a drop of its own."""
        with contextlib.suppress(FileNotFoundError):
            if os.path.samefile(dropped, original) or file_sha256(dropped) == file_sha256(original):
                dropped.unlink()
                atomic.fsync_directory(dropped.parent)

    def voice_rules(self, voice: VoicePaths) -> ImportSettings:
        """A broken voice.yaml blocks the voice's jobs until fixed; the clips are not at fault."""
        try:
            return load_voice_settings(self.settings, voice.config_file).imports
        except ConfigError as exc:
            raise Blocked(str(exc)) from exc

    def give_up(self, job: Job, reason: str) -> None:
        """The bytes go to rejected/ beside the reason: from originals/ if they were kept there
        already (the dropped name goes too if it is the same file), else from the inbox."""
        voice = self.root.voice(job.voice)
        kept, dropped = job.data.original, job.input_path
        if kept is not None and kept.is_file():
            rejected = reject_file(voice, kept, reason)
            self.leave_inbox(dropped, rejected)
        elif dropped.is_file() and not dropped.is_symlink():
            reject_file(voice, dropped, reason)

    def plan_names(self, voice: VoicePaths, dropped: Path) -> ImportData:
        """Never overwrite: a clash gets a numbered name, chosen once and kept across retries."""
        voice.originals.mkdir(parents=True, exist_ok=True)
        voice.clips.mkdir(parents=True, exist_ok=True)
        original = free_name(voice.originals, safe_name(dropped.name))
        clip = free_name(voice.clips, f"{original.stem}.wav")
        return ImportData(original=original, clip=clip, dropped_name=dropped.name)

    def decode_and_check(
        self, source: Path, rules: ImportSettings
    ) -> tuple[np.ndarray, ClipAnalysis]:
        size = source.stat().st_size
        if size > rules.max_bytes:
            raise Rejected(
                f"{source.name} is {size / 1e6:.0f} MB, more than import.max_bytes "
                f"({rules.max_bytes / 1e6:.0f} MB): cut it into shorter clips, or raise "
                "import.max_bytes in config.yaml"
            )
        try:
            decoded = clips.decode(source, rules.max_duration)
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
