"""daemon.stages: every job kind is declared once, and the declarations decide the order work
is done in, which stages a foreground command runs, and what start-up reconciles."""

from pathlib import Path

from daemon.core.config import Settings
from daemon.core.jobs import JobKind
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.core.worker import StageContext
from daemon.stages import STAGES, build_stages


def test_every_kind_has_exactly_one_stage():
    assert sorted(stage.kind for stage in STAGES) == sorted(JobKind)


def test_clips_go_first_then_renders_then_transcriptions_and_training_last(tmp_path: Path):
    """Imports are quick and never wait behind a long text; a burst of clips is imported
    before Whisper runs; fine-tuning yields to everything."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    queued = [JobKind.TRAIN, JobKind.TRANSCRIBE, JobKind.IMPORT, JobKind.RENDER, JobKind.IMPORT]
    for index, kind in enumerate(queued):
        ledger.enqueue(kind, "tom", tmp_path / f"{index}", f"h{index}")
    priorities = {stage.kind: stage.priority for stage in STAGES}
    order = [ledger.claim(priorities).kind for _ in queued]
    assert order == [
        JobKind.IMPORT,
        JobKind.IMPORT,
        JobKind.RENDER,
        JobKind.TRANSCRIBE,
        JobKind.TRAIN,
    ]


def test_foreground_commands_run_only_their_kinds(tmp_path: Path):
    context = StageContext(Root.at(tmp_path), Settings())
    transcribe = {stage.kind for stage in build_stages(context, foreground="transcribe")}
    assert transcribe == {JobKind.TRANSCRIBE, JobKind.PRUNE}
    assert [stage.kind for stage in build_stages(context, foreground="train")] == [JobKind.TRAIN]
    assert len(build_stages(context)) == len(JobKind)
