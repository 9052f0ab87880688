"""The job ledger: a SQLite table every stage queues work in, so nothing is lost to kill -9.

A job is one unit of work on one input (import a clip, render a text…). States:
pending → running → done | failed, plus waiting for jobs blocked on something outside
the daemon (weights not installed yet) that a later check releases back to pending.

The ledger is a cache of what the folders show: a damaged one is set aside (`ledger_problem`,
`set_aside`) and the daemon rebuilds it from voices/ and outbox/ (`Ledger.restore`).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.core.jobs import DATA_OF, FoundJob, Job, JobData, JobKind, JobState, Outcome

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    voice TEXT NOT NULL,
    input_path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'waiting', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    data TEXT NOT NULL DEFAULT '{}',
    not_before REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    UNIQUE (kind, voice, content_hash)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, not_before, id);
"""
# PRAGMA user_version counts the steps applied on top of SCHEMA, so a ledger written by any
# earlier version is brought up to date when it is opened (and stays readable by this one).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: how long each job ran, for the job duration metric (daemon/serve/metrics.py)
    (
        "ALTER TABLE jobs ADD COLUMN started_at REAL",  # when the current run began
        "ALTER TABLE jobs ADD COLUMN run_seconds REAL",  # its runs added up; NULL: unknown
        "CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (kind, finished_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
# A run's seconds are added up when it ends (done, failed, retried, waiting, paused): a job
# that steps aside and resumes counts each turn it ran, never the time it queued between.
END_RUN = (
    "run_seconds = CASE WHEN started_at IS NULL THEN run_seconds"
    " ELSE COALESCE(run_seconds, 0) + MAX(? - started_at, 0) END, started_at = NULL"
)


class LedgerDamaged(Exception):
    """The ledger file is not a sound database: what a user reads instead of a traceback."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"the job ledger {path} is damaged ({problem}); the daemon sets it aside and "
            "rebuilds it from the folders at its next start (`voicedrop run`)"
        )


def ledger_problem(path: Path) -> str | None:
    """What is wrong with the ledger file, or None when it is sound or absent (an absent one
    is simply created and rebuilt). A damaged page only shows when it is read, so
    `quick_check` reads them all, read-only so that the check writes nothing into a damaged
    file; a locked ledger or an I/O fault (OperationalError) is the environment's and is
    raised, never mistaken for damage."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        return str(exc)
    lines = [line for row in rows for line in str(row[0]).splitlines()]
    if lines == ["ok"]:
        return None
    problems = [line for line in lines if not line.startswith("***")] or lines
    return "; ".join(problems[:3])


def set_aside(path: Path, stamp: str) -> Path:
    """Move a damaged ledger and its -wal/-shm files out of the way under one new name: opening
    it again would fail the same way, and it is kept (never deleted) for a post-mortem."""
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    number = 2
    while target.exists():  # damaged twice within the second
        target = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
        number += 1
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, target.with_name(target.name + suffix))
    return target


def open_checked(path: Path) -> Ledger:
    """The ledger for a report (`status`): a damaged one raises LedgerDamaged instead of a
    sqlite3 error half-way through."""
    problem = ledger_problem(path)
    if problem is not None:
        raise LedgerDamaged(path, problem)
    return Ledger(path)


@dataclass(frozen=True)
class RenderFigures:
    """What a finished render recorded, as the metrics read it for many renders at once."""

    voice: str
    seconds: float | None  # None: rendered by a version that did not record it
    audio_seconds: float | None
    check_failed_chunks: int | None  # None: not checked


JOB_COLUMNS = frozenset(field.name for field in dataclasses.fields(Job))


def job_from_row(row: sqlite3.Row) -> Job:
    """A finished job never shows a request or progress, even one an older version (which
    merged flags and never cleared them) left in its record. Columns a later version added
    are left out."""
    values = {name: value for name, value in dict(row).items() if name in JOB_COLUMNS}
    kind, state = JobKind(values["kind"]), JobState(values["state"])
    data = DATA_OF[kind].from_json(values["data"])
    values.update(
        kind=kind,
        state=state,
        input_path=Path(values["input_path"]),
        data=data.ended() if state in (JobState.DONE, JobState.FAILED) else data,
    )
    return Job(**values)


