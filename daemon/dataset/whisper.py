"""faster-whisper, loaded once and kept while there is work: language detection per voice
and timed transcription (segments with word timings) per clip."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from daemon.core.config import Settings
from daemon.core.device import resolve_device
from daemon.core.model_loads import LoadedModel, record_load
from daemon.core.paths import Root
from daemon.weights.store import whisper_model

WHISPER_RATE = 16000
DETECTION_SECONDS = 30.0


@dataclass(frozen=True)
class WhisperOptions:
    """Everything that changes a transcript; stored beside it so a change is noticed."""

    model: str
    device: str
    compute_type: str
    beam_size: int
    vad_filter: bool
    word_timestamps: bool
    condition_on_previous_text: bool
    threads: int

    @classmethod
    def from_settings(cls, all_settings: Settings, root: Root) -> WhisperOptions:
        settings = all_settings.whisper
        device = resolve_device(settings.device)
        compute_type = settings.compute_type
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        return cls(
            model=whisper_model(root, all_settings),
            device=device,
            compute_type=compute_type,
            beam_size=settings.beam_size,
            vad_filter=settings.vad_filter,
            word_timestamps=settings.word_timestamps,
            condition_on_previous_text=settings.condition_on_previous_text,
            threads=settings.threads,
        )

    def signature(self) -> dict[str, Any]:
        """What a transcript depends on (device and threads do not change the words)."""
        values = asdict(self)
        for key in ("device", "compute_type", "threads"):
            values.pop(key)
        return values


@dataclass(frozen=True)
class Transcript:
    language: str
    language_probability: float
    duration: float
    segments: list[dict[str, Any]]
    seconds: float

    @property
    def text(self) -> str:
        return " ".join(segment["text"] for segment in self.segments).strip()


class Whisper:
    """Keeps one WhisperModel; a different model or device replaces it."""

    def __init__(self) -> None:
        self.model: Any = None
        self.loaded_options: WhisperOptions | None = None

    def load(self, options: WhisperOptions) -> Any:
        if self.model is None or self.loaded_options != options:
            from faster_whisper import WhisperModel

            self.release()
            started = time.perf_counter()
            self.model = WhisperModel(
                options.model,
                device=options.device,
                compute_type=options.compute_type,
                cpu_threads=options.threads,
            )
            record_load(LoadedModel.WHISPER, started)
            self.loaded_options = options
        return self.model

    def release(self) -> None:
        self.model = None
        self.loaded_options = None

    def detect_language(
        self, options: WhisperOptions, clips: list[np.ndarray]
    ) -> tuple[str, float]:
        """One decision per voice, from up to 30 s of its longest clips (16 kHz audio)."""
        audio = np.concatenate(clips)[: int(DETECTION_SECONDS * WHISPER_RATE)]
        language, probability, _ = self.load(options).detect_language(
            audio, vad_filter=options.vad_filter
        )
        return language, float(probability)

    def transcribe(
        self,
        options: WhisperOptions,
        audio: np.ndarray,
        language: str | None,
        on_progress: Callable[[float], None] = lambda done: None,
    ) -> Transcript:
        started = time.monotonic()
        segments, info = self.load(options).transcribe(
            audio,
            language=language,
            beam_size=options.beam_size,
            vad_filter=options.vad_filter,
            word_timestamps=options.word_timestamps,
            condition_on_previous_text=options.condition_on_previous_text,
        )
        collected = []
        for segment in segments:
            collected.append(segment_dict(segment))
            on_progress(segment.end / max(info.duration, 1e-6))
        return Transcript(
            language=info.language,
            language_probability=float(info.language_probability),
            duration=float(info.duration),
            segments=collected,
            seconds=time.monotonic() - started,
        )


@functools.cache
def shared_whisper() -> Whisper:
    """The process's one Whisper: transcription, cutting [bracketed] prompts and the render
    check share the loaded model rather than each holding a copy."""
    return Whisper()


def segment_dict(segment: Any) -> dict[str, Any]:
    """A JSON-ready segment with plain floats (faster-whisper hands out numpy scalars)."""
    return {
        "start": round(float(segment.start), 3),
        "end": round(float(segment.end), 3),
        "text": segment.text.strip(),
        "avg_logprob": round(float(segment.avg_logprob), 4),
        "no_speech_prob": round(float(segment.no_speech_prob), 4),
        "words": [
            {
                "start": round(float(word.start), 3),
                "end": round(float(word.end), 3),
                "word": word.word,
                "probability": round(float(word.probability), 4),
            }
            for word in segment.words or []
        ],
    }


def load_for_whisper(clip: Path) -> np.ndarray:
    """Clips are 22050 Hz mono float; Whisper wants 16 kHz."""
    import soundfile as sf

    audio, rate = sf.read(clip, dtype="float32")
    return to_whisper_rate(audio, rate)


def to_whisper_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono float audio at any rate as the 16 kHz float32 Whisper takes."""
    if rate == WHISPER_RATE:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, rate, WHISPER_RATE, quality="HQ").astype(np.float32)
