"""Fine-tune stage: the train job that turns a voice's dataset into
voices/<voice>/models/autoregressive.pth, inside the training window.

Training yields: it checkpoints and steps aside when renders are waiting (they share the
device), when the window closes (it waits for the next night) and when the daemon stops.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from loguru import logger

from daemon.core.config import ConfigError, Settings, load_voice_settings
from daemon.core.ledger import Job, Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.core.worker import Blocked, Rejected
from daemon.service.schedule import TRAIN, in_window, next_start, now_local
from daemon.stages.render import RENDER, Renderer

PROGRESS_EVERY = 5.0


class FineTuneStage:
    kind = TRAIN

    def __init__(
        self,
        root: Root,
        settings: Settings,
        renderer: Renderer,
        stopping: threading.Event,
        now: Callable[[], datetime] = now_local,
    ) -> None:
        self.root = root
        self.settings = settings
        self.renderer = renderer
        self.stopping = stopping
        self.now = now  # the wall clock that opens and closes the window; tests pass their own

    def run(self, job: Job, ledger: Ledger) -> None:
        from daemon.training.trainer import TrainingOptions, train_voice
        from daemon.tts.checkpoints import BadCheckpoint, WeightsMissing
        from daemon.weights.store import dvae_file

        voice = self.root.voice(job.voice)
        settings = self.voice_settings(voice)
        forced = bool(job.data.get("now"))
        if not forced and not in_window(settings.training, self.now()):
            raise Blocked(self.window_message(settings))
        self.renderer.release()
        reason: list[str] = []

        def should_stop() -> bool:
            reason[:] = [self.stop_reason(ledger, settings, forced)]
            return bool(reason[0])

        options = TrainingOptions.from_settings(settings.training, device=settings.tts.device)
        models_dir = self.renderer.models_dir(settings.tts, settings.tts.decoder)
        dvae = dvae_file(self.root, settings, settings.tts.models_dir)
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
        except ValueError as exc:
            raise Rejected(str(exc)) from exc
        if not result.finished:
            self.step_aside(ledger, job, reason[0], settings)
            return
        ledger.finish(
            job.id,
            outcome="trained",
            model=str(result.model_path),
            model_sha256=result.model_sha256,
            losses=result.losses,
            warnings=result.warnings,
            run=str(result.run_dir),
            step=result.step,
            skipped=result.skipped,
            finished_at_text=self.now().isoformat(timespec="seconds"),
        )
        for warning in result.warnings:
            logger.warning("voice {} training: {}", voice.name, warning)
        logger.info(
            "voice {} fine-tuned: {} (sha256 {}…); its next render uses it",
            voice.name,
            result.model_path,
            result.model_sha256[:12],
        )

    def stop_reason(self, ledger: Ledger, settings: Settings, forced: bool) -> str:
        if self.stopping.is_set():
            return "the daemon is stopping"
        if not forced and not in_window(settings.training, self.now()):
            return "window"
        if ledger.db.execute(
            "SELECT 1 FROM jobs WHERE kind = ? AND state = 'pending' LIMIT 1", (RENDER,)
        ).fetchone():
            return "renders are waiting for the device"
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
        if settings.whisper.language:
            return settings.whisper.language
        detected = voice.dataset / "language.json"
        if detected.exists():
            return json.loads(detected.read_text(encoding="utf-8"))["language"]
        return "en"

    def give_up(self, job: Job, reason: str) -> None:
        logger.error("voice {}: fine-tuning failed: {}", job.voice, reason)

    def on_idle(self) -> None:
        """The training loop frees its model when it returns."""


class ProgressReporter:
    """Logs progress with ETA and records it in the job for `status`, every few seconds."""

    def __init__(self, ledger: Ledger, job: Job, voice: str) -> None:
        self.ledger = ledger
        self.job = job
        self.voice = voice
        self.last = 0.0

    def __call__(self, progress: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY and progress["step"] < progress["total_steps"]:
            return
        self.last = now
        self.ledger.set_data(self.job.id, progress=progress)
        logger.info(
            "fine-tuning {}: step {}/{} ({:.0%}), epoch {:.1f}, loss {:.3f}, ETA {:.0f} s",
            self.voice,
            progress["step"],
            progress["total_steps"],
            progress["step"] / max(progress["total_steps"], 1),
            progress["epoch"],
            progress["loss_total"],
            progress.get("eta_s") or 0,
        )
