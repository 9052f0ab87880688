"""The assembled book: pauses a listener hears, a timeline that matches the samples, the
loudness a meter other than ours reads, and no clicks at joins."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from daemon.book.assembly import assemble
from daemon.book.timeline import Pauses, Spoken
from tests.book.spoken_book import RATE, SHOWN_TITLES, TITLES, sentences, spoken_book
from tests.conftest import voiced_signal

PAUSES = Pauses(sentence=0.3, paragraph=0.8, chapter=1.5, crossfade=0.01)


def ebur128(audio: np.ndarray, rate: int, folder: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) as ffmpeg's ebur128 filter reads them."""
    path = folder / "measured.wav"
    sf.write(path, audio, rate, subtype="FLOAT")
    result = subprocess.run(
        ["ffmpeg", "-nostats", "-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = result.stderr[result.stderr.rindex("Summary:") :]
    loudness = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))
    peak = float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))
    return loudness, peak


def expected_pauses() -> list[float]:
    """The pause after each sentence but the last, from the book's structure."""
    book = spoken_book()
    firsts = [i for i, chunk in enumerate(book) if i == 0 or not same_sentence(book[i - 1], chunk)]
    pauses = []
    for i in firsts[1:]:
        before, after = book[i - 1], book[i]
        if before.chapter != after.chapter:
            pauses.append(PAUSES.chapter)
        elif before.paragraph != after.paragraph:
            pauses.append(PAUSES.paragraph)
        else:
            pauses.append(PAUSES.sentence)
    return pauses


def same_sentence(a: Spoken, b: Spoken) -> bool:
    return (a.chapter, a.paragraph, a.sentence) == (b.chapter, b.paragraph, b.sentence)


def test_sentences_paragraphs_and_chapters_are_separated_by_their_pauses_of_silence() -> None:
    audio, timeline = assemble(spoken_book(), RATE, TITLES, PAUSES, None)
    assert [cue.text for cue in timeline.cues] == sentences()
    gaps = [after.start - before.end for before, after in itertools.pairwise(timeline.cues)]
    assert gaps == pytest.approx(expected_pauses(), abs=1.5 / RATE)
    for before, after in itertools.pairwise(timeline.cues):
        between = audio[round(before.end * RATE) : round(after.start * RATE)]
        assert np.all(between == 0.0)
    assert len(audio) / RATE == pytest.approx(timeline.duration)
    assert timeline.cues[-1].end == pytest.approx(timeline.duration)


def test_each_chunk_sounds_exactly_where_its_span_says() -> None:
    book = spoken_book()
    audio, timeline = assemble(book, RATE, TITLES, PAUSES, None)
    fade = round(PAUSES.crossfade * RATE)
    assert len(timeline.chunks) == len(book)
    for chunk, span in zip(book, timeline.chunks, strict=True):
        start, end = round(span.start * RATE), round(span.end * RATE)
        assert end - start == len(chunk.audio)
        np.testing.assert_array_equal(audio[start + fade : end - fade], chunk.audio[fade:-fade])


def test_chunks_of_one_sentence_are_crossfaded_without_pause_or_click() -> None:
    book = spoken_book()
    audio, timeline = assemble(book, RATE, TITLES, PAUSES, None)
    fade = round(PAUSES.crossfade * RATE)
    largest_step_in_speech = max(np.abs(np.diff(chunk.audio)).max() for chunk in book)
    for i in range(1, len(book)):
        if same_sentence(book[i - 1], book[i]):
            overlap = timeline.chunks[i - 1].end - timeline.chunks[i].start
            assert overlap == pytest.approx(PAUSES.crossfade, abs=1 / RATE)
        join = round(timeline.chunks[i].start * RATE)
        around = audio[join - 2 * fade : join + 2 * fade]
        assert np.abs(np.diff(around)).max() <= largest_step_in_speech
    first, last = timeline.chunks[0], timeline.chunks[-1]
    assert abs(audio[round(first.start * RATE)]) < 1e-3  # the book starts and ends in silence
    assert abs(audio[round(last.end * RATE) - 1]) < 1e-3


def test_chapter_marks_start_at_each_chapters_first_sentence() -> None:
    book = spoken_book()
    _, timeline = assemble(book, RATE, TITLES, PAUSES, None)
    first_chunks = [next(i for i, c in enumerate(book) if c.chapter == n) for n in range(3)]
    assert [mark.title for mark in timeline.chapters] == SHOWN_TITLES
    assert [mark.start for mark in timeline.chapters] == [
        timeline.chunks[i].start for i in first_chunks
    ]
    assert [mark.end for mark in timeline.chapters] == [
        timeline.chapters[1].start,
        timeline.chapters[2].start,
        timeline.duration,
    ]


@pytest.mark.parametrize("target", [-18.0, -16.0])
def test_loudness_reaches_the_target_with_true_peak_under_minus_one(
    target: float, tmp_path: Path
) -> None:
    """Speech peaks ~19 dB above its loudness: the gain to the target alone would clip, so
    the limiter takes the peaks down, and ffmpeg's meter still reads the target."""
    book = [
        Spoken(c.chapter, c.paragraph, c.sentence, c.text, c.audio * np.float32(0.05))
        for c in spoken_book()
    ]
    audio, _ = assemble(book, RATE, TITLES, PAUSES, target)
    loudness, peak = ebur128(audio, RATE, tmp_path)
    assert loudness == pytest.approx(target, abs=1.0)
    assert peak <= -1.0
    assert audio.dtype == np.float32


def test_a_loud_even_render_is_only_turned_down(tmp_path: Path) -> None:
    """A signal with low peaks needs no limiter: one gain brings it to the target."""
    book = [Spoken(0, 0, s, "…", voiced_signal(4.0, RATE, seed=s)) for s in range(4)]
    audio, _ = assemble(book, RATE, [None], PAUSES, -18.0)
    loudness, peak = ebur128(audio, RATE, tmp_path)
    assert loudness == pytest.approx(-18.0, abs=0.2)
    assert peak <= -1.0
    ratio = audio[RATE : 2 * RATE] / book[0].audio[RATE : 2 * RATE]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)  # one gain, no limiting


def test_a_silent_book_stays_silent(tmp_path: Path) -> None:
    book = [Spoken(0, 0, s, "…", np.zeros(RATE, np.float32)) for s in range(3)]
    audio, timeline = assemble(book, RATE, [None], PAUSES, -18.0)
    assert np.all(audio == 0.0)
    assert timeline.duration == pytest.approx(3 + 2 * PAUSES.sentence)
    assert [mark.title for mark in timeline.chapters] == ["Chapter 1"]
