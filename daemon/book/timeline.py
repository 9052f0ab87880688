"""Where each rendered piece sits in the assembled output: what assembly.py produces and
encode.py (chapter marks), subtitles.py (cues) and the sidecar (chunk times) read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spoken:
    """One rendered chunk, in reading order: its place in the document and its audio (mono
    float32 at the engine's rate). Chunks of one sentence share `sentence`."""

    chapter: int
    paragraph: int
    sentence: int
    text: str  # as written (subtitles show it), not as normalised for the engine
    audio: np.ndarray


@dataclass(frozen=True)
class Pauses:
    """Silence between sentences, paragraphs and chapters, and the crossfade at joins (s)."""

    sentence: float = 0.25
    paragraph: float = 0.75
    chapter: float = 2.0
    crossfade: float = 0.01


@dataclass(frozen=True)
class Span:
    start: float  # seconds from the start of the output
    end: float


@dataclass(frozen=True)
class Cue:
    """One subtitle: a sentence and when it is heard."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class ChapterMark:
    title: str
    start: float
    end: float


@dataclass(frozen=True)
class Timeline:
    chunks: tuple[Span, ...]  # one per Spoken, in the same order
    cues: tuple[Cue, ...]  # one per sentence
    chapters: tuple[ChapterMark, ...]  # one per chapter that has audio
    duration: float
