"""The rendered chunks of a book joined into one track: pauses between sentences, paragraphs
and chapters, a short fade at every edge so no join clicks, and one gain (and, only where
needed, a look-ahead limiter) so every book plays at the same loudness. The Timeline is
computed from the sample positions the chunks are written at, so subtitles and chapter
marks are exact, never estimated.

Loudness is the project's BS.1770-4 measure (daemon.audio.clips: its K-weighting and gates),
run segment by segment; ffmpeg's ebur128 reads the result within 0.1 LU (tests/book). It is
measured in this module, not by clips.integrated_loudness, which filters a float64 copy of
the whole signal (7 GB for ten hours).

Memory: the output is one float32 array of the book's length (10 hours at 24 kHz: 3.5 GB)
beside the chunks the caller holds (as much again). Loudness, true peak and limiting work
in SEGMENT_SECONDS pieces (~50 MB of working arrays in all, bench/RESULTS.md), so no second
full-length copy is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum

import numpy as np
import soxr
from scipy import ndimage, signal

from daemon.audio.clips import _k_weighting
from daemon.book.timeline import ChapterMark, Cue, Pauses, Span, Spoken, Timeline

SEGMENT_SECONDS = 60.0
TRUE_PEAK_DBTP = -1.0
# Aimed under the limit so meters that oversample otherwise (ffmpeg's ebur128 goes through
# 48 kHz) read no more than -1.0 either: they differ from ours by a few hundredths of a dB.
TRUE_PEAK_AIM_DBTP = TRUE_PEAK_DBTP - 0.05
OVERSAMPLING = 4  # BS.1770-4 annex 2: true peak is the peak of the 4x oversampled signal
LIMITER_CEILING_DB = -1.5  # sample peak the limiter aims at: inter-sample peaks sit above
LIMITER_WINDOW_SECONDS = 0.005  # look-ahead and release: short enough to catch one syllable
ABSOLUTE_GATE_LUFS = -70.0
LOUDNESS_PASSES = 3  # limiting, measuring again: each pass closes most of what is left
LOUDNESS_TOLERANCE_LU = 0.1


def assemble(
    spoken: list[Spoken],
    rate: int,
    chapter_titles: list[str | None],
    pauses: Pauses,
    loudness_lufs: float | None,
) -> tuple[np.ndarray, Timeline]:
    """The book as mono float32 at `rate`, and where each chunk, sentence and chapter sits."""
    starts, total = layout(spoken, rate, pauses)
    audio = np.zeros(total, np.float32)
    fade = round(pauses.crossfade * rate)
    for chunk, start in zip(spoken, starts, strict=True):
        audio[start : start + len(chunk.audio)] += faded(chunk.audio, fade)
    if loudness_lufs is not None:
        normalise(audio, rate, loudness_lufs)
    return audio, timeline(spoken, starts, rate, chapter_titles, total)


class Join(Enum):
    """What separates two neighbouring chunks, and so how long a pause goes between them."""

    WITHIN_SENTENCE = "within sentence"  # only the crossfade
    SENTENCE = "sentence"
    PARAGRAPH = "paragraph"
    CHAPTER = "chapter"


def join_between(previous: Spoken, chunk: Spoken) -> Join:
    if chunk.chapter != previous.chapter:
        return Join.CHAPTER
    if chunk.paragraph != previous.paragraph:
        return Join.PARAGRAPH
    if chunk.sentence != previous.sentence:
        return Join.SENTENCE
    return Join.WITHIN_SENTENCE


def pause(join: Join, pauses: Pauses) -> float:
    return {
        Join.WITHIN_SENTENCE: 0.0,
        Join.SENTENCE: pauses.sentence,
        Join.PARAGRAPH: pauses.paragraph,
        Join.CHAPTER: pauses.chapter,
    }[join]


def layout(spoken: list[Spoken], rate: int, pauses: Pauses) -> tuple[list[int], int]:
    """Each chunk's first sample and the total length. Chunks of one sentence overlap by the
    crossfade (their faded edges add up to an equal-power crossfade); others are separated
    by their pause of silence, into which their edges fade."""
    starts: list[int] = []
    end = 0
    for i, chunk in enumerate(spoken):
        if i == 0:
            start = 0
        else:
            join = join_between(spoken[i - 1], chunk)
            if join is not Join.WITHIN_SENTENCE:
                start = end + round(pause(join, pauses) * rate)
            else:
                overlap = min(
                    fade_length(spoken[i - 1].audio, pauses.crossfade, rate),
                    fade_length(chunk.audio, pauses.crossfade, rate),
                )
                start = end - overlap
        starts.append(start)
        end = max(end, start + len(chunk.audio))
    return starts, end


def fade_length(audio: np.ndarray, seconds: float, rate: int) -> int:
    """The crossfade in samples, at most half a chunk so a short chunk keeps its middle."""
    return min(round(seconds * rate), len(audio) // 2)


def faded(audio: np.ndarray, fade: int) -> np.ndarray:
    """The chunk with quarter-sine edges: sin² + cos² = 1, so two overlapping edges keep the
    power of uncorrelated speech, and an edge next to silence starts without a click."""
    out = np.asarray(audio, np.float32).copy()
    n = min(fade, len(out) // 2)
    if n:
        ramp = np.sin(0.5 * np.pi * (np.arange(n, dtype=np.float32) + 0.5) / n)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out


def timeline(
    spoken: list[Spoken],
    starts: list[int],
    rate: int,
    chapter_titles: list[str | None],
    total: int,
) -> Timeline:
    """Spans, cues and chapter marks read off the sample positions the chunks were put at."""
    spans = tuple(
        Span(start / rate, (start + len(chunk.audio)) / rate)
        for chunk, start in zip(spoken, starts, strict=True)
    )
    cues: list[Cue] = []
    chapter_starts: list[tuple[int, float]] = []
    for i, chunk in enumerate(spoken):
        if i > 0 and join_between(spoken[i - 1], chunk) is Join.WITHIN_SENTENCE:
            last = cues[-1]
            cues[-1] = Cue(last.start, spans[i].end, f"{last.text} {chunk.text}")
        else:
            cues.append(Cue(spans[i].start, spans[i].end, chunk.text))
        if not chapter_starts or chapter_starts[-1][0] != chunk.chapter:
            chapter_starts.append((chunk.chapter, spans[i].start))
    duration = total / rate
    chapters = tuple(
        ChapterMark(
            chapter_title(chapter_titles, index),
            start,
            chapter_starts[k + 1][1] if k + 1 < len(chapter_starts) else duration,
        )
        for k, (index, start) in enumerate(chapter_starts)
    )
    return Timeline(spans, tuple(cues), chapters, duration)


def chapter_title(titles: list[str | None], index: int) -> str:
    """The chapter's own title, or "Chapter N" (counting from 1) for an untitled one."""
    title = titles[index] if index < len(titles) else None
    return title or f"Chapter {index + 1}"


