import time
from pathlib import Path

from daemon.core.ledger import Ledger


def test_enqueue_is_idempotent_per_kind_voice_and_content(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    first, created = ledger.enqueue("import", "alice", Path("/in/a.wav"), "h1")
    again, created_again = ledger.enqueue("import", "alice", Path("/in/copy.wav"), "h1")
    other_voice, created_other = ledger.enqueue("import", "bob", Path("/in/a.wav"), "h1")
    assert created and not created_again and created_other
    assert again.id == first.id and again.input_path == Path("/in/a.wav")
    assert other_voice.id != first.id
    assert ledger.counts()["pending"] == 2


def test_claim_runs_oldest_first_and_counts_attempts(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    a, _ = ledger.enqueue("import", "v", Path("a"), "ha")
    ledger.enqueue("import", "v", Path("b"), "hb")
    job = ledger.claim()
    assert job.id == a.id and job.state == "running" and job.attempts == 1
    assert ledger.claim(("render",)) is None


def test_crash_recovery_requeues_running_jobs_and_fails_poison_jobs(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    ledger.enqueue("import", "v", Path("a"), "ha")
    ledger.enqueue("import", "v", Path("b"), "hb")
    ledger.claim()
    poison = ledger.claim()
    ledger.db.execute("UPDATE jobs SET attempts = 3 WHERE id = ?", (poison.id,))
    ledger.close()
    reopened = Ledger(path)
    assert reopened.recover(max_attempts=3) == (1, 1)
    assert reopened.counts() == {"pending": 1, "running": 0, "waiting": 0, "done": 0, "failed": 1}
    assert "interrupted 3 times" in reopened.get(poison.id).last_error


def test_retry_backoff_waiting_and_release(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    job, _ = ledger.enqueue("render", "v", Path("t.txt"), "h")
    ledger.claim()
    ledger.retry_later(job.id, "disk full", delay=60)
    assert ledger.claim() is None
    assert ledger.next_due() > time.time() + 50
    ledger.db.execute("UPDATE jobs SET not_before = 0")
    claimed = ledger.claim()
    ledger.wait(claimed.id, "weights missing")
    assert not ledger.busy()
    assert ledger.counts()["waiting"] == 1
    assert ledger.release_waiting() == 1
    assert ledger.busy()


def test_finish_keeps_data_recorded_before(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    job, _ = ledger.enqueue("import", "v", Path("a"), "h")
    ledger.set_data(job.id, clip="/c.wav")
    ledger.finish(job.id, outcome="imported")
    done = ledger.get(job.id)
    assert done.state == "done" and done.data == {"clip": "/c.wav", "outcome": "imported"}
    assert done.finished_at is not None


def test_waiting_does_not_spend_attempts(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    job, _ = ledger.enqueue("render", "v", Path("t.txt"), "h")
    for _ in range(5):
        ledger.claim()
        ledger.wait(job.id, "weights missing")
        ledger.release_waiting()
    assert ledger.get(job.id).attempts == 0
    ledger.claim()
    assert ledger.recover(max_attempts=3) == (1, 0)


def test_probe_releases_one_job_per_kind_and_reason(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    for index, reason in enumerate(["no weights", "no weights", "no clips", "no weights"]):
        job, _ = ledger.enqueue("render", "v", Path(f"{index}.txt"), f"h{index}")
        ledger.claim()
        ledger.wait(job.id, reason)
    assert ledger.probe_waiting() == 2
    released = ledger.jobs(state="pending")
    assert [j.input_path.name for j in released] == ["0.txt", "2.txt"]
    assert ledger.release_waiting("render") == 2
