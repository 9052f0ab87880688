"""Does audio say its text? Whisper listens, and the character error rate between the text
and what it heard, both normalised as the renderer speaks text, answers.

Characters rather than words: one misheard letter of a long word ("colour"/"color") costs
little, and the rate means the same for languages written without spaces.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import numpy as np

from daemon.book.normalise import speakable
from daemon.dataset.whisper import Whisper, to_whisper_rate

# What is left of punctuation after tortoise's cleaners, which transliterate to ASCII.
APOSTROPHES = re.compile(r"['`]")  # "don't" and "dont" are the same word
NOT_A_LETTER = re.compile(r"[^a-z0-9]")


@functools.cache
def tortoise_cleaners() -> tuple[Callable[[str], str], Callable[[str], str]]:
    """TorToiSe's own number expansion and English cleaners (inflect); imported on first use,
    since tortoise's tokenizer module brings torch."""
    from tortoise.utils.tokenizer import english_cleaners, normalize_numbers

    return normalize_numbers, english_cleaners


def normalise(text: str) -> str:
    """`text` as words the renderer speaks: `speakable()` first, the same reading of numbers,
    dates, money, abbreviations and Roman numerals a text gets before it is spoken, so
    "Chapter IV" and a heard "Chapter 4" compare equal; then TorToiSe's own cleaners for
    what is left (ASCII, lower case), no punctuation, single spaces.

    tortoise's number expansion still runs before its ASCII step, which would otherwise
    turn a "£20" that speakable() left alone into "PS20" before its pounds rule sees it."""
    normalize_numbers, english_cleaners = tortoise_cleaners()
    spoken = english_cleaners(normalize_numbers(speakable(text)))
    return " ".join(NOT_A_LETTER.sub(" ", APOSTROPHES.sub("", spoken)).split())


def character_error_rate(expected: str, heard: str) -> float:
    """Edits (insert, delete, substitute) that turn `expected` into `heard`, per character of
    `expected`, after normalising both; capped at 1.0, which hearing nothing scores.

    Nothing expected: 0.0 when nothing was heard either, else 1.0."""
    from rapidfuzz.distance import Levenshtein

    said, understood = normalise(expected), normalise(heard)
    if not said:
        return 0.0 if not understood else 1.0
    return min(1.0, Levenshtein.distance(said, understood) / len(said))


def heard(whisper: Whisper, audio: np.ndarray, rate: int, language: str | None) -> str:
    """What Whisper hears in mono float `audio` at `rate` Hz ("" for silence); `language`
    None lets Whisper detect it. `whisper` must be loaded (`Whisper.load`): the stage that
    asks already holds the model with its options."""
    if whisper.loaded_options is None:
        raise ValueError("heard() needs a loaded Whisper: call Whisper.load(options) first")
    if audio.size == 0:
        return ""
    return whisper.transcribe(whisper.loaded_options, to_whisper_rate(audio, rate), language).text