def segments(length: int, size: int) -> Iterator[slice]:
    for start in range(0, length, size):
        yield slice(start, min(start + size, length))


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    """BS.1770-4 integrated loudness (LUFS), as daemon.audio.clips measures a clip, but
    filtered segment by segment (filter state carried over) so a book needs no float64 copy
    of its whole length. Blocks are four 100 ms hops; -inf for silence."""
    hop = round(0.1 * rate)
    filters = _k_weighting(rate)
    state = [np.zeros(2) for _ in filters]
    energies: list[np.ndarray] = []
    size = hop * max(1, round(SEGMENT_SECONDS * rate / hop))
    for part in segments(len(audio), size):
        weighted = audio[part].astype(np.float64)
        for k, (b, a) in enumerate(filters):
            weighted, state[k] = signal.lfilter(b, a, weighted, zi=state[k])
        whole = len(weighted) // hop * hop
        energies.append(np.square(weighted[:whole]).reshape(-1, hop).sum(axis=1))
    hops = np.concatenate(energies) if energies else np.zeros(0)
    if len(hops) < 4:
        return -np.inf
    power = (hops[:-3] + hops[1:-2] + hops[2:-1] + hops[3:]) / (4 * hop)
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10.0 * np.log10(power)
    gated = power[loudness > ABSOLUTE_GATE_LUFS]
    if not gated.size:
        return -np.inf
    relative_gate = -0.691 + 10.0 * np.log10(gated.mean()) - 10.0
    gated = power[(loudness > ABSOLUTE_GATE_LUFS) & (loudness > relative_gate)]
    return float(-0.691 + 10.0 * np.log10(gated.mean()))


