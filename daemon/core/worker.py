"""The one worker that runs queued jobs, one at a time, so two GPU jobs never overlap.

Each job kind plugs in as a Stage (listed in `daemon.stages.STAGES`). What a stage raises
decides what happens to the job, here and only here:

- `Rejected`: the input can never work as it is → failed, with a reason the user can act on.
- `Blocked`: something outside the daemon is missing (weights, a Whisper model, a clip) →
  waiting, and tried again once it may be there.
- a fault of the environment (an OSError such as a full disk or a read-only folder, a locked
  ledger, out of memory) → retried with a doubling delay, given up after `jobs.max_attempts`.
- anything else is a bug in voicedrop → failed at once, its traceback in the log, and the
  user told it is not their input's fault.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import ClassVar

from loguru import logger

from daemon.core.atomic import TEMP_PREFIX
from daemon.core.clock import Clock, now_local
from daemon.core.config import Settings, shorten
from daemon.core.jobs import Job, JobKind, Outcome
from daemon.core.ledger import Ledger
from daemon.core.logs import bounded_traceback
from daemon.core.paths import Root

IDLE_POLL = 5.0  # jobs queued by another process (`voicedrop transcribe`) start this soon
LOOP_BACKOFF_FIRST, LOOP_BACKOFF_MAX = 0.5, 30.0  # pauses after errors outside a job
MAX_REASON = 2000  # characters of a reason kept in a file, the ledger and the log
YIELD_FOR = 0.5  # a job that stepped aside waits this long, so what it yielded to goes first


class Rejected(Exception):
    """The input itself is unusable: retrying cannot help."""


class Blocked(Exception):
    """The job needs something outside the daemon (e.g. weights); it waits in `waiting`."""


class Yielded(Exception):
    """The job checkpointed and stepped aside (the daemon stops, or work that goes first
    arrived): back to pending, its attempt given back."""


TRANSIENT_ERRORS = (OSError, sqlite3.OperationalError, MemoryError)
LOW_DISK_BYTES = 64 << 20  # below this, a failed write is taken for a full disk
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)


def is_transient(exc: BaseException) -> bool:
    """Trouble that may pass. A CUDA out-of-memory is a RuntimeError (torch's OutOfMemoryError
    or older torch's plain message): matched without importing torch."""
    out_of_memory = isinstance(exc, RuntimeError) and "out of memory" in str(exc)
    return isinstance(exc, TRANSIENT_ERRORS) or out_of_memory


class Device(Enum):
    """How a stage uses the accelerator while it runs."""

    NONE = "none"
    SHARED = "shared"  # its models may stay loaded beside another stage's (render, Whisper)
    EXCLUSIVE = "exclusive"  # needs all of it: the others release their models first


@dataclass(frozen=True)
class StageContext:
    """What every stage is built from."""

    root: Root
    settings: Settings
    stopping: threading.Event = field(default_factory=threading.Event)  # the daemon stops
    now: Clock = now_local  # the wall clock (the training window); tests step their own


class Stage:
    """One job kind. Subclasses set `kind` and implement `run`; the class attributes below
    are the kind's declaration, read by the worker, the ledger's claim order, start-up and the
    CLI."""

    kind: ClassVar[JobKind]
    priority: ClassVar[int] = 0  # lower runs first; equal priorities run oldest first
    device: ClassVar[Device] = Device.NONE
    preempted_by: ClassVar[tuple[JobKind, ...]] = ()  # queued jobs of these kinds make it yield
    foreground: ClassVar[str | None] = None  # the CLI command that runs it without a daemon
    retry_after_crash: ClassVar[float | None] = None  # s; None: given up until the user acts

    def __init__(self, context: StageContext) -> None:
        self.root = context.root
        self.settings = context.settings
        self.stopping = context.stopping
        self.now = context.now

    def run(self, job: Job, ledger: Ledger) -> None:
        """Do the work and call ledger.finish(), or raise."""
        raise NotImplementedError

    def give_up(self, job: Job, reason: str) -> None:
        """Leave the user a reason and put the input somewhere safe."""

    def on_idle(self) -> None:
        """Called when no job is runnable: release what nobody is using."""

    def release(self) -> None:
        """Free the device: a stage that needs all of it is about to run."""

    def environment_problem(self, exc: BaseException) -> str | None:
        """A full disk, a folder voicedrop may not write or a failing disk is the machine's
        fault, not the input's: the job waits for it to be fixed instead of being given up.
        Some libraries hide the errno (libsndfile's "System error"), so free space is checked
        too."""
        error = getattr(exc, "errno", None)
        where = Path(getattr(exc, "filename", None) or self.root.path)
        if where.name.startswith(TEMP_PREFIX):  # the output being written: name its folder
            where = where.parent
        free = free_bytes(self.root.path)
        if error in NO_SPACE or free < LOW_DISK_BYTES:
            return (
                f"the disk holding {self.root.path} is full ({free >> 20} MiB free): free some "
                "space; this resumes by itself"
            )
        if error in NO_PERMISSION:
            return (
                f"voicedrop may not write {where} ({exc.strerror}): fix the folder's owner or "
                "permissions; this resumes by itself"
            )
        if error == errno.EIO:
            return f"the disk reported an I/O error at {where}: check it; this resumes by itself"
        return None

    @classmethod
    def reconcile(cls, root: Root, ledger: Ledger) -> int:
        """Queue what the folders say is missing (at start-up and every rescan); returns how
        many jobs were queued."""
        return 0


class Worker:
    """Claims jobs from the ledger in its own thread; `stop()` lets the current job finish."""

    def __init__(self, ledger_file: Path, settings: Settings, stages: list[Stage]) -> None:
        self.ledger_file = ledger_file
        self.settings = settings
        self.stages = {stage.kind: stage for stage in stages}
        self.priorities = {stage.kind: stage.priority for stage in stages}
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
                if failures:  # a job whose end could not be recorded is still `running`
                    ledger.requeue_running()
                self.step(ledger)
                failures = 0
            except Exception as exc:
                failures += 1
                pause = min(LOOP_BACKOFF_MAX, LOOP_BACKOFF_FIRST * 2 ** (failures - 1))
                logger.error(
                    "worker: unexpected error outside a job ({} in a row); "
                    "going on in {:.1f} s:\n{}",
                    failures,
                    pause,
                    bounded_traceback(exc),
                )
                ledger = self.reopen(ledger)
                self.wake.wait(timeout=pause)
                self.wake.clear()
        if ledger is not None:
            ledger.close()

    def step(self, ledger: Ledger) -> None:
        """Run one runnable job, or release idle resources and wait for one."""
        job = ledger.claim(self.priorities)
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
            while (job := ledger.claim(self.priorities)) is not None:
                self.run_one(job, ledger)
        finally:
            ledger.close()

    def idle_wait(self, ledger: Ledger) -> float:
        due = ledger.next_due()
        return IDLE_POLL if due is None else min(IDLE_POLL, max(0.05, due - time.time()))

    def run_one(self, job: Job, ledger: Ledger) -> None:
        stage = self.stages[job.kind]
        if stage.device is Device.EXCLUSIVE:
            self.free_device_for(stage)
        started = time.monotonic()
        logger.info("{} job {} started: {} ({})", job.kind, job.id, job.input_path.name, job.voice)
        try:
            stage.run(job, ledger)
        except Rejected as exc:
            self.give_up(stage, job, ledger, str(exc))
        except Blocked as exc:
            self.wait(job, ledger, str(exc))
        except Yielded as exc:
            ledger.pause(job.id, f"paused: {exc}", delay=YIELD_FOR)
            logger.info("{} job {} paused: {}", job.kind, job.id, exc)
        except Exception as exc:
            problem = stage.environment_problem(exc)
            if problem is not None:
                logger.debug("{} job {} raised:\n{}", job.kind, job.id, bounded_traceback(exc))
                self.wait(job, ledger, f"{problem} ({type(exc).__name__}: {exc})")
            elif is_transient(exc):
                self.retry_or_give_up(stage, job, ledger, exc)
            else:
                self.fail_on_bug(stage, job, ledger, exc)
        else:
            logger.info("{} job {} done in {:.2f} s", job.kind, job.id, time.monotonic() - started)
            if job.last_error is not None:  # what held it is gone: its companions go too
                ledger.release_waiting(job.kind, job.last_error)

    def wait(self, job: Job, ledger: Ledger, reason: str) -> None:
        reason = shorten(reason, MAX_REASON)
        ledger.wait(job.id, reason)
        level = "DEBUG" if job.last_error == reason else "WARNING"
        logger.log(level, "{} job {} waits: {}", job.kind, job.id, reason)

    def free_device_for(self, running: Stage) -> None:
        """Fine-tuning needs the whole device: the other stages let their models go first."""
        for stage in self.stages.values():
            if stage.device is not Device.NONE and stage is not running:
                stage.release()

    def retry_or_give_up(self, stage: Stage, job: Job, ledger: Ledger, exc: Exception) -> None:
        error = shorten(f"{type(exc).__name__}: {exc}", MAX_REASON)
        logger.debug("{} job {} raised:\n{}", job.kind, job.id, bounded_traceback(exc))
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

    def fail_on_bug(self, stage: Stage, job: Job, ledger: Ledger, exc: Exception) -> None:
        """A bug does not pass by retrying and is never the input's fault: say so."""
        logger.error(
            "{} job {}: internal error (a bug in voicedrop):\n{}",
            job.kind,
            job.id,
            bounded_traceback(exc),
        )
        reason = (
            f"voicedrop hit an internal error ({type(exc).__name__}: {exc}); this is a bug in "
            "voicedrop, not a problem with the file. The log has the traceback; please report "
            "it. Drop the file again after an update to retry."
        )
        self.give_up(stage, job, ledger, reason)

    def give_up(
        self, stage: Stage, job: Job, ledger: Ledger, reason: str, outcome: Outcome | None = None
    ) -> None:
        """The stage files the input away as the job's record stands now (the run may have
        recorded where it put things since the job was claimed); the reason is bounded,
        whatever it quotes."""
        reason = shorten(reason, MAX_REASON)
        try:
            stage.give_up(ledger.get(job.id), reason)
        except Exception as exc:
            logger.error("{} job {}: could not file the input away: {}", job.kind, job.id, exc)
        ledger.fail(job.id, reason, outcome)
        logger.error("{} job {} failed for good: {}", job.kind, job.id, reason)


def free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0
