"""Every job kind the daemon runs, one line each. A kind's module declares the rest (see
`daemon.core.worker.Stage`): its priority, how it uses the accelerator, what pre-empts
it, what start-up reconciles and which CLI command runs it in the foreground."""

from __future__ import annotations

from daemon.core.worker import Stage, StageContext
from daemon.stages.import_clip import ImportStage
from daemon.stages.prune import PruneStage
from daemon.stages.render import RenderStage
from daemon.stages.speak import SpeechStage
from daemon.stages.train import TrainStage
from daemon.stages.transcribe import TranscribeStage

STAGES: tuple[type[Stage], ...] = (
    ImportStage,
    TranscribeStage,
    PruneStage,
    RenderStage,
    SpeechStage,
    TrainStage,
)


def build_stages(context: StageContext, foreground: str | None = None) -> list[Stage]:
    """The daemon's stages, or only those a foreground command (`transcribe`, `train`) runs."""
    return [
        stage(context) for stage in STAGES if foreground is None or stage.foreground == foreground
    ]
