"""daemon.core.worker and the daemon's watch over it: the worker never dies silently."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from loguru import logger

from daemon.core.config import Settings, load_settings
from daemon.core.jobs import ImportData, Job, JobKind, JobState, Outcome
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.core.worker import Blocked, Device, Rejected, Stage, Worker
from daemon.service.daemon import EXIT_WORKER_DIED, Daemon
from tests.conftest import wait_for


class CountingStage(Stage):
    """A job kind that finishes every job, and whose idle hook fails `idle_failures` times
    (as releasing a model can fail on a sick GPU)."""

    kind = JobKind.IMPORT

    def __init__(self, idle_failures: int = 0) -> None:
        self.done: list[int] = []
        self.idle_failures = idle_failures

    def run(self, job: Job, ledger: Ledger) -> None:
        self.done.append(job.id)
        ledger.finish(job.id, ImportData(Outcome.IMPORTED))

    def on_idle(self) -> None:
        if self.idle_failures:
            self.idle_failures -= 1
            raise RuntimeError("CUDA error: an illegal memory access was encountered")


class RaisingStage(Stage):
    """Raises what it is given, and records what the worker asked of it."""

    kind = JobKind.RENDER
    device = Device.SHARED

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.reasons: list[str] = []
        self.released = 0

    def run(self, job: Job, ledger: Ledger) -> None:
        raise self.error

    def give_up(self, job: Job, reason: str) -> None:
        self.reasons.append(reason)

    def release(self) -> None:
        self.released += 1


@pytest.fixture
def logs() -> list[str]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink)


def test_errors_outside_a_job_are_logged_and_the_worker_goes_on(tmp_path, logs, monkeypatch):
    """The locked ledger is a stand-in: SQLite waits 60 s before it says 'database is locked',
    so the first claim raises that error directly."""
    ledger_file = tmp_path / "ledger.sqlite3"
    stage = CountingStage(idle_failures=2)
    real_claim = Ledger.claim
    calls = {"n": 0}

    def claim_locked_once(self, priorities):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("database is locked")
        return real_claim(self, priorities)

    monkeypatch.setattr(Ledger, "claim", claim_locked_once)
    worker = Worker(ledger_file, Settings(), [stage])
    worker.start()
    wait_for(lambda: sum("unexpected error outside a job" in line for line in logs) >= 3)
    ledger = Ledger(ledger_file)
    job, _ = ledger.enqueue(JobKind.IMPORT, "tom", tmp_path / "a.wav", "hash-a")
    worker.wake.set()
    wait_for(lambda: stage.done == [job.id], timeout=30)
    assert worker.alive
    worker.stop()
    assert ledger.get(job.id).state == "done"
    text = "\n".join(logs)
    assert "database is locked" in text and "Traceback" in text and "illegal memory access" in text


def test_a_daemon_whose_worker_died_exits_non_zero_instead_of_looking_alive(
    root: Path, monkeypatch, logs
):
    """A worker thread that ended is a stand-in for one killed by something the loop could
    not catch; the daemon must notice and exit so systemd restarts it."""
    monkeypatch.setattr(Worker, "loop", lambda self: None)
    daemon = Daemon(Root.at(root), load_settings(root / "config.yaml"))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    monkeypatch.setattr("signal.signal", lambda *args: None)  # only the main thread may
    thread.start()
    thread.join(timeout=60)
    assert result == [EXIT_WORKER_DIED]
    assert any("worker thread stopped unexpectedly" in line for line in logs)


def run_one_job(tmp_path: Path, stage: Stage, attempts_left: bool = True):
    """Queue one job of the stage's kind and let the worker run it once, in this thread."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    settings = Settings()
    job, _ = ledger.enqueue(stage.kind, "tom", tmp_path / "t.txt", "h")
    if not attempts_left:
        ledger.db.execute("UPDATE jobs SET attempts = ?", (settings.jobs.max_attempts - 1,))
    worker = Worker(tmp_path / "ledger.sqlite3", settings, [stage, CountingStage()])
    worker.run_one(ledger.claim(worker.priorities), ledger)
    return ledger.get(job.id)


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (Rejected("the text is empty"), JobState.FAILED),
        (Blocked("no weights yet"), JobState.WAITING),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), JobState.PENDING),
        (OSError(28, "No space left on device"), JobState.PENDING),
    ],
)
def test_what_a_stage_raises_decides_the_job_state(tmp_path, error, state):
    stage = RaisingStage(error)
    job = run_one_job(tmp_path, stage)
    assert job.state == state
    assert job.last_error.endswith(str(error))
    assert stage.reasons == ([str(error)] if state == JobState.FAILED else [])


def test_a_fault_of_the_environment_is_retried_then_given_up(tmp_path):
    stage = RaisingStage(OSError(28, "No space left on device"))
    job = run_one_job(tmp_path, stage, attempts_left=False)
    assert job.state == JobState.FAILED
    assert stage.reasons == [f"failed 3 times; last error: OSError: {stage.error}"]


def test_a_bug_fails_at_once_with_its_traceback_and_is_not_blamed_on_the_input(tmp_path, logs):
    stage = RaisingStage(KeyError("sample_rate"))
    job = run_one_job(tmp_path, stage)
    assert job.state == JobState.FAILED and job.attempts == 1
    assert "bug in voicedrop, not a problem with the file" in stage.reasons[0]
    assert "KeyError" in stage.reasons[0]
    text = "\n".join(logs)
    assert "Traceback" in text and "internal error" in text


@pytest.mark.parametrize(("device", "released"), [(Device.EXCLUSIVE, 1), (Device.SHARED, 0)])
def test_a_stage_that_needs_the_whole_device_makes_the_others_let_it_go(tmp_path, device, released):
    holder, runner = RaisingStage(Rejected("x")), CountingStage()
    runner.device = device
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.enqueue(JobKind.IMPORT, "tom", tmp_path / "a.wav", "h")
    worker = Worker(tmp_path / "ledger.sqlite3", Settings(), [holder, runner])
    worker.run_one(ledger.claim(worker.priorities), ledger)
    assert holder.released == released and runner.done
