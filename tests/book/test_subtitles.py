"""book.srt and book.vtt: one cue per sentence, in order, while the sentence is heard, and
readable by the parsers players use."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import srt
import webvtt

from daemon.book.assembly import assemble
from daemon.book.subtitles import write_srt, write_vtt
from daemon.book.timeline import Cue, Pauses, Timeline
from daemon.core.atomic import UMASK
from tests.book.spoken_book import RATE, TITLES, sentences, spoken_book


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return assemble(spoken_book(), RATE, TITLES, Pauses(), -18.0)[1]


def seconds(clock: str) -> float:
    hours, minutes, rest = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def assert_heard_in_order(cues: list[Cue], timeline: Timeline) -> None:
    assert [cue.text for cue in cues] == sentences()
    for cue, timed in zip(cues, timeline.cues, strict=True):
        assert cue.start == pytest.approx(timed.start, abs=0.001)
        assert cue.end == pytest.approx(timed.end, abs=0.001)
        assert 0 <= cue.start < cue.end <= timeline.duration + 0.001
    for before, after in itertools.pairwise(cues):
        assert before.end < after.start


def test_srt_has_one_cue_per_sentence_timed_by_the_assembly(
    timeline: Timeline, tmp_path: Path
) -> None:
    path = tmp_path / "book.srt"
    write_srt(timeline.cues, path)
    parsed = list(srt.parse(path.read_text(encoding="utf-8")))
    assert [subtitle.index for subtitle in parsed] == list(range(1, len(parsed) + 1))
    cues = [Cue(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in parsed]
    assert_heard_in_order(cues, timeline)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~UMASK


def test_vtt_has_one_cue_per_sentence_timed_by_the_assembly(
    timeline: Timeline, tmp_path: Path
) -> None:
    path = tmp_path / "book.vtt"
    write_vtt(timeline.cues, path)
    assert path.read_text(encoding="utf-8").startswith("WEBVTT")
    cues = [Cue(seconds(c.start), seconds(c.end), c.text) for c in webvtt.read(path)]
    assert_heard_in_order(cues, timeline)


def test_a_sentence_with_blank_lines_and_arrows_stays_one_cue(tmp_path: Path) -> None:
    cue = Cue(1.0, 2.5, "Then she wrote:\n\n--> go left")
    write_srt([cue], tmp_path / "book.srt")
    write_vtt([cue], tmp_path / "book.vtt")
    (subtitle,) = srt.parse((tmp_path / "book.srt").read_text(encoding="utf-8"))
    (caption,) = webvtt.read(tmp_path / "book.vtt")
    assert subtitle.content == caption.text == "Then she wrote: -> go left"
    assert sorted(os.listdir(tmp_path)) == ["book.srt", "book.vtt"]
