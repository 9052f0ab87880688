"""Cut a transcribed clip into training pieces TorToiSe accepts (0.6-11.6 s by default).

Whisper's segments are the first cut; a segment that is too long is split between words
(at the longest pause, preferring punctuation and balanced halves), and one that is too
short is merged into the closer neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PUNCTUATION = ".,;:!?"
TRIM_FRAME = 0.01
TRIM_BELOW_PEAK_DB = 40.0
TRIM_MARGIN = 0.05


@dataclass(frozen=True)
class Piece:
    start: float
    end: float
    text: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def plan_pieces(
    segments: list[dict[str, Any]], min_seconds: float, max_seconds: float
) -> list[Piece]:
    units: list[Piece] = []
    for segment in segments:
        whole = Piece(segment["start"], segment["end"], segment["text"])
        units += split_long(whole, segment.get("words") or [], max_seconds)
    merged = merge_short(units, min_seconds, max_seconds)
    return [p for p in merged if min_seconds <= p.duration <= max_seconds and p.text]


def split_long(piece: Piece, words: list[dict[str, Any]], max_seconds: float) -> list[Piece]:
    """Halve at the best pause between words until every part fits; no words, no cut."""
    if piece.duration <= max_seconds:
        return [piece]
    if len(words) < 2:
        return []
    cut = best_cut(words)
    left, right = words[:cut], words[cut:]
    parts = (
        Piece(piece.start, left[-1]["end"], join_words(left)),
        Piece(right[0]["start"], piece.end, join_words(right)),
    )
    return split_long(parts[0], left, max_seconds) + split_long(parts[1], right, max_seconds)


def best_cut(words: list[dict[str, Any]]) -> int:
    """Index of the first word after the cut: long pauses and sentence marks win, lopsided
    halves lose."""
    start, end = words[0]["start"], words[-1]["end"]
    total = max(end - start, 1e-6)

    def score(index: int) -> float:
        pause = words[index]["start"] - words[index - 1]["end"]
        punctuated = words[index - 1]["word"].strip()[-1:] in PUNCTUATION
        imbalance = abs((words[index]["start"] - start) - (end - words[index]["start"])) / total
        return pause + 0.3 * punctuated - 0.5 * imbalance

    return max(range(1, len(words)), key=score)


def join_words(words: list[dict[str, Any]]) -> str:
    return "".join(word["word"] for word in words).strip()


def merge_short(units: list[Piece], min_seconds: float, max_seconds: float) -> list[Piece]:
    """Fold each too-short piece into the neighbour across the smaller gap, if the result
    still fits; what cannot be merged stays short and is dropped by the caller."""
    pieces = list(units)
    index = 0
    while index < len(pieces):
        piece = pieces[index]
        if piece.duration >= min_seconds:
            index += 1
            continue
        partner = merge_partner(pieces, index, max_seconds)
        if partner is None:
            index += 1
            continue
        first, second = sorted((index, partner))
        pieces[first : second + 1] = [join(pieces[first], pieces[second])]
        index = first
    return pieces


def merge_partner(pieces: list[Piece], index: int, max_seconds: float) -> int | None:
    candidates = []
    for other in (index - 1, index + 1):
        if 0 <= other < len(pieces):
            merged = join(*sorted((pieces[index], pieces[other]), key=lambda p: p.start))
            if merged.duration <= max_seconds:
                gap = max(
                    pieces[other].start - pieces[index].end, pieces[index].start - pieces[other].end
                )
                candidates.append((gap, other))
    return min(candidates)[1] if candidates else None


def join(first: Piece, second: Piece) -> Piece:
    return Piece(first.start, second.end, f"{first.text} {second.text}".strip())


def adjust(
    piece: Piece,
    audio: np.ndarray,
    rate: int,
    *,
    start_offset: float,
    end_offset: float,
    trim: bool,
    min_seconds: float,
    max_seconds: float,
) -> Piece:
    """Apply the configured offsets, then cut leading and trailing silence, never leaving the
    clip nor the allowed length."""
    duration = audio.size / rate
    start = min(max(0.0, piece.start + start_offset), duration)
    end = min(duration, max(start, piece.end + end_offset))
    if trim:
        start, end = trimmed(audio, rate, start, end, min_seconds)
    end = min(end, start + max_seconds)
    return Piece(round(start, 3), round(end, 3), piece.text)


def trimmed(
    audio: np.ndarray, rate: int, start: float, end: float, min_seconds: float
) -> tuple[float, float]:
    frame = int(TRIM_FRAME * rate)
    segment = audio[int(start * rate) : int(end * rate)]
    count = segment.size // frame
    if count == 0:
        return start, end
    energy = np.square(segment[: count * frame].reshape(count, frame), dtype=np.float64).mean(1)
    level = 10 * np.log10(energy + 1e-12)
    loud = np.flatnonzero(level > level.max() - TRIM_BELOW_PEAK_DB)
    new_start = max(start, start + loud[0] * TRIM_FRAME - TRIM_MARGIN)
    new_end = min(end, start + (loud[-1] + 1) * TRIM_FRAME + TRIM_MARGIN)
    if new_end - new_start < min_seconds:
        return start, end
    return new_start, new_end
