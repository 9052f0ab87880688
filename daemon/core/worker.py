"""The one worker that runs queued jobs, one at a time, so two GPU jobs never overlap.

Each job kind plugs in as a Stage. A stage raises `Rejected` for input that can never work
(no retry), `Blocked` when something outside the daemon is missing (the job waits), and any
other exception for trouble that may pass (retried with backoff, then given up).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from pathlib import Path
from typing import Protocol

from loguru import logger

from daemon.core.config import Settings
from daemon.core.ledger import Job, Ledger

IDLE_POLL = 5.0  # jobs queued by another process (`voicedrop transcribe`) start this soon
LOOP_BACKOFF_FIRST, LOOP_BACKOFF_MAX = 0.5, 30.0  # pauses after errors outside a job


class Rejected(Exception):
    """The input itself is unusable: retrying cannot help."""


class Blocked(Exception):
    """The job needs something the user must provide (e.g. weights); it waits in `waiting`."""


class Stage(Protocol):
    kind: str

    def run(self, job: Job, ledger: Ledger) -> None:
        """Do the work and call ledger.finish(), or raise."""

    def give_up(self, job: Job, reason: str) -> None:
        """Leave the user a reason file and put the input somewhere safe."""

    def on_idle(self) -> None:
        """Called when no job is runnable: release models nobody is using."""


class Worker:
    """Claims jobs from the ledger in its own thread; `stop()` lets the current job finish."""

    def __init__(self, ledger_file: Path, settings: Settings, stages: list[Stage]) -> None:
        self.ledger_file = ledger_file
        self.settings = settings
        self.stages = {stage.kind: stage for stage in stages}
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def loop(self) -> None:
        """Claim and run jobs until stopped. Nothing may end this loop but stop(): an error
        outside a job (a locked ledger, a stage's idle hook) is logged with its traceback, the
        ledger connection is opened afresh, and the loop goes on after a growing pause."""
        ledger: Ledger | None = None
        failures = 0
        while not self.stopping.is_set():
            try:
                ledger = ledger or Ledger(self.ledger_file)
                self.step(ledger)
                failures = 0
            except Exception:
                failures += 1
                pause = min(LOOP_BACKOFF_MAX, LOOP_BACKOFF_FIRST * 2 ** (failures - 1))
                logger.opt(exception=True).error(
                    "worker: unexpected error outside a job ({} in a row); going on in {:.1f} s",
                    failures,
                    pause,
                )
                ledger = self.reopen(ledger)
                self.wake.wait(timeout=pause)
                self.wake.clear()
        if ledger is not None:
            ledger.close()

    def step(self, ledger: Ledger) -> None:
        """Run one runnable job, or release idle resources and wait for one."""
        job = ledger.claim(tuple(self.stages))
        if job is None:
            for stage in self.stages.values():
                stage.on_idle()
            self.wake.wait(timeout=self.idle_wait(ledger))
            self.wake.clear()
            return
        self.run_one(job, ledger)

    @staticmethod
    def reopen(ledger: Ledger | None) -> None:
        """Drop a connection that may be broken; the next step opens a new one."""
        if ledger is not None:
            with contextlib.suppress(Exception):
                ledger.close()

    def drain(self) -> None:
        """Run jobs in this thread until none is runnable (`voicedrop transcribe` without a
        daemon)."""
        ledger = Ledger(self.ledger_file)
        try:
            while (job := ledger.claim(tuple(self.stages))) is not None:
                self.run_one(job, ledger)
        finally:
            ledger.close()

    def idle_wait(self, ledger: Ledger) -> float:
        due = ledger.next_due()
        return IDLE_POLL if due is None else min(IDLE_POLL, max(0.05, due - time.time()))

    def run_one(self, job: Job, ledger: Ledger) -> None:
        stage = self.stages[job.kind]
        started = time.monotonic()
        logger.info("{} job {} started: {} ({})", job.kind, job.id, job.input_path.name, job.voice)
        try:
            stage.run(job, ledger)
        except Rejected as exc:
            self.give_up(stage, job, ledger, str(exc))
        except Blocked as exc:
            ledger.wait(job.id, str(exc))
            level = "DEBUG" if job.last_error == str(exc) else "WARNING"
            logger.log(level, "{} job {} waits: {}", job.kind, job.id, exc)
        except Exception as exc:
            self.retry_or_give_up(stage, job, ledger, exc)
        else:
            logger.info("{} job {} done in {:.2f} s", job.kind, job.id, time.monotonic() - started)

    def retry_or_give_up(self, stage: Stage, job: Job, ledger: Ledger, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        logger.debug("{} job {} raised:\n{}", job.kind, job.id, traceback.format_exc())
        if job.attempts >= self.settings.jobs.max_attempts:
            reason = f"failed {job.attempts} times; last error: {error}"
            self.give_up(stage, job, ledger, reason)
            return
        delay = self.settings.jobs.retry_delay * 2 ** (job.attempts - 1)
        ledger.retry_later(job.id, error, delay)
        logger.warning(
            "{} job {} failed (attempt {}/{}), retrying in {:.0f} s: {}",
            job.kind,
            job.id,
            job.attempts,
            self.settings.jobs.max_attempts,
            delay,
            error,
        )

    def give_up(self, stage: Stage, job: Job, ledger: Ledger, reason: str) -> None:
        try:
            stage.give_up(job, reason)
        except Exception as exc:
            logger.error("{} job {}: could not file the input away: {}", job.kind, job.id, exc)
        ledger.fail(job.id, reason)
        logger.error("{} job {} failed for good: {}", job.kind, job.id, reason)