class Ledger:
    """One connection per thread: create a Ledger in each thread that needs one."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.upgrade()

    def upgrade(self) -> None:
        """Apply the migrations a ledger lacks, once: the version is read again inside the
        write lock, so two processes opening an old ledger at once do not both alter it."""
        if self.schema_version() >= SCHEMA_VERSION:
            return
        with self.transaction():
            for step in MIGRATIONS[self.schema_version() :]:
                for statement in step:
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> sqlite3.Connection:
        """`with ledger.transaction():` runs a write transaction that takes the lock up front."""
        return _Transaction(self.db)

    def enqueue(
        self,
        kind: JobKind,
        voice: str,
        input_path: Path,
        content_hash: str,
        data: JobData | None = None,
    ) -> tuple[Job, bool]:
        """Queue work once per (kind, voice, content): return the job and whether it is new."""
        now = time.time()
        record = data if data is not None else DATA_OF[kind]()
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO jobs (kind, voice, input_path, content_hash, state, data,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, voice, content_hash) DO NOTHING",
                (
                    kind,
                    voice,
                    str(input_path),
                    content_hash,
                    JobState.PENDING,
                    record.to_json(),
                    now,
                    now,
                ),
            )
            created = cursor.rowcount == 1
            job = self.find(kind, voice, content_hash)
        assert job is not None
        return job, created

    def restore(self, jobs: Iterable[FoundJob]) -> int:
        """Record jobs the folders show were done (a rebuilt ledger), in one transaction: a
        thousand clips cost one fsync, not a thousand. A job already known is left as it is;
        returns how many were added."""
        now = time.time()
        added = 0
        with self.transaction():
            for job in jobs:
                added += self.db.execute(
                    "INSERT INTO jobs (kind, voice, input_path, content_hash, state, data,"
                    " created_at, updated_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (kind, voice, content_hash) DO NOTHING",
                    (
                        job.kind,
                        job.voice,
                        str(job.input_path),
                        job.content_hash,
                        JobState.DONE,
                        job.data.ended().to_json(),
                        now,
                        now,
                        now,
                    ),
                ).rowcount
        return added

    def requeue(self, job_id: int, input_path: Path, data: JobData | None = None) -> None:
        """Give a finished job a fresh start, e.g. when a rejected file is dropped again;
        `data` replaces its record (to carry a request such as `force`)."""
        columns: dict[str, Any] = {} if data is None else {"data": data.to_json()}
        self._update(
            job_id,
            **columns,
            state=JobState.PENDING,
            input_path=str(input_path),
            attempts=0,
            last_error=None,
            not_before=0,
            finished_at=None,
            started_at=None,
            run_seconds=None,
        )

    def claim(self, priorities: dict[JobKind, int]) -> Job | None:
        """Take the runnable job of these kinds with the lowest priority number, oldest first;
        its attempt is counted now, so a job that kills the daemon every time still runs out."""
        now = time.time()
        kinds = ", ".join("?" * len(priorities))
        order = " ".join("WHEN ? THEN ?" for _ in priorities)
        params: list[Any] = [JobState.PENDING, now, *priorities]
        params += [value for pair in priorities.items() for value in pair]
        with self.transaction():
            row = self.db.execute(
                f"SELECT id FROM jobs WHERE state = ? AND not_before <= ? AND kind IN ({kinds})"
                f" ORDER BY CASE kind {order} END, id LIMIT 1",
                params,
            ).fetchone()
            if row is None:
                return None
            self.db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, updated_at = ?,"
                " started_at = ? WHERE id = ?",
                (JobState.RUNNING, now, now, row["id"]),
            )
        return self.get(row["id"])

    def find(self, kind: JobKind, voice: str, content_hash: str) -> Job | None:
        row = self.db.execute(
            "SELECT * FROM jobs WHERE kind = ? AND voice = ? AND content_hash = ?",
            (kind, voice, content_hash),
        ).fetchone()
        return None if row is None else job_from_row(row)

    def get(self, job_id: int) -> Job:
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id}")
        return job_from_row(row)

    def set_data(self, job_id: int, data: JobData) -> Job:
        """Record what a retry must see (where the original goes) or progress for `status`."""
        self._update(job_id, data=data.to_json())
        return self.get(job_id)

    def finish(self, job_id: int, data: JobData) -> None:
        """Done, with what the job produced; its requests and progress are cleared."""
        self._update(
            job_id,
            ends_run=True,
            state=JobState.DONE,
            last_error=None,
            finished_at=time.time(),
            data=data.ended().to_json(),
        )

    def fail(self, job_id: int, error: str, outcome: Outcome | None = None) -> None:
        data = self.get(job_id).data.ended()
        if outcome is not None:
            data = dataclasses.replace(data, outcome=outcome)
        self._update(
            job_id,
            ends_run=True,
            state=JobState.FAILED,
            last_error=error,
            finished_at=time.time(),
            data=data.to_json(),
        )

    def retry_later(self, job_id: int, error: str, delay: float) -> None:
        self._update(
            job_id,
            ends_run=True,
            state=JobState.PENDING,
            last_error=error,
            not_before=time.time() + delay,
        )

    def wait(self, job_id: int, reason: str) -> None:
        """Blocked is not a failed attempt: give the attempt back."""
        now = time.time()
        with self.transaction():
            self.db.execute(
                "UPDATE jobs SET state = ?, last_error = ?,"
                f" attempts = MAX(attempts - 1, 0), updated_at = ?, {END_RUN} WHERE id = ?",
                (JobState.WAITING, reason, now, now, job_id),
            )

    def pause(self, job_id: int, reason: str, delay: float = 0.0) -> None:
        """Put a running job back to pending without spending its attempt (it yielded);
        `delay` lets the jobs it yielded to be claimed before it even when it is older."""
        now = time.time()
        with self.transaction():
            self.db.execute(
                "UPDATE jobs SET state = ?, last_error = ?, not_before = ?,"
                f" attempts = MAX(attempts - 1, 0), updated_at = ?, {END_RUN} WHERE id = ?",
                (JobState.PENDING, reason, now + delay, now, now, job_id),
            )

    def release_waiting(self, kind: JobKind | None = None, reason: str | None = None) -> int:
        """Let blocked jobs (of one kind, waiting for one reason) try again; still blocked,
        they go back to waiting."""
        filters, params = "", [JobState.PENDING, time.time(), JobState.WAITING]
        for column, value in (("kind", kind), ("last_error", reason)):
            if value is not None:
                filters += f" AND {column} = ?"
                params.append(value)
        with self.transaction():
            cursor = self.db.execute(
                f"UPDATE jobs SET state = ?, updated_at = ? WHERE state = ?{filters}", params
            )
        return cursor.rowcount

    def probe_waiting(self) -> int:
        """Release the oldest waiting job per kind and reason: one cheap try tells whether that
        blocker (weights, a model, a broken voice.yaml) is gone; its success releases the rest."""
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE jobs SET state = ?, updated_at = ? WHERE id IN"
                " (SELECT MIN(id) FROM jobs WHERE state = ? GROUP BY kind, last_error)",
                (JobState.PENDING, time.time(), JobState.WAITING),
            )
        return cursor.rowcount

    def recover(self, max_attempts: int) -> tuple[int, list[Job]]:
        """After a crash, jobs left running go back to pending; those that used up their
        attempts are returned, still running, for the worker to give up (a job that crashes
        the daemon must not loop forever, and its input must be filed away). How long a
        crashed run ran is unknown: it adds nothing to the job's run time."""
        with self.transaction():
            self.db.execute(
                "UPDATE jobs SET started_at = NULL WHERE state = ?", (JobState.RUNNING,)
            )
            spent = [
                job_from_row(row)
                for row in self.db.execute(
                    "SELECT * FROM jobs WHERE state = ? AND attempts >= ? ORDER BY id",
                    (JobState.RUNNING, max_attempts),
                )
            ]
            requeued = self.db.execute(
                "UPDATE jobs SET state = ?, updated_at = ? WHERE state = ? AND attempts < ?",
                (JobState.PENDING, time.time(), JobState.RUNNING, max_attempts),
            ).rowcount
        return requeued, spent

    def requeue_running(self) -> int:
        """Jobs left running by an error the worker could not record (the ledger itself was
        full or locked) go back to pending; only the one worker runs jobs."""
        with self.transaction():
            return self.db.execute(
                "UPDATE jobs SET state = ?, updated_at = ?, started_at = NULL WHERE state = ?",
                (JobState.PENDING, time.time(), JobState.RUNNING),
            ).rowcount

    def counts(self) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        for row in self.db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            counts[JobState(row["state"])] = row["n"]
        return counts

    def counts_by_kind(self) -> dict[tuple[JobKind, JobState], int]:
        """Every (kind, state) pair, zeros included: a metric that vanishes reads as unknown."""
        counts = dict.fromkeys(((kind, state) for kind in JobKind for state in JobState), 0)
        rows = self.db.execute("SELECT kind, state, COUNT(*) AS n FROM jobs GROUP BY kind, state")
        for row in rows:
            counts[JobKind(row["kind"]), JobState(row["state"])] = row["n"]
        return counts

    def oldest_pending(self) -> float | None:
        """When the longest-queued pending job was queued (time.time()), None if none is."""
        row = self.db.execute(
            "SELECT MIN(created_at) AS queued FROM jobs WHERE state = ?", (JobState.PENDING,)
        ).fetchone()
        return row["queued"]

    def run_times(self, kind: JobKind, limit: int) -> list[float]:
        """Run seconds of the `limit` jobs of `kind` that finished last; jobs without a
        recorded run time (an older version's, or restored from the folders) are skipped."""
        rows = self.db.execute(
            "SELECT run_seconds FROM (SELECT run_seconds FROM jobs"
            " WHERE kind = ? AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?)"
            " WHERE run_seconds IS NOT NULL",
            (kind, limit),
        )
        return [row[0] for row in rows]

    def render_figures(self, limit: int) -> list[RenderFigures]:
        """What the `limit` renders that finished last recorded (RenderData's fields, read
        in SQL: parsing thousands of records in Python would slow every scrape)."""
        rows = self.db.execute(
            "SELECT voice, json_extract(data, '$.seconds'), json_extract(data, '$.audio_seconds'),"
            " json_extract(data, '$.check_failed_chunks') FROM (SELECT voice, state, data"
            " FROM jobs WHERE kind = ? AND finished_at IS NOT NULL"
            " ORDER BY finished_at DESC LIMIT ?)"
            " WHERE state = ? AND json_extract(data, '$.outcome') = ?",
            (JobKind.RENDER, limit, JobState.DONE, Outcome.RENDERED),
        )
        return [RenderFigures(*row) for row in rows]

    def training_runs(self) -> list[Job]:
        """Per voice, the fine-tuning jobs not yet finished and the last one that trained."""
        rows = self.db.execute(
            "SELECT * FROM jobs WHERE kind = ? AND (state IN (?, ?, ?) OR id IN"
            " (SELECT id FROM (SELECT id, MAX(finished_at) FROM jobs"
            "  WHERE kind = ? AND state = ? AND json_extract(data, '$.step') IS NOT NULL"
            "  GROUP BY voice)))"
            " ORDER BY id",
            (
                JobKind.TRAIN,
                JobState.PENDING,
                JobState.RUNNING,
                JobState.WAITING,
                JobKind.TRAIN,
                JobState.DONE,
            ),
        )
        return [job_from_row(row) for row in rows]

    def busy(self) -> bool:
        """Work is pending or running (waiting jobs do not count: they need the user)."""
        row = self.db.execute(
            "SELECT 1 FROM jobs WHERE state IN (?, ?) LIMIT 1", (JobState.PENDING, JobState.RUNNING)
        ).fetchone()
        return row is not None

    def has_pending(self, kinds: tuple[JobKind, ...]) -> bool:
        """Work of these kinds is queued: a job they pre-empt checkpoints and steps aside."""
        row = self.db.execute(
            f"SELECT 1 FROM jobs WHERE state = ? AND kind IN ({', '.join('?' * len(kinds))})"
            " LIMIT 1",
            (JobState.PENDING, *kinds),
        ).fetchone()
        return row is not None

    def next_due(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(not_before) AS due FROM jobs WHERE state = ?", (JobState.PENDING,)
        ).fetchone()
        return row["due"]

    def jobs(
        self,
        *,
        kind: JobKind | None = None,
        voice: str | None = None,
        state: JobState | None = None,
    ) -> list[Job]:
        clauses, params = [], []
        for column, value in (("kind", kind), ("voice", voice), ("state", state)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.execute(f"SELECT * FROM jobs{where} ORDER BY id", params)
        return [job_from_row(row) for row in rows]

    def forget(self, kind: JobKind, finished_before: float) -> int:
        """Drop the records of `kind`'s jobs that ended before then (they left no files)."""
        with self.transaction():
            cursor = self.db.execute(
                "DELETE FROM jobs WHERE kind = ? AND state IN (?, ?) AND finished_at < ?",
                (kind, JobState.DONE, JobState.FAILED, finished_before),
            )
        return cursor.rowcount

    def _update(self, job_id: int, ends_run: bool = False, **columns: Any) -> None:
        now = columns["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        params = [*columns.values()]
        if ends_run:
            assignments += f", {END_RUN}"
            params.append(now)
        with self.transaction():
            self.db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*params, job_id])


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
