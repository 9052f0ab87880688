"""What /metrics answers: read at every scrape from the ledger and the folders, like `status`.

Prometheus stores what was true when it asked, and a restarted daemon answers the same: the
figures come from the ledger (bounded to the jobs that finished last, in SQL) and the
folders, not from counters kept in memory. Only the model load times live in the process
(daemon/core/model_loads.py), as a model is loaded there and nowhere recorded.

Histograms read from the ledger are gauge histograms: they describe the last
RECENT_JOBS jobs of a kind, so a bucket can also go down. Read them as they are
(`histogram_quantile(0.9, voicedrop_job_duration_seconds_bucket)`), not with rate().
"""

from __future__ import annotations

import bisect
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.book.cache import GIB, ChunkCache
from daemon.core.config import Settings
from daemon.core.jobs import Job, JobKind, JobState, TrainData
from daemon.core.ledger import Ledger, RenderFigures
from daemon.core.model_loads import MODEL_LOAD_SECONDS
from daemon.core.paths import Root, VoicePaths

RECENT_JOBS = 10_000  # finished jobs per kind the histograms describe: a scrape stays quick
MAX_REASON_FILES = 10_000  # rejected files whose reason one scrape reads; the rest: unread
REASON_BYTES = 1024  # of a reason file read: its kind shows in the first sentence
# From an import (a tenth of a second) to fine-tuning (hours).
DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# Seconds of rendering per second of speech: below 1 renders faster than it speaks.
RTF_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200)
IN_PROGRESS = (JobState.PENDING, JobState.RUNNING, JobState.WAITING)


def build_registry(root: Root, settings: Settings) -> CollectorRegistry:
    """The registry /metrics of this root answers from."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(root, settings))
    registry.register(MODEL_LOAD_SECONDS)
    return registry


class RejectReason(StrEnum):
    """Why a file sits in rejected/, as a label: the reasons themselves are sentences that
    quote file names, and each would be a series of its own."""

    SYMLINK = "symlink"
    EXTENSION = "extension"
    DUPLICATE = "duplicate"
    TOO_LARGE = "too_large"
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    LOW_SAMPLE_RATE = "low_sample_rate"
    SILENT = "silent"
    UNREADABLE = "unreadable"  # empty, damaged, cut short, not audio at all
    CRASHED = "crashed"  # the daemon died each time it imported the file
    REPEATED_ERRORS = "repeated_errors"  # a fault of the machine, until the attempts ran out
    INTERNAL_ERROR = "internal_error"  # a bug in voicedrop
    UNREAD = "unread"  # past MAX_REASON_FILES: counted, not read
    OTHER = "other"


# The words each reason says (daemon/service/intake.py, daemon/stages/import_clip.py,
# daemon/audio/clips.py, daemon/core/worker.py), the most specific first: a reason that
# quotes an error (repeated_errors) may quote another reason's words.
REASON_WORDS: tuple[tuple[str, RejectReason], ...] = (
    ("voicedrop hit an internal error", RejectReason.INTERNAL_ERROR),
    ("; last error: ", RejectReason.REPEATED_ERRORS),
    ("times while this ran", RejectReason.CRASHED),
    (" is a symbolic link (to ", RejectReason.SYMLINK),
    (" is not an audio file type voicedrop imports", RejectReason.EXTENSION),
    ("the same audio (identical content) was already imported", RejectReason.DUPLICATE),
    ("more than import.max_bytes", RejectReason.TOO_LARGE),
    ("MiB of memory to decode", RejectReason.TOO_LARGE),
    ("is longer than import.max_duration", RejectReason.TOO_LONG),
    ("too short: ", RejectReason.TOO_SHORT),
    ("Hz is below the minimum of", RejectReason.LOW_SAMPLE_RATE),
    ("nothing but silence", RejectReason.SILENT),
    ("is empty (0 bytes)", RejectReason.UNREADABLE),
    ("the file ends inside its header", RejectReason.UNREADABLE),
    ("the header announces", RejectReason.UNREADABLE),
    ("ffmpeg cannot read", RejectReason.UNREADABLE),
    ("found no decodable audio", RejectReason.UNREADABLE),
    (" holds no audio, only: ", RejectReason.UNREADABLE),
    ("holds no samples", RejectReason.UNREADABLE),
    ("the audio format changes at", RejectReason.UNREADABLE),
    ("decoding failed at", RejectReason.UNREADABLE),
    ("NaN samples", RejectReason.UNREADABLE),
    ("infinite samples", RejectReason.UNREADABLE),
)


def reject_reason(text: str) -> RejectReason:
    """The kind of a rejected file's reason, from the words its message is written with."""
    for words, reason in REASON_WORDS:
        if words in text:
            return reason
    return RejectReason.OTHER


