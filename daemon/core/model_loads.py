"""How long the models took to load, in this process.

The daemon serves /metrics from the process that renders, transcribes and imports, so the
loads are observed here, where they happen (daemon/tts, daemon/dataset, daemon/quality), and
the serve metrics (daemon/serve/metrics.py) expose this histogram without those modules
knowing about HTTP.
"""

from __future__ import annotations

import time
from enum import StrEnum

from prometheus_client import Histogram


class LoadedModel(StrEnum):
    TORTOISE = "tortoise"  # the checkpoints one render needs (a fine-tune among them)
    WHISPER = "whisper"
    SPEAKER_ENCODER = "speaker_encoder"


MODEL_LOAD_SECONDS = Histogram(
    "voicedrop_model_load_seconds",
    "Seconds a model took to load into memory (again after each idle unload), by model",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
    registry=None,  # not the process-wide default registry: each served app registers it
)


def record_load(model: LoadedModel, started: float) -> None:
    """A load that began at `started` (time.perf_counter()) has just ended."""
    MODEL_LOAD_SECONDS.labels(model).observe(time.perf_counter() - started)
