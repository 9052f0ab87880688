"""The job model: kinds, states, and one typed record per kind of what a job needs, what it
produced and how far it got. The ledger stores a job's record as JSON with a version.

A request flag (`TranscribeData.force`, `TrainData.now`) and a progress record only live as
long as the run they belong to: `JobData.ended()` clears them when the job finishes or fails.
"""

from __future__ import annotations

import dataclasses
import json
import types
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, ClassVar, Self, Union, get_args, get_origin, get_type_hints

DATA_VERSION = 1  # records written before versioning (version 0) read the same way


class JobKind(StrEnum):
    IMPORT = "import"  # a dropped clip → voices/<voice>/clips/
    TRANSCRIBE = "transcribe"  # an imported clip → dataset lines
    PRUNE = "prune"  # originals deleted → their dataset lines go
    RENDER = "render"  # a text in outbox/ → speech beside it
    TRAIN = "train"  # a voice's dataset → its fine-tuned model
    SPEECH = "speech"  # a request over the API (OpenAI speech, Wyoming) → audio streamed back


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # blocked on something outside the daemon; released by a later check
    DONE = "done"
    FAILED = "failed"


class Outcome(StrEnum):
    """How a job ended; `superseded` means its input changed after queueing, `crashed` that
    the crash-loop guard gave it up."""

    IMPORTED = "imported"
    SUPERSEDED = "superseded"
    TRANSCRIBED = "transcribed"
    NO_SPEECH = "no_speech"
    UNCHANGED = "unchanged"
    REMOVED = "removed"
    PRUNED = "pruned"
    RENDERED = "rendered"
    TRAINED = "trained"
    CRASHED = "crashed"  # failed: the daemon died every time it ran (the crash-loop guard)
    SPOKEN = "spoken"  # a speech request streamed to the end
    ABANDONED = "abandoned"  # a speech request whose client left (or an earlier daemon's)


