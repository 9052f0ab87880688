"""`book.srt` and `book.vtt`: one cue per sentence, timed by the assembly (the Timeline),
so a player shows each sentence while it is heard. Written atomically like every output."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import srt
import webvtt

from daemon.book.timeline import Cue
from daemon.core import atomic


def write_srt(cues: tuple[Cue, ...] | list[Cue], path: Path) -> None:
    subtitles = [
        srt.Subtitle(index, millis(cue.start), millis(cue.end), one_line(cue.text))
        for index, cue in enumerate(cues, start=1)
    ]
    atomic.write_text(path, srt.compose(subtitles, reindex=False))


def write_vtt(cues: tuple[Cue, ...] | list[Cue], path: Path) -> None:
    vtt = webvtt.WebVTT()
    for cue in cues:
        vtt.captions.append(webvtt.Caption(clock(cue.start), clock(cue.end), one_line(cue.text)))
    atomic.write_text(path, vtt.content)


def clock(seconds: float) -> str:
    """WebVTT's HH:MM:SS.mmm, rounded to the millisecond."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def one_line(text: str) -> str:
    """A sentence on one line: a blank line would end the cue, and "-->" would start one."""
    return " ".join(text.split()).replace("-->", "->")


def millis(seconds: float) -> timedelta:
    """Rounded to the millisecond, as clock() rounds: srt would truncate the microseconds."""
    return timedelta(milliseconds=round(seconds * 1000))
