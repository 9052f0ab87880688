"""`[bracketed text]` is spoken as a prompt (an emotion, a lead-in) and cut from the output.

tortoise-tts 3.0.0 (api.py with utils/wav2vec_alignment.py) feeds the whole text, brackets
included, to the autoregressive model, then aligns the audio to the text with a wav2vec2 model
and keeps only the unbracketed stretches. That model cannot be had offline, so this finds the
same cut points with the Whisper model voicedrop ships: its word timings, matched word by word
against the text, give where each kept stretch starts and ends.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
from dataclasses import dataclass

import numpy as np
import soxr
from loguru import logger

from daemon.tts.texts import BadText

WHISPER_RATE = 16000


class Redaction(enum.StrEnum):
    """What happened to one chunk's bracketed text."""

    NONE = "none"  # the chunk has no brackets
    CUT = "cut"  # the bracketed speech was found and cut out
    KEPT = "kept"  # no cut point was found in the audio: the chunk is kept whole


@dataclass(frozen=True)
class Part:
    text: str
    redacted: bool


def split_redactions(text: str) -> list[Part]:
    """The text as alternating kept and bracketed parts; malformed brackets are a BadText.

    tortoise asserts that every "[" has its "]" with no nesting; an empty pair or a text
    with nothing outside brackets would make a render with nothing to hear."""
    parts: list[Part] = []
    current: list[str] = []
    opened: int | None = None
    for position, char in enumerate(text):
        if char == "[":
            if opened is not None:
                raise BadText(f"brackets cannot nest: second '[' at character {position + 1}")
            opened = position
            parts.append(Part("".join(current), False))
            current = []
        elif char == "]":
            if opened is None:
                raise BadText(f"']' at character {position + 1} closes no '['")
            inner = "".join(current)
            if not inner.strip():
                raise BadText(f"empty [] at character {opened + 1}: remove it or write a prompt")
            parts.append(Part(inner, True))
            opened, current = None, []
        else:
            current.append(char)
    if opened is not None:
        raise BadText(f"'[' at character {opened + 1} is never closed with ']'")
    parts.append(Part("".join(current), False))
    parts = [part for part in parts if part.text.strip()]
    if any(part.redacted for part in parts) and not any(not part.redacted for part in parts):
        raise BadText(
            "everything is inside [brackets], which are spoken as a prompt and cut from the "
            "output: nothing would be left to hear; write some text outside the brackets"
        )
    return parts


def has_redactions(text: str) -> bool:
    return "[" in text or "]" in text


def check_brackets(text: str) -> None:
    """Raise BadText for malformed brackets anywhere in a text, before rendering starts."""
    if has_redactions(text):
        split_redactions(text)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, as both the text and Whisper's words compare."""
    cleaned = "".join(c if c.isalnum() or c == "'" else " " for c in text.lower())
    return [word.strip("'") for word in cleaned.split() if word.strip("'")]


@dataclass(frozen=True)
class HeardWord:
    word: str
    start: float
    end: float


def redact(
    audio: np.ndarray, rate: int, text: str, whisper, options, language: str | None = None
) -> tuple[np.ndarray, Redaction]:
    """`audio` (speech of `text`) without the bracketed parts; the whole audio when the
    words around a cut cannot be found (random weights, mumbled speech), logged as such."""
    if not has_redactions(text):
        return audio, Redaction.NONE
    parts = split_redactions(text)
    heard = listen(audio, rate, whisper, options, language)
    spans = kept_spans(parts, heard, audio.size / rate)
    if spans is None:
        logger.warning(
            "could not find where the [bracketed] words end in the audio of {!r}; "
            "the chunk is kept whole, prompt included",
            text[:60],
        )
        return audio, Redaction.KEPT
    pieces = [audio[int(start * rate) : int(end * rate)] for start, end in spans]
    return np.concatenate(pieces).astype(np.float32), Redaction.CUT


def listen(audio: np.ndarray, rate: int, whisper, options, language: str | None) -> list:
    """Whisper's timed words of `audio` (word timings forced on)."""
    samples = soxr.resample(audio, rate, WHISPER_RATE, quality="HQ").astype(np.float32)
    timed = dataclasses.replace(options, word_timestamps=True)
    transcript = whisper.transcribe(timed, samples, language)
    return [
        HeardWord(word, item["start"], item["end"])
        for segment in transcript.segments
        for item in segment["words"]
        for word in words(item["word"])
    ]


def kept_spans(
    parts: list[Part], heard: list[HeardWord], duration: float
) -> list[tuple[float, float]] | None:
    """(start, end) seconds of every kept part, cut halfway between the last word heard of
    one part and the first word heard of the next; None when a cut has no word either side."""
    expected = [(word, index) for index, part in enumerate(parts) for word in words(part.text)]
    matcher = difflib.SequenceMatcher(
        None, [word for word, _ in expected], [word.word for word in heard], autojunk=False
    )
    found: dict[int, list[HeardWord]] = {}
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            part = expected[block.a + offset][1]
            found.setdefault(part, []).append(heard[block.b + offset])
    cuts = [0.0]
    for index in range(len(parts) - 1):
        before, after = found.get(index), found.get(index + 1)
        if before and after:
            cuts.append((before[-1].end + after[0].start) / 2)
        elif before or after:
            cuts.append(before[-1].end if before else after[0].start)
        else:
            return None
    cuts.append(duration)
    return [(cuts[i], cuts[i + 1]) for i, part in enumerate(parts) if not part.redacted]
