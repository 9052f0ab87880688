"""daemon.core.worker and the daemon's watch over it: the worker never dies silently."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from loguru import logger

from daemon.core.config import Settings, load_settings
from daemon.core.ledger import Job, Ledger
from daemon.core.paths import Root
from daemon.core.worker import Worker
from daemon.service.daemon import EXIT_WORKER_DIED, Daemon
from tests.conftest import wait_for


class CountingStage:
    """A job kind that finishes every job, and whose idle hook fails `idle_failures` times
    (as releasing a model can fail on a sick GPU)."""

    kind = "count"

    def __init__(self, idle_failures: int = 0) -> None:
        self.done: list[int] = []
        self.idle_failures = idle_failures

    def run(self, job: Job, ledger: Ledger) -> None:
        self.done.append(job.id)
        ledger.finish(job.id)

    def give_up(self, job: Job, reason: str) -> None:
        """Nothing to file away."""

    def on_idle(self) -> None:
        if self.idle_failures:
            self.idle_failures -= 1
            raise RuntimeError("CUDA error: an illegal memory access was encountered")


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

    def claim_locked_once(self, kinds=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("database is locked")
        return real_claim(self, kinds)

    monkeypatch.setattr(Ledger, "claim", claim_locked_once)
    worker = Worker(ledger_file, Settings(), [stage])
    worker.start()
    wait_for(lambda: sum("unexpected error outside a job" in line for line in logs) >= 3)
    ledger = Ledger(ledger_file)
    job, _ = ledger.enqueue("count", "tom", tmp_path / "a.wav", "hash-a")
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