class LedgerCollector(Collector):
    """Everything /metrics reports but the model loads, read afresh at each scrape."""

    def __init__(self, root: Root, settings: Settings) -> None:
        self.root = root
        self.cache_budget = settings.render.cache_max_gb * GIB

    def collect(self) -> Iterator[Metric]:
        ledger = Ledger(self.root.ledger_file)  # one connection per thread, per scrape
        try:
            counts = ledger.counts_by_kind()
            oldest = ledger.oldest_pending()
            run_times = {kind: ledger.run_times(kind, RECENT_JOBS) for kind in JobKind}
            renders = ledger.render_figures(RECENT_JOBS)
            training = ledger.training_runs()
        finally:
            ledger.close()
        jobs = GaugeMetricFamily(
            "voicedrop_jobs", "Jobs in the ledger by kind and state", labels=["kind", "state"]
        )
        for (kind, state), count in counts.items():
            jobs.add_metric([kind.value, state.value], count)
        yield jobs
        yield GaugeMetricFamily(
            "voicedrop_oldest_pending_job_age_seconds",
            "How long the longest-queued pending job has waited (0: none pending)",
            value=0.0 if oldest is None else max(0.0, time.time() - oldest),
        )
        yield job_durations(run_times)
        yield real_time_factors(renders)
        yield render_checks(renders)
        yield from training_metrics(training)
        yield rejected_files(self.root)
        yield from self.disk_metrics()

    def disk_metrics(self) -> Iterator[Metric]:
        use = ChunkCache(self.root.chunk_cache).use()
        yield GaugeMetricFamily(
            "voicedrop_chunk_cache_bytes", "Size of the rendered-chunk cache", value=use.bytes
        )
        yield GaugeMetricFamily(
            "voicedrop_chunk_cache_chunks", "Chunks in the rendered-chunk cache", value=use.chunks
        )
        yield GaugeMetricFamily(
            "voicedrop_chunk_cache_budget_bytes",
            "render.cache_max_gb: beyond it the least recently used chunks go",
            value=self.cache_budget,
        )
        yield GaugeMetricFamily(
            "voicedrop_disk_free_bytes",
            "Free space on the root's disk",
            value=shutil.disk_usage(self.root.path).free,
        )


def job_durations(run_times: dict[JobKind, list[float]]) -> GaugeHistogramMetricFamily:
    family = GaugeHistogramMetricFamily(
        "voicedrop_job_duration_seconds",
        f"How long jobs ran (pauses and queueing left out), by kind: the last {RECENT_JOBS} "
        "finished jobs of each kind",
        labels=["kind"],
    )
    for kind, seconds in run_times.items():
        family.add_metric([kind.value], buckets(seconds, DURATION_BUCKETS), sum(seconds))
    return family


def real_time_factors(renders: list[RenderFigures]) -> GaugeHistogramMetricFamily:
    """From the ledger rather than the sidecars beside the texts: one query for the last
    renders, where reading sidecars (a book's holds every chunk) would grow with the outbox.
    Each render's factor is its sidecar's real_time_factor."""
    factors = [
        render.seconds / render.audio_seconds
        for render in renders
        if render.seconds is not None and render.audio_seconds
    ]
    family = GaugeHistogramMetricFamily(
        "voicedrop_render_real_time_factor",
        "Seconds of rendering per second of speech (below 1: faster than spoken) of the "
        f"last {RECENT_JOBS} renders",
    )
    family.add_metric([], buckets(factors, RTF_BUCKETS), sum(factors))
    return family


class CheckResult(StrEnum):
    PASSED = "passed"
    FAILED = "failed"


def render_checks(renders: list[RenderFigures]) -> GaugeMetricFamily:
    results: Counter[tuple[str, CheckResult]] = Counter()
    for render in renders:
        if render.check_failed_chunks is not None:
            passed = render.check_failed_chunks == 0
            results[render.voice, CheckResult.PASSED if passed else CheckResult.FAILED] += 1
    family = GaugeMetricFamily(
        "voicedrop_render_checks",
        f"Of the last {RECENT_JOBS} renders checked by ear (render.check), those whose every "
        "chunk passed, and those with chunks that still failed (a .check.txt beside them)",
        labels=["voice", "result"],
    )
    for voice in sorted({voice for voice, _ in results}):
        for result in CheckResult:
            family.add_metric([voice, result.value], results[voice, result])
    return family


