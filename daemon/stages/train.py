"""Fine-tune stage: the train job that turns a voice's dataset into
voices/<voice>/models/autoregressive.pth, inside the training window.

Training yields: it checkpoints and steps aside when renders are waiting (they share the
device), when the window closes (it waits for the next night) and when the daemon stops.
A finished run's model is then scored against the voice's current one on the hold-out lines
and promoted only when it is not worse (daemon.quality.promotion); scoring is not preempted
by renders (it is bounded by training.promote_texts) but stops with the daemon, and is done
again from the start at the next run.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from daemon.core.config import ConfigError, Settings, load_voice_settings
from daemon.core.jobs import Job, JobKind, JobState, Outcome, TrainData, TrainProgress
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.core.worker import Blocked, Device, Rejected, Stage, Yielded
from daemon.dataset.lists import known_language
from daemon.service.schedule import in_window, next_start

if TYPE_CHECKING:
    from daemon.quality.promotion import Promotion, Scorer
    from daemon.quality.render_check import RenderCheck
    from daemon.training.trainer import TrainingOptions, TrainResult

PROGRESS_EVERY = 5.0


class TrainStage(Stage):
    """The train job: one per version of a voice's dataset. It runs last and yields the
    device to renders."""

    kind = JobKind.TRAIN
    priority = 10
    device = Device.EXCLUSIVE
    preempted_by = (JobKind.RENDER, JobKind.SPEECH)
    foreground = "train"

    def run(self, job: Job, ledger: Ledger) -> None:
        from daemon.quality.promotion import rejected_model
        from daemon.training.trainer import (
            NoTrainingLines,
            OptimizerMissing,
            TrainingOptions,
            train_voice,
        )
        from daemon.tts.spec import BadCheckpoint, WeightsMissing
        from daemon.weights.store import dvae_file, tortoise_models

        voice = self.root.voice(job.voice)
        settings = self.voice_settings(voice)
        forced = job.data.now
        if not forced and not in_window(settings.training, self.now()):
            raise Blocked(self.window_message(settings))
        reason: list[str] = []

        def should_stop() -> bool:
            reason[:] = [self.stop_reason(ledger, settings, forced)]
            return bool(reason[0])

        options = TrainingOptions.from_settings(settings.training, device=settings.tts.device)
        tts = settings.tts
        models_dir = tortoise_models(self.root, settings, tts.models_dir, tts.decoder).folder
        dvae = dvae_file(self.root, settings, tts.models_dir)
        logger.info("fine-tuning voice {} ({} epochs)", voice.name, options.epochs)
        try:
            result = train_voice(
                voice.home,
                models_dir,
                options,
                self.language(voice, settings),
                should_stop,
                ProgressReporter(ledger, job, voice.name),
                dvae=dvae,
            )
        except (WeightsMissing, BadCheckpoint) as exc:
            raise Blocked(f"{exc}; fine-tuning starts once the model files are fixed") from exc
        except NoTrainingLines as exc:
            raise Rejected(str(exc)) from exc
        except OptimizerMissing as exc:
            raise Blocked(str(exc)) from exc
        if not result.finished:
            self.step_aside(ledger, job, reason[0], settings)
            return
        try:
            promotion = self.promote(voice, settings, result, options, models_dir, dvae)
        except (WeightsMissing, BadCheckpoint) as exc:
            raise Blocked(
                f"{exc}; the fine-tuned model is scored against the current one, and used if "
                "not worse, once the model files are fixed"
            ) from exc
        promoted = promotion.decision.promote
        kept = rejected_model(voice.models, result.run_dir.name)
        ledger.finish(
            job.id,
            TrainData(
                Outcome.TRAINED,
                model=voice.models / "autoregressive.pth" if promoted else kept,
                model_sha256=result.model_sha256,
                losses=result.losses,
                warnings=tuple(result.warnings),
                run=result.run_dir,
                step=result.step,
                skipped=result.skipped,
                finished_at_text=self.now().isoformat(timespec="seconds"),
                promoted=promoted,
                decision=promotion.decision.reason,
            ),
        )
        for warning in result.warnings:
            logger.warning("voice {} training: {}", voice.name, warning)
        if promoted:
            logger.info(
                "voice {} fine-tuned (sha256 {}…), promoted: {}; its next render uses it",
                voice.name,
                result.model_sha256[:12],
                promotion.decision.reason,
            )
        else:
            logger.warning(
                "voice {} fine-tuned (sha256 {}…) but not promoted: {}; it is kept as {} and "
                "renders go on with the current model",
                voice.name,
                result.model_sha256[:12],
                promotion.decision.reason,
                kept,
            )

    def promote(
        self,
        voice: VoicePaths,
        settings: Settings,
        result: TrainResult,
        options: TrainingOptions,
        models_dir: Path,
        dvae: Path | None,
    ) -> Promotion:
        """Score the run's candidate and the current model on the hold-out lines with the
        same seeds, then install the candidate or keep it aside (see `settle`)."""
        from daemon.quality.promotion import HoldOut, Margins, settle

        holdout = HoldOut.of(voice, settings.training.promote_texts, options.seed)
        logger.info(
            "voice {}: scoring the fine-tuned model against the current one on {} hold-out "
            "texts and every hold-out line's loss",
            voice.name,
            len(holdout.texts),
        )
        scorer = self.scorer(voice, settings, result, options, models_dir, dvae)
        try:
            margins = Margins.from_settings(settings.training)
            return settle(result.run_dir, result.model_path, voice, scorer, holdout, margins)
        finally:
            scorer.release()

    def scorer(
        self,
        voice: VoicePaths,
        settings: Settings,
        result: TrainResult,
        options: TrainingOptions,
        models_dir: Path,
        dvae: Path | None,
    ) -> Scorer:
        """The production scorer: the trainer's validation loss and the engine's renders."""
        from daemon.quality.promotion import LISTEN_DIR, RenderScorer
        from daemon.training.trainer import holdout_loss

        language = self.language(voice, settings)
        check = self.listeners(voice, settings)
        return RenderScorer(
            models_dir,
            settings.tts,
            lambda model: holdout_loss(voice.home, models_dir, model, options, language, dvae),
            result.run_dir / LISTEN_DIR,
            ScoringProgress(self, voice.name),
            None if check is None else check.character_error_rate,
            None if check is None else check.speaker_similarity,
        )

    def listeners(self, voice: VoicePaths, settings: Settings) -> RenderCheck | None:
        """What the render check hears with, for the hold-out renders; without a Whisper
        model the candidate is judged on its validation loss alone (said in the log)."""
        from daemon.dataset.whisper import shared_whisper
        from daemon.quality.render_check import listeners
        from daemon.quality.speaker import shared_encoder
        from daemon.weights.store import ModelMissing

        encoder = shared_encoder(settings.tts.device)
        try:
            return listeners(self.root, settings, voice, shared_whisper(), encoder)
        except ModelMissing as exc:
            logger.warning("voice {}: hold-out renders not heard: {}", voice.name, exc)
            return None

    def stop_reason(self, ledger: Ledger, settings: Settings, forced: bool) -> str:
        if self.stopping.is_set():
            return "the daemon is stopping"
        if not forced and not in_window(settings.training, self.now()):
            return "window"
        if ledger.has_pending(self.preempted_by):
            return "renders or speech requests are waiting for the device"
        return ""

    def step_aside(self, ledger: Ledger, job: Job, reason: str, settings: Settings) -> None:
        """Checkpointed already: wait for the next window, or let other work go first."""
        if reason == "window":
            ledger.wait(
                job.id,
                f"the training window closed at {settings.training.until}; "
                + self.window_message(settings),
            )
            logger.info("voice {}: training window closed, checkpointed", job.voice)
            return
        ledger.pause(job.id, f"paused: {reason}")
        logger.info("voice {}: training paused ({}), checkpointed", job.voice, reason)

    def window_message(self, settings: Settings) -> str:
        upcoming = next_start(settings.training, self.now())
        when = upcoming.isoformat(timespec="minutes") if upcoming else "never"
        return (
            f"fine-tuning runs in the training window (next start {when}, until "
            f"{settings.training.until}); `voicedrop train VOICE --now` starts it at once"
        )

    def voice_settings(self, voice: VoicePaths) -> Settings:
        try:
            return load_voice_settings(self.settings, voice.config_file)
        except ConfigError as exc:
            raise Blocked(str(exc)) from exc

    def language(self, voice: VoicePaths, settings: Settings) -> str:
        return known_language(voice, settings) or "en"

    def give_up(self, job: Job, reason: str) -> None:
        logger.error("voice {}: fine-tuning failed: {}", job.voice, reason)


class ScoringProgress:
    """Before each hold-out render: progress in the log, and a stop when the daemon stops."""

    def __init__(self, stage: TrainStage, voice: str) -> None:
        self.stage = stage
        self.voice = voice

    def __call__(self, model: str, done: int, total: int) -> None:
        if self.stage.stopping.is_set():
            raise Yielded("the daemon is stopping; the new model is scored again at the next start")
        logger.info(
            "scoring {}: {} model, hold-out text {}/{} ({:.0%} of its texts done)",
            self.voice,
            model,
            done + 1,
            total,
            done / total,
        )


class ProgressReporter:
    """Logs progress with ETA and records it in the job for `status`, every few seconds."""

    def __init__(self, ledger: Ledger, job: Job, voice: str) -> None:
        self.ledger = ledger
        self.job = job
        self.voice = voice
        self.last = 0.0

    def __call__(self, progress: TrainProgress) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY and progress.step < progress.total_steps:
            return
        self.last = now
        self.job = self.ledger.set_data(self.job.id, replace(self.job.data, progress=progress))
        logger.info(
            "fine-tuning {}: step {}/{} ({:.0%}), epoch {:.1f}, loss {:.3f}, ETA {:.0f} s",
            self.voice,
            progress.step,
            progress.total_steps,
            progress.step / max(progress.total_steps, 1),
            progress.epoch,
            progress.loss_total,
            progress.eta_s or 0,
        )


def dataset_fingerprint(voice: VoicePaths) -> str | None:
    """What a fine-tune learns from: a changed list means the voice needs training again."""
    lists = [voice.dataset / "train.txt", voice.dataset / "validation.txt"]
    if not lists[0].exists() or not lists[0].read_text(encoding="utf-8").strip():
        return None
    digest = hashlib.sha256()
    for path in lists:
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def queue_training(root: Root, ledger: Ledger, voice_name: str, now: bool = False) -> bool:
    """Queue a fine-tune of a voice whose dataset changed since its last one; `now` asks for
    one whatever the dataset and the window."""
    voice = root.voice(voice_name)
    fingerprint = dataset_fingerprint(voice)
    if fingerprint is None:
        return False
    job, created = ledger.enqueue(JobKind.TRAIN, voice.name, voice.dataset, fingerprint)
    if now:
        ledger.requeue(job.id, voice.dataset, replace(job.data, now=True))
        return True
    if not created and job.state == JobState.WAITING:
        ledger.release_waiting(JobKind.TRAIN)
    return created


def queue_changed_voices(root: Root, ledger: Ledger) -> int:
    """At a training window's start: every voice whose dataset changed."""
    queued = 0
    for train_list in sorted(root.voices.glob("*/dataset/train.txt")):
        queued += queue_training(root, ledger, train_list.parents[1].name)
    return queued
