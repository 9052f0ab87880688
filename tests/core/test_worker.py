"""daemon.core.worker and the daemon's watch over it: the worker never dies silently."""

from __future__ import annotations

import errno
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import pytest
from loguru import logger

from daemon.core.config import JobSettings, Settings, load_settings
from daemon.core.jobs import ImportData, Job, JobKind, JobState, Outcome
from daemon.core.ledger import Ledger
from daemon.core.logs import MAX_MESSAGE
from daemon.core.paths import Root
from daemon.core.worker import MAX_REASON, Blocked, Device, Rejected, Stage, StageContext, Worker
from daemon.service.daemon import EXIT_WORKER_DIED, Daemon
from tests.conftest import configure, wait_for

CONTEXT = StageContext(Root.at(Path(tempfile.gettempdir())), Settings())


class CountingStage(Stage):
    """A job kind that finishes every job, and whose idle hook fails `idle_failures` times
    (as releasing a model can fail on a sick GPU)."""

    kind = JobKind.IMPORT

    def __init__(self, idle_failures: int = 0) -> None:
        super().__init__(CONTEXT)
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
        super().__init__(CONTEXT)
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
    monkeypatch.setattr("daemon.core.worker.LOOP_BACKOFF_FIRST", 0.05)  # 0.05, 0.1, 0.2 s
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
    configure(root, {"watch": {"rescan_every": 1}})  # the main loop looks every second
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
        (ConnectionResetError(104, "Connection reset by peer"), JobState.PENDING),
    ],
)
def test_what_a_stage_raises_decides_the_job_state(tmp_path, error, state):
    stage = RaisingStage(error)
    job = run_one_job(tmp_path, stage)
    assert job.state == state
    assert job.last_error.endswith(str(error))
    assert stage.reasons == ([str(error)] if state == JobState.FAILED else [])


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "is full"),
        (
            PermissionError(errno.EACCES, "Permission denied", "/r/voices/tom/clips"),
            "may not write",
        ),
        (OSError(errno.EROFS, "Read-only file system", "/r/outbox/tom"), "may not write"),
        (OSError(errno.EIO, "Input/output error"), "I/O error"),
    ],
)
def test_a_fault_of_the_machine_makes_the_job_wait_and_never_files_the_input_away(
    tmp_path, error, says
):
    """Even on its last attempt: a full disk or a read-only folder is not the clip's fault."""
    stage = RaisingStage(error)
    job = run_one_job(tmp_path, stage, attempts_left=False)
    assert job.state == JobState.WAITING and says in job.last_error
    assert "resumes by itself" in job.last_error and stage.reasons == []