def buckets(values: Sequence[float], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative counts per upper bound, as Prometheus buckets (+Inf last)."""
    ordered = sorted(values)
    counts = [(f"{bound:g}", bisect.bisect_right(ordered, bound)) for bound in bounds]
    return [*counts, ("+Inf", len(ordered))]


def training_metrics(jobs: list[Job]) -> Iterator[GaugeMetricFamily]:
    """Per voice: the fine-tuning under way (running, or paused with its progress kept), else
    the last run that finished."""
    in_progress = GaugeMetricFamily(
        "voicedrop_training_in_progress",
        "1 while a voice's fine-tuning runs or is paused part-way, 0 after it finished",
        labels=["voice"],
    )
    step = GaugeMetricFamily(
        "voicedrop_training_step",
        "Training step of the voice's run under way, else of its last finished run",
        labels=["voice"],
    )
    total = GaugeMetricFamily(
        "voicedrop_training_total_steps",
        "Steps the voice's run under way will take in all",
        labels=["voice"],
    )
    loss = GaugeMetricFamily(
        "voicedrop_training_loss",
        "Latest training loss of the voice's run under way, else its last run's final loss",
        labels=["voice", "loss"],
    )
    eta = GaugeMetricFamily(
        "voicedrop_training_eta_seconds",
        "Estimated training time left in the voice's run under way",
        labels=["voice"],
    )
    for voice, data, running in latest_training(jobs):
        in_progress.add_metric([voice], 1 if running else 0)
        if data.progress is not None:
            progress = data.progress
            step.add_metric([voice], progress.step)
            total.add_metric([voice], progress.total_steps)
            for name in ("text", "mel", "total"):
                loss.add_metric([voice, name], getattr(progress, f"loss_{name}"))
            if progress.eta_s is not None:
                eta.add_metric([voice], progress.eta_s)
        else:
            step.add_metric([voice], data.step or 0)
            for name, value in data.losses.items():
                loss.add_metric([voice, name.removeprefix("loss_")], value)
    yield from (in_progress, step, total, loss, eta)


def latest_training(jobs: list[Job]) -> list[tuple[str, TrainData, bool]]:
    """(voice, record, under way) per voice: a run that is running, or paused with its
    progress kept, wins over a finished one."""
    chosen: dict[str, tuple[str, TrainData, bool]] = {}
    for job in jobs:
        started = job.state is JobState.RUNNING or job.data.progress is not None
        under_way = job.state in IN_PROGRESS and started
        if under_way or (job.state is JobState.DONE and job.voice not in chosen):
            chosen[job.voice] = (job.voice, job.data, under_way)
    return [chosen[voice] for voice in sorted(chosen)]


def rejected_files(root: Root) -> GaugeMetricFamily:
    """The folder is the truth, as for `status`: a file the user deletes stops counting."""
    family = GaugeMetricFamily(
        "voicedrop_rejected_files",
        "Files set aside in inbox/<voice>/rejected/, by why (each has a .reason.txt beside it)",
        labels=["voice", "reason"],
    )
    budget = MAX_REASON_FILES
    for name in root.voice_names()[0]:
        reasons, budget = rejection_reasons(root.voice(name), budget)
        for reason, count in sorted(reasons.items()):
            family.add_metric([name, reason.value], count)
    return family


def rejection_reasons(voice: VoicePaths, budget: int) -> tuple[Counter[RejectReason], int]:
    """The voice's rejected files by reason, reading at most `budget` reason files; returns
    the budget left."""
    reasons: Counter[RejectReason] = Counter()
    try:
        entries = list(os.scandir(voice.rejected))
    except (FileNotFoundError, NotADirectoryError):
        return reasons, budget
    for entry in entries:
        if not entry.name.endswith(".reason.txt"):
            continue
        if budget <= 0:
            reasons[RejectReason.UNREAD] += 1
            continue
        budget -= 1
        reasons[reject_reason(read_start(Path(entry.path)))] += 1
    return reasons, budget


def read_start(path: Path) -> str:
    """The first REASON_BYTES of a reason file; one removed meanwhile reads as empty."""
    try:
        with open(path, "rb") as handle:
            return handle.read(REASON_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""