@dataclass(frozen=True)
class JobData:
    """Base of the per-kind records; fields have defaults so a new job starts empty."""

    REQUESTS: ClassVar[tuple[str, ...]] = ()  # fields of one run (requests, progress): ended()
    outcome: Outcome | None = None

    def to_json(self) -> str:
        record = {"version": DATA_VERSION, **dataclasses.asdict(self)}
        return json.dumps(record, default=str, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Unknown keys (an older version's flags) are ignored, missing ones take defaults; a
        damaged record reads as an empty one rather than stopping `status` or the worker."""
        try:
            raw = json.loads(text or "{}")
            return build(cls, raw if isinstance(raw, dict) else {})
        except (ValueError, TypeError):
            return cls()

    def ended(self) -> Self:
        """The record as kept after the run: requests and progress cleared."""
        reset = {name: getattr(type(self)(), name) for name in self.REQUESTS}
        return dataclasses.replace(self, **reset)


@dataclass(frozen=True)
class SpeakerCheck:
    """A new clip's speaker embedding against the voice's other clips (daemon.quality): its
    cosine similarity to their mean, the range the other clips themselves score (each against
    the rest), and the threshold it had to reach."""

    similarity: float
    typical_low: float
    typical_high: float
    threshold: float
    compared_with: int  # clips in the reference

    @property
    def mismatch(self) -> bool:
        return self.similarity < self.threshold


@dataclass(frozen=True)
class ClipAnalysis:
    """What a user needs to judge a clip for TorToiSe; levels floored at -120 dB. `speaker` is
    None when the clip was not compared (too few other clips, no speech, a record from before
    the check): such records read as they were written."""

    duration: float
    peak_dbfs: float
    clipping_share: float
    rms_dbfs: float
    lufs: float
    noise_floor_dbfs: float
    snr_db: float
    silence_share: float
    sample_rate: int
    channels: int
    codec: str
    warnings: tuple[str, ...]
    speaker: SpeakerCheck | None = None


@dataclass(frozen=True)
class ImportData(JobData):
    original: Path | None = None  # where the dropped file goes; chosen once, kept on retries
    clip: Path | None = None  # the normalised clip written from it
    analysis: ClipAnalysis | None = None
    dropped_name: str | None = None  # as dropped (originals/ may hold it under a safe name)


@dataclass(frozen=True)
class TranscribeData(JobData):
    REQUESTS: ClassVar[tuple[str, ...]] = ("force",)
    force: bool = False  # transcribe again even if nothing changed (`voicedrop transcribe`)
    problem: str | None = None  # why the clip added no lines
    audio_seconds: float | None = None
    seconds: float | None = None  # time Whisper took: the ETA of the voice's next clips
    pieces: int | None = None
    heard_seconds: float | None = None  # of `seconds`: hearing each piece again (the audit)


@dataclass(frozen=True)
class PruneData(JobData):
    removed: tuple[str, ...] = ()  # clips whose lines were dropped


@dataclass(frozen=True)
class RenderProgress:
    chunk: int  # chunks finished
    chunks: int
    eta_s: float | None = None


@dataclass(frozen=True)
class RenderData(JobData):
    REQUESTS: ClassVar[tuple[str, ...]] = ("progress",)
    wav: Path | None = None  # the audio written (any format: the name is kept for old records)
    seconds: float | None = None
    progress: RenderProgress | None = None
    audio_seconds: float | None = None  # of speech written: with `seconds`, the real-time factor
    check_failed_chunks: int | None = None  # still failing the render check; None: not checked


@dataclass(frozen=True)
class TrainProgress:
    step: int
    total_steps: int
    epoch: float
    epochs: int
    loss_text: float
    loss_mel: float
    loss_total: float
    lr: float
    steps_per_s: float
    batch_size: int
    micro_batch: int
    eta_s: float | None = None
    val_loss_text: float | None = None
    val_loss_mel: float | None = None
    val_loss_total: float | None = None


@dataclass(frozen=True)
class TrainData(JobData):
    REQUESTS: ClassVar[tuple[str, ...]] = ("now", "progress")
    now: bool = False  # outside the training window (`voicedrop train --now`)
    progress: TrainProgress | None = None
    model: Path | None = None
    model_sha256: str | None = None
    losses: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    run: Path | None = None
    step: int | None = None
    skipped: dict[str, int] = field(default_factory=dict)  # dataset lines left out, by reason
    finished_at_text: str | None = None
    promoted: bool | None = None  # the run's model replaced the voice's (None: before scoring)
    decision: str | None = None  # why it was promoted or kept aside, in words


@dataclass(frozen=True)
class SpeechData(JobData):
    chunks: int | None = None  # sentences streamed
    audio_seconds: float | None = None
    seconds: float | None = None  # from the start of the job to its last chunk
    first_chunk_seconds: float | None = None  # what a listener waited for the first sound
    failed_checks: int | None = None  # chunks the render check still failed (None: check off)


DATA_OF: dict[JobKind, type[JobData]] = {
    JobKind.IMPORT: ImportData,
    JobKind.TRANSCRIBE: TranscribeData,
    JobKind.PRUNE: PruneData,
    JobKind.RENDER: RenderData,
    JobKind.TRAIN: TrainData,
    JobKind.SPEECH: SpeechData,
}


@dataclass(frozen=True)
class Job:
    id: int
    kind: JobKind
    voice: str
    input_path: Path
    content_hash: str
    state: JobState
    attempts: int
    last_error: str | None
    data: Any  # the DATA_OF[kind] record
    not_before: float
    created_at: float
    updated_at: float
    finished_at: float | None


@dataclass(frozen=True)
class FoundJob:
    """A job the folders show was done although the ledger lost it (a clip in clips/ with its
    original): what a rebuild records, as done, with `data` as the job would have left it."""

    kind: JobKind
    voice: str
    input_path: Path
    content_hash: str
    data: JobData


def build(cls: type, raw: dict[str, Any]) -> Any:
    """A dataclass from its JSON form, converting nested records, enums, paths and tuples."""
    hints = get_type_hints(cls)
    values = {
        f.name: convert(raw[f.name], hints[f.name])
        for f in dataclasses.fields(cls)
        if f.init and f.name in raw
    }
    return cls(**values)


def convert(value: Any, hint: Any) -> Any:
    if value is None:
        return None
    options = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            try:
                return build(option, value)
            except TypeError:  # a nested record missing a field: dropped, not fatal
                return None
        if isinstance(option, type) and issubclass(option, Enum | Path):
            return option(value)
        if get_origin(option) is tuple:
            return tuple(value)
    return value