def true_peak(audio: np.ndarray, rate: int) -> float:
    """The peak of the 4x oversampled signal in dBTP (-inf for silence), streamed through
    soxr so only one segment is oversampled at a time."""
    stream = soxr.ResampleStream(rate, OVERSAMPLING * rate, 1, dtype="float32", quality="HQ")
    peak = 0.0
    parts = list(segments(len(audio), round(SEGMENT_SECONDS * rate)))
    for k, part in enumerate(parts):
        oversampled = stream.resample_chunk(audio[part], last=k == len(parts) - 1)
        if oversampled.size:
            peak = max(peak, float(np.max(np.abs(oversampled))))
    return 20.0 * np.log10(peak) if peak > 0 else -np.inf


def normalise(audio: np.ndarray, rate: int, target_lufs: float) -> None:
    """Bring the book to `target_lufs`, in place, with one gain when its true peak then
    stays under -1 dBTP. Otherwise a look-ahead limiter lowers only the peaks rather than
    the whole book (speech peaks ~19 dB above its loudness: a lower gain would leave the
    book 1-3 LU quiet); the limited peaks take some loudness with them, so it is measured
    again and the gap made up, for at most LOUDNESS_PASSES passes, and a last small gain
    trims what the limiter's sample-peak ceiling let through, so the book can end a little
    under target (ffmpeg reads espeak speech set to -16 or -18 LUFS within 0.3 LU of it).
    Silence is left as it is."""
    for _ in range(LOUDNESS_PASSES):
        loudness = integrated_loudness(audio, rate)
        if not np.isfinite(loudness):
            return
        gain_db = target_lufs - loudness
        if abs(gain_db) < LOUDNESS_TOLERANCE_LU:
            break
        if true_peak(audio, rate) + gain_db <= TRUE_PEAK_AIM_DBTP:
            scale(audio, 10.0 ** (gain_db / 20.0), rate)
            return
        limit(audio, rate, 10.0 ** (gain_db / 20.0), 10.0 ** (LIMITER_CEILING_DB / 20.0))
    excess = true_peak(audio, rate) - TRUE_PEAK_AIM_DBTP
    if excess > 0:
        scale(audio, 10.0 ** (-excess / 20.0), rate)


def scale(audio: np.ndarray, gain: float, rate: int) -> None:
    for part in segments(len(audio), round(SEGMENT_SECONDS * rate)):
        audio[part] *= np.float32(gain)


def limit(audio: np.ndarray, rate: int, gain: float, ceiling: float) -> None:
    """Apply `gain`, then hold every sample under `ceiling`, in place. The gain curve is the
    sliding minimum of what each sample needs over ±window, smoothed by a moving average no
    wider than the window, so it is never above what any sample needs and never steps."""
    window = max(1, round(LIMITER_WINDOW_SECONDS * rate))
    context = 2 * window
    size = round(SEGMENT_SECONDS * rate)
    original_tail = np.zeros(0, np.float32)  # the last segment's end before it was limited
    for part in segments(len(audio), size):
        ahead = audio[part.stop : part.stop + context] * np.float32(gain)
        current = audio[part] * np.float32(gain)
        padded = np.concatenate((original_tail, current, ahead))
        need = np.minimum(1.0, ceiling / np.maximum(np.abs(padded), 1e-12)).astype(np.float32)
        envelope = ndimage.minimum_filter1d(need, 2 * window + 1, mode="nearest")
        envelope = ndimage.uniform_filter1d(envelope, window + 1, mode="nearest")
        original_tail = current[-context:].copy()
        start = len(padded) - len(ahead) - len(current)
        audio[part] = current * envelope[start : start + len(current)]
