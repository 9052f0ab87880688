"""Every output format plays (ffmpeg decodes it, as long as the book), carries the chapter
marks and tags a player shows, and a failed encode leaves nothing behind."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import mutagen
import numpy as np
import pytest
from mutagen import flac, id3, mp4, oggopus

from daemon.book.assembly import assemble
from daemon.book.document import Cover
from daemon.book.encode import EncodeError, Format, Tags, encode
from daemon.book.timeline import Pauses, Timeline
from daemon.core.atomic import UMASK
from tests.book.spoken_book import RATE, SHOWN_TITLES, TITLES, spoken_book

CHAPTERED = (Format.FLAC, Format.MP3, Format.OPUS, Format.M4A, Format.M4B)


def png() -> bytes:
    red = ["-f", "lavfi", "-i", "color=red:s=16x16", "-frames:v", "1"]
    return subprocess.run(
        ["ffmpeg", "-v", "error", *red, "-c:v", "png", "-f", "image2pipe", "-"],
        capture_output=True,
        check=True,
    ).stdout


COVER = Cover(png(), "image/png")
TAGS = Tags("A Quiet Morning", "tom", "Short Stories", 2, COVER, "en")


@pytest.fixture(scope="module")
def book() -> tuple[np.ndarray, Timeline]:
    return assemble(spoken_book(), RATE, TITLES, Pauses(), -18.0)


def ffprobe(path: Path) -> dict:
    shown = ["-show_chapters", "-show_streams", "-show_format"]
    result = subprocess.run(
        ["ffprobe", "-v", "error", *shown, "-of", "json", str(path)],
        capture_output=True,
        check=True,
    )
    return json.loads(result.stdout)


def decoded_seconds(path: Path) -> float:
    """How long the file plays: the samples ffmpeg decodes, at the rate it decodes them."""
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-"],
        capture_output=True,
        check=True,
    ).stdout
    rate = int(ffprobe(path)["streams"][0]["sample_rate"])
    return len(pcm) / 4 / rate


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_plays_as_long_as_the_book(
    fmt: Format, book: tuple[np.ndarray, Timeline], tmp_path: Path
) -> None:
    audio, timeline = book
    target = tmp_path / f"book{fmt.suffix}"
    encode(audio, RATE, target, fmt, None, TAGS, timeline.chapters)
    assert decoded_seconds(target) == pytest.approx(timeline.duration, abs=0.05)
    expected_rate = 48_000 if fmt is Format.OPUS else RATE
    assert int(ffprobe(target)["streams"][0]["sample_rate"]) == expected_rate
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~UMASK
    assert os.listdir(tmp_path) == [target.name]


@pytest.mark.parametrize("fmt", CHAPTERED)
def test_chapter_marks_read_back_with_their_titles_and_starts(
    fmt: Format, book: tuple[np.ndarray, Timeline], tmp_path: Path
) -> None:
    audio, timeline = book
    target = tmp_path / f"book{fmt.suffix}"
    encode(audio, RATE, target, fmt, None, TAGS, timeline.chapters)
    chapters = ffprobe(target)["chapters"]
    assert [c["tags"]["title"] for c in chapters] == SHOWN_TITLES
    starts = [float(c["start_time"]) for c in chapters]
    assert starts == pytest.approx([mark.start for mark in timeline.chapters], abs=0.05)


@pytest.mark.parametrize("fmt", [Format.MP3, Format.OPUS, Format.M4B])
def test_the_bitrate_is_settable(
    fmt: Format, book: tuple[np.ndarray, Timeline], tmp_path: Path
) -> None:
    audio, timeline = book
    target = tmp_path / f"book{fmt.suffix}"
    encode(audio, RATE, target, fmt, "32k", TAGS, timeline.chapters)
    bits = (target.stat().st_size - len(COVER.data)) * 8
    assert bits / timeline.duration == pytest.approx(32_000, rel=0.25)


def cover_of(path: Path, fmt: Format) -> bytes:
    if fmt in (Format.M4A, Format.M4B):
        return bytes(mp4.MP4(path)["covr"][0])
    if fmt is Format.MP3:
        return id3.ID3(path).getall("APIC")[0].data
    if fmt is Format.FLAC:
        return flac.FLAC(path).pictures[0].data
    encoded = oggopus.OggOpus(path)["METADATA_BLOCK_PICTURE"][0]
    return flac.Picture(base64.b64decode(encoded)).data


@pytest.mark.parametrize("fmt", CHAPTERED)
def test_tags_and_cover_read_back(
    fmt: Format, book: tuple[np.ndarray, Timeline], tmp_path: Path
) -> None:
    audio, timeline = book
    target = tmp_path / f"book{fmt.suffix}"
    encode(audio, RATE, target, fmt, None, TAGS, timeline.chapters)
    tags = mutagen.File(target, easy=True)
    assert tags["title"] == ["A Quiet Morning"]
    assert tags["artist"] == ["tom"]
    assert tags["album"] == ["Short Stories"]
    assert tags["tracknumber"][0].split("/")[0] == "2"
    assert cover_of(target, fmt) == COVER.data


def test_wav_carries_the_text_tags(book: tuple[np.ndarray, Timeline], tmp_path: Path) -> None:
    audio, timeline = book
    target = tmp_path / "book.wav"
    encode(audio, RATE, target, Format.WAV, None, TAGS, timeline.chapters)
    tags = ffprobe(target)["format"]["tags"]
    assert tags["title"] == "A Quiet Morning"
    assert (tags["artist"], tags["album"]) == ("tom", "Short Stories")


def test_an_impossible_bitrate_is_a_clear_error_and_leaves_nothing(
    book: tuple[np.ndarray, Timeline], tmp_path: Path
) -> None:
    audio, timeline = book
    with pytest.raises(EncodeError, match=r"ffmpeg exited .*bit rate 1000000 bps is unsupported"):
        encode(audio, RATE, tmp_path / "book.opus", Format.OPUS, "1M", TAGS, timeline.chapters)
    assert os.listdir(tmp_path) == []


def test_the_outbox_knows_every_format_encode_writes():
    """tts/outputs.py names them without importing the encoder (intake stays light)."""
    from daemon.tts.outputs import AUDIO_SUFFIXES

    assert {fmt.suffix for fmt in Format} == set(AUDIO_SUFFIXES)
