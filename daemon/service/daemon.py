"""The daemon: one instance per root, a main loop that watches and queues, a worker that works.

Start-up order matters for kill -9: take the lock, check the ledger (a damaged one is set
aside, an empty one rebuilt from the folders), put interrupted jobs back, drop stale temp
files, then scan the folders (events are hints; the listing is the truth) and only then tell
systemd we are ready.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from functools import partial
from pathlib import Path

from loguru import logger

from daemon.core import atomic
from daemon.core.clock import Clock, now_local
from daemon.core.config import Settings
from daemon.core.files import file_sha256
from daemon.core.jobs import JobKind, Outcome
from daemon.core.ledger import Ledger, ledger_problem, set_aside
from daemon.core.paths import Root
from daemon.core.worker import StageContext, Worker
from daemon.report.status import collect
from daemon.serve.servers import Servers
from daemon.serve.speech import Speaker
from daemon.service.intake import Intake
from daemon.service.lock import InstanceLock
from daemon.service.rebuild import rebuild_ledger
from daemon.service.schedule import TrainingSchedule
from daemon.service.systemd import Notifier
from daemon.service.watch import StabilityTracker, Watcher, classify, misplaced_reason
from daemon.stages import STAGES, build_stages
from daemon.stages.speak import clear_spool
from daemon.stages.train import queue_changed_voices
from daemon.weights.fetch import (
    BackgroundFetch,
    fetch_status_file,
    missing_releases,
    write_fetch_status,
)
from daemon.weights.store import tortoise_store

IDLE_TICK = 0.2
WAITING_PROBE_EVERY = 30.0


class WorkerDied(Exception):
    """The worker thread ended although nobody stopped it: the daemon would look alive and do
    nothing, so it exits non-zero instead and the service manager restarts it."""


EXIT_WORKER_DIED = 3


class Daemon:
    def __init__(self, root: Root, settings: Settings, now: Clock = now_local) -> None:
        self.root = root
        self.settings = settings
        self.now = now  # the wall clock of the training window; tests pass their own
        self.stop_requested = threading.Event()
        self.wake = threading.Event()
        self.tracker = StabilityTracker(settings.watch.stable_for, on_change=self.wake.set)
        self.misplaced: set[Path] = set()
        self.config_read: str | None = None  # sha256 of the config.yaml this run uses
        self.notifier = Notifier()
        self.stop_signal: str | None = None

    def request_stop(self, signum: int, _frame: object) -> None:
        """Only flags: the handler runs in the main thread wherever it was, possibly inside a
        log call holding the log sinks' locks, so logging here could deadlock (the main loop
        says it instead)."""
        self.stop_signal = signal.Signals(signum).name
        self.stop_requested.set()
        self.wake.set()

    def run(self, until_idle: bool = False) -> int:
        lock = InstanceLock(self.root)
        lock.acquire()
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        ledger = self.open_ledger()
        server = None
        try:
            server = self.bind_server(until_idle)  # a port in use stops us before any work
            self.config_read = self.note_config()
            context = StageContext(self.root, self.settings, self.stop_requested, self.now)
            worker = Worker(self.root.ledger_file, self.settings, build_stages(context))
            self.recover(ledger, worker)
            watcher = Watcher(self.root, self.settings, self.tracker)
            intake = Intake(self.root, self.settings, ledger)
            watcher.start()
            found = watcher.scan()
            intake.check_voice_folders()
            if server is not None:
                speaker = Speaker(self.root, self.settings, worker.wake.set)
                server.start(self.settings, partial(collect, self.root), speaker)
            self.notifier.ready(f"watching {self.root.path}")
            logger.info("voicedrop ready on {}: {} files to look at", self.root.path, found)
            worker.start()
            schedule = TrainingSchedule(
                self.root, self.settings, lambda: self.open_window(worker), self.now
            )
            schedule.start()
            fetcher = None if until_idle else self.start_fetching(worker)
            try:
                self.main_loop(ledger, intake, watcher, worker, until_idle)
                if self.stop_signal is not None:
                    logger.info(
                        "received {}, finishing the current job and stopping", self.stop_signal
                    )
            except WorkerDied as exc:
                logger.critical("{}", exc)
                return EXIT_WORKER_DIED
            finally:
                self.notifier.stopping()
                if server is not None:
                    server.stop()  # before the worker: no request outlives the daemon's work
                if fetcher is not None:
                    fetcher.stop()
                schedule.stop()
                watcher.stop()
                worker.stop()
        finally:
            if server is not None:
                server.stop()  # a start-up that failed after binding (else already stopped)
            ledger.close()
            lock.release()
        logger.info("voicedrop stopped")
        return 0

    def bind_server(self, until_idle: bool) -> Servers | None:
        """serve.enabled: the HTTP and Wyoming ports, taken now and served once the start-up
        scan is done. `run --until-idle` is a batch run that exits when the work is done: it
        never serves."""
        if until_idle or not self.settings.serve.enabled:
            return None
        return Servers.bind(self.settings, self.root.config_file)

    def open_ledger(self) -> Ledger:
        """The ledger is a cache of the folders: a damaged one would stop every start with a
        sqlite3 error, so it is set aside; what it does not know of voices/ (all of it when
        new, deleted or set aside) is filled in before recovery and reconciliation queue what
        is missing."""
        path = self.root.ledger_file
        problem = ledger_problem(path)
        if problem is not None:
            kept = set_aside(path, time.strftime("%Y%m%d-%H%M%S"))
            logger.error(
                "the job ledger {} is damaged ({}); moved it aside to {} and rebuilding it "
                "from the folders",
                path,
                problem,
                kept.name,
            )
        ledger = Ledger(path)
        rebuilt = rebuild_ledger(self.root, ledger)
        if rebuilt.clips:
            logger.warning(
                "rebuilt the job ledger from the folders: {} imported clips, {} of them "
                "transcribed; the others are queued for transcription",
                rebuilt.clips,
                rebuilt.transcribed,
            )
        if rebuilt.orphans:
            logger.warning(
                "clips without their original in originals/ (left as they are, not counted): {}",
                ", ".join(rebuilt.orphans),
            )
        return ledger

    def start_fetching(self, worker: Worker) -> BackgroundFetch | None:
        """tts.fetch: auto — missing weights come in the background; renders waiting for
        them are tried again as soon as they are in place. (`run --until-idle` does not
        fetch: it would stop half-way; `voicedrop models fetch` is for that.)"""
        fetch_status_file(self.root).unlink(missing_ok=True)
        if self.settings.tts.fetch != "auto":
            return None

        def released() -> None:
            ledger = Ledger(self.root.ledger_file)
            try:
                ledger.release_waiting(JobKind.RENDER)
                ledger.release_waiting(JobKind.TRAIN)
            finally:
                ledger.close()
            worker.wake.set()

        fetcher = BackgroundFetch(
            tortoise_store(self.root, self.settings),
            lambda: missing_releases(self.root, self.settings),
            lambda state, message: write_fetch_status(self.root, state, message),
            released,
        )
        fetcher.start()
        return fetcher

    def open_window(self, worker: Worker) -> None:
        """At a scheduled start: queue voices whose dataset changed, wake paused runs."""
        ledger = Ledger(self.root.ledger_file)
        try:
            queued = queue_changed_voices(self.root, ledger)
            resumed = ledger.release_waiting(JobKind.TRAIN)
        finally:
            ledger.close()
        logger.info("training window: {} voices queued, {} runs resumed", queued, resumed)
        worker.wake.set()

    def recover(self, ledger: Ledger, worker: Worker) -> None:
        requeued, spent = ledger.recover(self.settings.jobs.max_attempts)
        if requeued or spent:
            logger.warning(
                "recovered from an unclean stop: {} interrupted jobs queued again, {} given up",
                requeued,
                len(spent),
            )
        for job in spent:  # filed away (a clip into rejected/), so no scan queues it again
            stage = worker.stages[job.kind]
            reason = crash_reason(job.attempts, stage.retry_after_crash)
            worker.give_up(stage, job, ledger, reason, Outcome.CRASHED)
        for folder in (self.root.voices, self.root.inbox, self.root.outbox):
            atomic.remove_stale_temp_files(folder)
        clear_spool(self.root)
        ledger.release_waiting()
        self.reconcile(ledger)

    def reconcile(self, ledger: Ledger) -> int:
        """What the folders say is missing is queued by the kind it belongs to."""
        return sum(stage.reconcile(self.root, ledger) for stage in STAGES)

    def main_loop(
        self, ledger: Ledger, intake: Intake, watcher: Watcher, worker: Worker, until_idle: bool
    ) -> None:
        next_rescan = time.monotonic() + self.settings.watch.rescan_every
        next_probe = time.monotonic() + min(WAITING_PROBE_EVERY, self.settings.watch.rescan_every)
        while not self.stop_requested.is_set():
            self.wake.wait(timeout=self.sleep_time(next_rescan, next_probe, until_idle))
            self.wake.clear()
            if not worker.alive:  # checked before the watchdog ping below
                raise WorkerDied(
                    "the worker thread stopped unexpectedly; exiting so that voicedrop is "
                    "restarted (systemd: Restart=on-failure) instead of looking alive"
                )
            for path in self.tracker.due():
                if self.take(intake, path):
                    worker.wake.set()
            if time.monotonic() >= next_rescan:
                self.say_if_config_changed()
                watcher.scan()
                intake.check_voice_folders()
                if self.reconcile(ledger):
                    worker.wake.set()
                next_rescan = time.monotonic() + self.settings.watch.rescan_every
            if time.monotonic() >= next_probe:
                if ledger.probe_waiting():
                    worker.wake.set()
                next_probe = time.monotonic() + min(
                    WAITING_PROBE_EVERY, self.settings.watch.rescan_every
                )
            self.notifier.ping_if_due()
            if until_idle and not len(self.tracker) and not ledger.busy():
                logger.info("nothing left to do (--until-idle)")
                return

    def take(self, intake: Intake, path: Path) -> bool:
        drop = classify(self.root, path, self.settings)
        if drop is None:
            self.say_if_misplaced(path)
            return False
        try:
            return intake.take(drop)
        except (OSError, sqlite3.OperationalError) as exc:  # a full disk, a busy ledger
            logger.error("could not take {}: {}; will look again", path, exc)
            self.tracker.touch(path)
            return False

    def note_config(self) -> str | None:
        """Remember which config.yaml this daemon runs with, for `status` and the log."""
        digest = config_digest(self.root)
        atomic.write_text(self.root.running_config, f"{digest or ''}\n")
        return digest

    def say_if_config_changed(self) -> None:
        if self.config_read is not None and config_digest(self.root) not in (
            None,
            self.config_read,
        ):
            logger.warning(
                "config.yaml changed since voicedrop started: restart it to use the change "
                "(systemctl restart voicedrop)"
            )
            self.config_read = None  # said once

    def say_if_misplaced(self, path: Path) -> None:
        """Once per file: a clip or text in the wrong folder is not silently ignored."""
        reason = misplaced_reason(self.root, path)
        if reason is not None and path not in self.misplaced:
            self.misplaced.add(path)
            logger.warning("{}", reason)

    def sleep_time(self, next_rescan: float, next_probe: float, until_idle: bool) -> float:
        now = time.monotonic()
        deadlines = [next_rescan - now, next_probe - now]
        stable_at = self.tracker.next_deadline()
        if stable_at is not None:
            deadlines.append(stable_at - now)
        watchdog = self.notifier.ping_if_due()
        if watchdog is not None:
            deadlines.append(watchdog)
        if until_idle:
            deadlines.append(IDLE_TICK)
        return max(0.01, min(deadlines))


def config_digest(root: Root) -> str | None:
    try:
        return file_sha256(root.config_file)
    except OSError:
        return None


def crash_reason(attempts: int, retry_after: float | None) -> str:
    """Why the crash-loop guard gave a job up, and when (if ever) it is tried again."""
    stopped = (
        f"the daemon stopped {attempts} times while this ran (killed, out of memory or a crash)"
    )
    if retry_after is None:
        return f"{stopped}; it is not tried again until you move it back"
    return (
        f"{stopped}; it is tried again by itself in {retry_after / 3600:g} h, in case the stops "
        "had another cause (if it is the file, remove it to end the retries)"
    )
