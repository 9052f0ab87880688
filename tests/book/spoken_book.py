"""A three-chapter book spoken by espeak-ng, as the render stage hands chunks to assembly:
real speech, with its own quiet edges, at a TTS engine's rate."""

from __future__ import annotations

import functools
import io
import subprocess

import numpy as np
import soundfile as sf

from daemon.book.timeline import Spoken

RATE = 22050  # espeak-ng's own rate
# The last title has FFMETADATA's special characters and a non-ASCII letter.
TITLES: list[str | None] = ["The Beginning", None, "Épilogue; or, A = B #2"]
SHOWN_TITLES = ["The Beginning", "Chapter 2", "Épilogue; or, A = B #2"]
# chapter → paragraphs → sentences → chunks (a long sentence is spoken in two chunks)
BOOK = (
    (
        (("It was a quiet morning.",), ("The birds sang,", "and the river ran on.")),
        (("Nobody came.",),),
    ),
    ((("A letter arrived at noon.",), ("It was short.",)),),
    ((("She read it twice,", "then folded it away."),), (("The end.",),)),
)


@functools.cache
def speech(text: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == RATE
    return audio


def spoken_book() -> list[Spoken]:
    return [
        Spoken(c, p, s, text, speech(text))
        for c, chapter in enumerate(BOOK)
        for p, paragraph in enumerate(chapter)
        for s, sentence in enumerate(paragraph)
        for text in sentence
    ]


def sentences() -> list[str]:
    """Each sentence's text as its subtitle shows it: its chunks joined."""
    return [" ".join(s) for chapter in BOOK for paragraph in chapter for s in paragraph]