def test_when_one_waiting_job_succeeds_the_others_held_by_the_same_reason_go_too(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    for name in ("a", "b", "c"):
        job, _ = ledger.enqueue(JobKind.IMPORT, "tom", tmp_path / name, name)
        ledger.claim({JobKind.IMPORT: 0})
        ledger.wait(job.id, "the disk is full")
    ledger.probe_waiting()
    worker = Worker(tmp_path / "ledger.sqlite3", Settings(), [CountingStage()])
    worker.run_one(ledger.claim(worker.priorities), ledger)
    assert [j.state for j in ledger.jobs()] == [JobState.DONE, JobState.PENDING, JobState.PENDING]


def test_a_passing_fault_is_retried_then_given_up(tmp_path):
    stage = RaisingStage(ConnectionResetError(104, "Connection reset by peer"))
    job = run_one_job(tmp_path, stage, attempts_left=False)
    assert job.state == JobState.FAILED
    assert stage.reasons == [f"failed 3 times; last error: ConnectionResetError: {stage.error}"]


def test_a_bug_fails_at_once_with_its_traceback_and_is_not_blamed_on_the_input(tmp_path, logs):
    stage = RaisingStage(KeyError("sample_rate"))
    job = run_one_job(tmp_path, stage)
    assert job.state == JobState.FAILED and job.attempts == 1
    assert "bug in voicedrop, not a problem with the file" in stage.reasons[0]
    assert "KeyError" in stage.reasons[0]
    text = "\n".join(logs)
    assert "Traceback" in text and "internal error" in text


def test_a_bug_quoting_a_huge_input_logs_a_bounded_traceback(tmp_path, logs):
    """The 318-byte YAML bomb once made a 351 MB log through an exception's text."""
    stage = RaisingStage(ValueError("x" * 5_000_000))
    job = run_one_job(tmp_path, stage)
    assert job.state == JobState.FAILED
    line = next(line for line in logs if "internal error" in line)
    assert len(line) < 2 * MAX_MESSAGE
    assert "Traceback" in line and "characters cut" in line
    assert line.rstrip().endswith("x")  # the exception's line is kept at the end
    assert len(stage.reasons[0]) <= MAX_REASON


@pytest.mark.parametrize(("device", "released"), [(Device.EXCLUSIVE, 1), (Device.SHARED, 0)])
def test_a_stage_that_needs_the_whole_device_makes_the_others_let_it_go(tmp_path, device, released):
    holder, runner = RaisingStage(Rejected("x")), CountingStage()
    runner.device = device
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.enqueue(JobKind.IMPORT, "tom", tmp_path / "a.wav", "h")
    worker = Worker(tmp_path / "ledger.sqlite3", Settings(), [holder, runner])
    worker.run_one(ledger.claim(worker.priorities), ledger)
    assert holder.released == released and runner.done


class ScriptedStage(Stage):
    """A job kind whose run raises what `outcomes` says, in turn (None: the job finishes)."""

    kind = JobKind.IMPORT

    def __init__(self, *outcomes: Exception | None) -> None:
        super().__init__(CONTEXT)
        self.outcomes = list(outcomes)
        self.runs = 0
        self.given_up: list[str] = []

    def run(self, job: Job, ledger: Ledger) -> None:
        self.runs += 1
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        ledger.finish(job.id, ImportData(Outcome.IMPORTED))

    def give_up(self, job: Job, reason: str) -> None:
        self.given_up.append(reason)


def drain(tmp_path: Path, stage: ScriptedStage, retry_delay: float = 0.0) -> Job:
    """Queue one job, let a worker drain the ledger in this thread, return the job after."""
    ledger_file = tmp_path / "ledger.sqlite3"
    ledger = Ledger(ledger_file)
    job, _ = ledger.enqueue(stage.kind, "tom", tmp_path / "a.wav", "hash-a")
    settings = Settings(jobs=JobSettings(max_attempts=3, retry_delay=retry_delay))
    Worker(ledger_file, settings, [stage]).drain()
    try:
        return ledger.get(job.id)
    finally:
        ledger.close()


def test_a_job_that_fails_now_and_then_is_retried_and_finishes(tmp_path) -> None:
    stage = ScriptedStage(OSError("disk hiccup"), None)
    job = drain(tmp_path, stage)
    assert stage.runs == 2 and stage.given_up == []
    assert job.state == "done" and job.attempts == 2 and job.data.outcome == Outcome.IMPORTED


def test_a_retry_waits_its_backoff_before_it_runs_again(tmp_path) -> None:
    stage = ScriptedStage(OSError("disk hiccup"), None)
    job = drain(tmp_path, stage, retry_delay=60)
    assert stage.runs == 1, "a retry ran before its backoff"
    assert job.state == "pending" and job.last_error == "OSError: disk hiccup"
    assert 55 < job.not_before - time.time() <= 60


def test_a_job_failing_every_attempt_is_given_up_with_its_last_error(tmp_path) -> None:
    stage = ScriptedStage(OSError("one"), OSError("two"), OSError("three"))
    job = drain(tmp_path, stage)
    assert stage.runs == 3
    reason = "failed 3 times; last error: OSError: three"
    assert stage.given_up == [reason]
    assert job.state == "failed" and job.last_error == reason


def test_unusable_input_is_given_up_at_once(tmp_path) -> None:
    stage = ScriptedStage(Rejected("not audio at all"))
    job = drain(tmp_path, stage)
    assert stage.runs == 1 and stage.given_up == ["not audio at all"]
    assert job.state == "failed" and job.last_error == "not audio at all"


def test_a_blocked_job_waits_without_spending_an_attempt(tmp_path) -> None:
    stage = ScriptedStage(Blocked("the Whisper model is missing"))
    job = drain(tmp_path, stage)
    assert stage.runs == 1 and stage.given_up == []
    assert job.state == "waiting" and job.attempts == 0
    assert job.last_error == "the Whisper model is missing"


def test_a_reason_that_quotes_a_huge_input_is_kept_short_everywhere(tmp_path, logs):
    stage = RaisingStage(Rejected("bad value: " + "x" * 1_000_000))
    job = run_one_job(tmp_path, stage)
    assert len(job.last_error) <= 2000 and len(stage.reasons[0]) <= 2000
    assert max(len(line) for line in logs) < 3000
