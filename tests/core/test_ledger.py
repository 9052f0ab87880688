"""daemon.core.ledger and daemon.core.jobs: a real SQLite ledger with typed job records."""

import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

from daemon.core.jobs import (
    ClipAnalysis,
    ImportData,
    JobKind,
    JobState,
    Outcome,
    RenderData,
    TrainData,
    TrainProgress,
    TranscribeData,
)
from daemon.core.ledger import MIGRATIONS, SCHEMA, Ledger, ledger_problem, set_aside

IMPORT, RENDER, TRAIN = JobKind.IMPORT, JobKind.RENDER, JobKind.TRAIN
ALL = dict.fromkeys(JobKind, 0)


def test_enqueue_is_idempotent_per_kind_voice_and_content(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    first, created = ledger.enqueue(IMPORT, "alice", Path("/in/a.wav"), "h1")
    again, created_again = ledger.enqueue(IMPORT, "alice", Path("/in/copy.wav"), "h1")
    other_voice, created_other = ledger.enqueue(IMPORT, "bob", Path("/in/a.wav"), "h1")
    assert created and not created_again and created_other
    assert again.id == first.id and again.input_path == Path("/in/a.wav")
    assert other_voice.id != first.id
    assert ledger.counts()[JobState.PENDING] == 2
    assert first.kind is IMPORT and first.state is JobState.PENDING
    assert first.data == ImportData()


def test_claim_runs_oldest_first_and_counts_attempts(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    a, _ = ledger.enqueue(IMPORT, "v", Path("a"), "ha")
    ledger.enqueue(IMPORT, "v", Path("b"), "hb")
    job = ledger.claim(ALL)
    assert job.id == a.id and job.state == JobState.RUNNING and job.attempts == 1
    assert ledger.claim({RENDER: 0}) is None


def test_claim_follows_the_declared_priorities(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    train, _ = ledger.enqueue(TRAIN, "v", Path("dataset"), "h0")
    render, _ = ledger.enqueue(RENDER, "v", Path("t.txt"), "h1")
    clip, _ = ledger.enqueue(IMPORT, "v", Path("a.wav"), "h2")
    priorities = {**ALL, TRAIN: 10}
    order = [ledger.claim(priorities).id for _ in range(3)]
    assert order == [render.id, clip.id, train.id]


def test_has_pending_sees_only_the_named_kinds(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.enqueue(IMPORT, "v", Path("a.wav"), "h")
    assert not ledger.has_pending((RENDER,))
    ledger.enqueue(RENDER, "v", Path("t.txt"), "h")
    assert ledger.has_pending((RENDER,))
    ledger.claim({RENDER: 0})
    assert not ledger.has_pending((RENDER,))


def test_crash_recovery_requeues_running_jobs_and_hands_back_poison_jobs(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    ledger.enqueue(IMPORT, "v", Path("a"), "ha")
    ledger.enqueue(IMPORT, "v", Path("b"), "hb")
    ledger.claim(ALL)
    poison = ledger.claim(ALL)
    ledger.db.execute("UPDATE jobs SET attempts = 3 WHERE id = ?", (poison.id,))
    ledger.close()
    reopened = Ledger(path)
    requeued, spent = reopened.recover(max_attempts=3)
    assert requeued == 1 and [job.id for job in spent] == [poison.id]
    assert reopened.counts() == {"pending": 1, "running": 1, "waiting": 0, "done": 0, "failed": 0}


def test_retry_backoff_waiting_and_release(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    job, _ = ledger.enqueue(RENDER, "v", Path("t.txt"), "h")
    ledger.claim(ALL)
    ledger.retry_later(job.id, "disk full", delay=60)
    assert ledger.claim(ALL) is None
    assert ledger.next_due() > time.time() + 50
    ledger.db.execute("UPDATE jobs SET not_before = 0")
    claimed = ledger.claim(ALL)
    ledger.wait(claimed.id, "weights missing")
    assert not ledger.busy()
    assert ledger.counts()[JobState.WAITING] == 1
    assert ledger.release_waiting() == 1
    assert ledger.busy()


def test_typed_records_survive_a_reopened_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    job, _ = ledger.enqueue(IMPORT, "v", Path("a.mp3"), "h")
    planned = ledger.set_data(job.id, ImportData(original=Path("/o/a.mp3"), clip=Path("/c/a.wav")))
    analysis = ClipAnalysis(3.0, -1.0, 0.0, -20.0, -23.0, -70.0, 50.0, 0.1, 44100, 2, "mp3", ("x",))
    ledger.finish(job.id, replace(planned.data, outcome=Outcome.IMPORTED, analysis=analysis))
    ledger.close()
    done = Ledger(path).get(job.id)
    assert done.state == JobState.DONE and done.finished_at is not None
    assert done.data == ImportData(Outcome.IMPORTED, Path("/o/a.mp3"), Path("/c/a.wav"), analysis)
    stored = json.loads(Ledger(path).db.execute("SELECT data FROM jobs").fetchone()[0])
    assert stored["version"] == 1 and stored["outcome"] == "imported"


def test_requests_and_progress_do_not_outlive_their_run(tmp_path):
    """`voicedrop transcribe` forces one new transcription, `train --now` one run: once that
    run ends, a later requeue must not inherit the flag."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    clip, _ = ledger.enqueue(JobKind.TRANSCRIBE, "v", Path("c.wav"), "h")
    ledger.requeue(clip.id, clip.input_path, TranscribeData(force=True))
    assert ledger.claim(ALL).data.force
    ledger.finish(clip.id, TranscribeData(Outcome.TRANSCRIBED, force=True, pieces=3))
    assert ledger.get(clip.id).data == TranscribeData(Outcome.TRANSCRIBED, pieces=3)

    train, _ = ledger.enqueue(TRAIN, "v", Path("dataset"), "d", TrainData(now=True))
    progress = TrainProgress(5, 10, 0.5, 1, 1.0, 2.0, 3.0, 1e-4, 2.0, 128, 4, eta_s=3.0)
    ledger.claim(ALL)
    ledger.set_data(train.id, TrainData(now=True, progress=progress))
    assert ledger.get(train.id).data.progress == progress
    ledger.fail(train.id, "failed 3 times")
    assert ledger.get(train.id).data == TrainData()


def test_records_written_before_versioning_are_read(tmp_path):
    """A ledger from an older voicedrop: unversioned JSON, a flag this version dropped."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    job, _ = ledger.enqueue(IMPORT, "v", Path("a.wav"), "h")
    old = {"original": "/o/a.wav", "clip": "/c/a.wav", "retired_flag": True}
    ledger.db.execute("UPDATE jobs SET data = ?", (json.dumps(old),))
    assert ledger.get(job.id).data == ImportData(original=Path("/o/a.wav"), clip=Path("/c/a.wav"))
    train, _ = ledger.enqueue(TRAIN, "v", Path("dataset"), "d")
    lingering = {"now": True, "outcome": "trained", "model_sha256": "abc"}  # never cleared then
    ledger.db.execute(
        "UPDATE jobs SET data = ?, state = 'done' WHERE id = ?", (json.dumps(lingering), train.id)
    )
    assert ledger.get(train.id).data == TrainData(Outcome.TRAINED, model_sha256="abc")


def test_waiting_does_not_spend_attempts(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    job, _ = ledger.enqueue(RENDER, "v", Path("t.txt"), "h")
    for _ in range(5):
        ledger.claim(ALL)
        ledger.wait(job.id, "weights missing")
        ledger.release_waiting()
    assert ledger.get(job.id).attempts == 0
    ledger.claim(ALL)
    assert ledger.recover(max_attempts=3) == (1, [])


def test_probe_releases_one_job_per_kind_and_reason(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    for index, reason in enumerate(["no weights", "no weights", "no clips", "no weights"]):
        job, _ = ledger.enqueue(RENDER, "v", Path(f"{index}.txt"), f"h{index}")
        ledger.claim(ALL)
        ledger.wait(job.id, reason)
    assert ledger.probe_waiting() == 2
    released = ledger.jobs(state=JobState.PENDING)
    assert [j.input_path.name for j in released] == ["0.txt", "2.txt"]
    assert ledger.release_waiting(RENDER) == 2


def test_a_damaged_record_reads_as_an_empty_one(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    clip, _ = ledger.enqueue(IMPORT, "v", Path("a.wav"), "h1")
    train, _ = ledger.enqueue(TRAIN, "v", Path("dataset"), "h2")
    ledger.db.execute("UPDATE jobs SET data = '{\"clip\": ' WHERE id = ?", (clip.id,))
    damaged = json.dumps({"now": True, "progress": {"step": 3}, "model_sha256": "abc"})
    ledger.db.execute("UPDATE jobs SET data = ? WHERE id = ?", (damaged, train.id))
    assert ledger.get(clip.id).data == ImportData()
    assert ledger.get(train.id).data == TrainData(now=True, model_sha256="abc")


def test_a_file_that_is_no_database_is_a_problem_and_is_set_aside_with_its_wal(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    assert ledger_problem(path) is None, "an absent ledger is simply created"
    Ledger(path).close()
    assert ledger_problem(path) is None
    path.write_bytes(b"not a database at all" * 300)
    path.with_name("ledger.sqlite3-wal").write_bytes(b"wal")
    assert "not a database" in ledger_problem(path)
    first = set_aside(path, "20261125-072800")
    path.write_bytes(b"damaged again")
    second = set_aside(path, "20261125-072800")
    assert (first.name, second.name) == (
        "ledger.sqlite3.damaged-20261125-072800",
        "ledger.sqlite3.damaged-20261125-072800-2",
    )
    assert first.with_name(first.name + "-wal").read_bytes() == b"wal"
    assert not path.exists() and not path.with_name("ledger.sqlite3-wal").exists()


def old_ledger(path: Path) -> None:
    """A ledger as voicedrop wrote it before run times were kept: the first schema, one job
    finished."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute(
        "INSERT INTO jobs (kind, voice, input_path, content_hash, state, data, created_at,"
        " updated_at, finished_at) VALUES ('import', 'v', '/in/a.wav', 'h', 'done', '{}', 1, 2, 2)"
    )
    db.commit()
    db.close()


def test_an_old_ledger_is_upgraded_once_and_its_jobs_are_read(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    old_ledger(path)
    first, second = Ledger(path), Ledger(path)  # the second finds it upgraded already
    assert first.schema_version() == second.schema_version() == len(MIGRATIONS)
    [job] = second.jobs()
    assert job.state is JobState.DONE and job.input_path == Path("/in/a.wav")
    assert second.run_times(IMPORT, 10) == []  # its run time was never recorded


def test_a_jobs_run_time_adds_up_its_turns_but_not_its_pauses(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    job, _ = ledger.enqueue(RENDER, "v", Path("t.txt"), "h")
    ledger.claim(ALL)
    time.sleep(0.2)
    ledger.pause(job.id, "other work goes first")
    time.sleep(0.5)  # paused: not counted
    ledger.claim(ALL)
    time.sleep(0.2)
    ledger.finish(job.id, RenderData(Outcome.RENDERED))
    [seconds] = ledger.run_times(RENDER, 10)
    assert 0.4 <= seconds < 0.85  # with the pause: 0.9


def test_a_requeued_job_starts_its_run_time_afresh_and_a_crash_adds_nothing(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    job, _ = ledger.enqueue(IMPORT, "v", Path("a.wav"), "h")
    ledger.claim(ALL)
    ledger.fail(job.id, "too short")
    ledger.requeue(job.id, Path("a.wav"))
    ledger.claim(ALL)
    time.sleep(0.3)  # the daemon dies here: this run's time is unknown
    ledger.recover(max_attempts=3)
    ledger.claim(ALL)
    ledger.finish(job.id, ImportData(Outcome.IMPORTED))
    [seconds] = ledger.run_times(IMPORT, 10)
    assert seconds < 0.1


def test_run_times_describe_only_the_jobs_that_finished_last(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    for number in range(5):
        job, _ = ledger.enqueue(IMPORT, "v", Path(f"{number}.wav"), f"h{number}")
        ledger.claim(ALL)
        time.sleep(0.01 * number)
        ledger.finish(job.id, ImportData(Outcome.IMPORTED))
    assert len(ledger.run_times(IMPORT, 2)) == 2
    assert min(ledger.run_times(IMPORT, 2)) >= 0.03  # the last two: 0.03 s and 0.04 s
    assert ledger.run_times(RENDER, 2) == []
