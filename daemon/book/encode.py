"""The assembled book written as the file a user plays: ffmpeg encodes raw float32 fed on
its stdin (with chapter marks from an FFMETADATA file), then mutagen writes the tags and
cover into the encoded file, all before the one rename that makes it the output. MP3 and
WAV are tagged by ffmpeg instead (below).

Bit rates, unless `render.bitrate` says otherwise: mp3 128k (libmp3lame), opus 64k
(libopus, always at 48 kHz, the only rate Opus decodes at), m4a and m4b 96k (AAC). WAV and
FLAC are lossless and ignore the bit rate. WAV has no standard place for a cover: it gets
the text tags only (a RIFF INFO chunk written by ffmpeg), and no chapter marks.

Chapter marks: MP4 chapters (m4a, m4b) and ID3 CHAP frames with a CTOC (mp3) by ffmpeg;
Vorbis-comment CHAPTERnnn for FLAC and Opus by mutagen. An mp3's ID3 tag (text frames, CHAP
frames, APIC cover) is written whole by ffmpeg: saving it again with mutagen sorts frames
by size, which puts the CHAP frames out of time order, and readers that ignore the CTOC
(ffprobe, ffmpeg-based players) then list the chapters out of order.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from mutagen import flac, mp4, oggopus

from daemon.book.document import Cover
from daemon.book.timeline import ChapterMark
from daemon.core import atomic

OPUS_RATE = 48_000
FEED_SAMPLES = 1 << 20  # samples written to ffmpeg at a time: 4 MB, never the whole book
STDERR_LINES = 20  # what an error message quotes of ffmpeg's complaint


class Format(StrEnum):
    WAV = "wav"
    FLAC = "flac"
    MP3 = "mp3"
    OPUS = "opus"
    M4A = "m4a"
    M4B = "m4b"

    @property
    def suffix(self) -> str:
        return f".{self.value}"


@dataclass(frozen=True)
class Codec:
    """How ffmpeg writes one format."""

    muxer: str
    encoder: str
    bitrate: str | None  # the default; None for lossless formats
    chapters: bool  # whether ffmpeg writes the chapter marks (else tag_* do, or none)
    ffmpeg_tags: bool = False  # whether ffmpeg writes the tags (else tag_* do)
    cover: bool = True  # whether the container has a place for a cover


CODECS = {
    Format.WAV: Codec("wav", "pcm_s16le", None, chapters=False, ffmpeg_tags=True, cover=False),
    Format.FLAC: Codec("flac", "flac", None, chapters=False),
    Format.MP3: Codec("mp3", "libmp3lame", "128k", chapters=True, ffmpeg_tags=True),
    Format.OPUS: Codec("opus", "libopus", "64k", chapters=False),
    Format.M4A: Codec("ipod", "aac", "96k", chapters=True),
    Format.M4B: Codec("ipod", "aac", "96k", chapters=True),
}


@dataclass(frozen=True)
class Tags:
    title: str
    artist: str  # the voice that reads the book
    album: str | None = None
    track: int | None = None
    cover: Cover | None = None
    language: str | None = None


class EncodeError(RuntimeError):
    """ffmpeg could not write the book; the message quotes its last lines of complaint."""


def encode(
    audio: np.ndarray,
    rate: int,
    target: Path,
    fmt: Format,
    bitrate: str | None,
    tags: Tags,
    chapters: tuple[ChapterMark, ...],
) -> None:
    """Write mono float32 `audio` to `target` as `fmt`, tagged, with chapter marks where the
    format has them; on failure nothing is left behind (neither target nor temp file)."""
    codec = CODECS[fmt]
    with (
        tempfile.TemporaryDirectory(prefix="voicedrop-encode-") as scratch,
        atomic.atomic_path(target) as tmp,
    ):
        metadata = Path(scratch) / "metadata.txt"
        metadata.write_text(
            ffmetadata(
                text_tags(tags) if codec.ffmpeg_tags else {},
                chapters if codec.chapters else (),
            ),
            encoding="utf-8",
        )
        cover = None
        if codec.ffmpeg_tags and codec.cover and tags.cover is not None:
            cover = Path(scratch) / ("cover.png" if tags.cover.mime == "image/png" else "cover.jpg")
            cover.write_bytes(tags.cover.data)
        run_ffmpeg(ffmpeg_command(rate, tmp, metadata, cover, codec, bitrate, fmt), audio)
        write_tags(tmp, fmt, tags, chapters)


def ffmpeg_command(
    rate: int,
    tmp: Path,
    metadata: Path,
    cover: Path | None,
    codec: Codec,
    bitrate: str | None,
    fmt: Format,
) -> list[str]:
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"]
    # With a second input ffmpeg reads stdin on a thread whose queue (8 packets by default)
    # runs dry between pipe reads and it sleeps: 10 minutes of WAV took 12 s instead of 0.2.
    command += ["-thread_queue_size", "4096"]
    command += ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0"]
    command += ["-f", "ffmetadata", "-i", str(metadata)]
    if cover is not None:
        command += ["-i", str(cover)]
    command += ["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1"]
    if cover is not None:  # an attached picture: ffmpeg's mp3 muxer makes it the APIC frame
        command += ["-map", "2:v", "-c:v", "copy", "-disposition:v", "attached_pic"]
        command += ["-metadata:s:v", "comment=Cover (front)"]
    command += ["-c:a", codec.encoder]
    if fmt is Format.OPUS:
        command += ["-ar", str(OPUS_RATE)]
    if codec.bitrate is not None:
        command += ["-b:a", bitrate or codec.bitrate]
    return [*command, "-f", codec.muxer, str(tmp)]


def text_tags(tags: Tags) -> dict[str, str]:
    """The tags in ffmpeg's and Vorbis comments' common names, the ones that are set."""
    values = {
        "title": tags.title,
        "artist": tags.artist,
        "album": tags.album,
        "track": None if tags.track is None else str(tags.track),
        "language": tags.language,
    }
    return {key: value for key, value in values.items() if value}


def ffmetadata(tags: dict[str, str], chapters: tuple[ChapterMark, ...]) -> str:
    """An FFMETADATA file: global tags, then one [CHAPTER] per mark, in milliseconds."""
    lines = [";FFMETADATA1"]
    lines += [f"{key}={escape(value)}" for key, value in tags.items()]
    for mark in chapters:
        lines += [
            "[CHAPTER]",
            "TIMEBASE=1/1000",
            f"START={round(mark.start * 1000)}",
            f"END={round(mark.end * 1000)}",
            f"title={escape(mark.title)}",
        ]
    return "\n".join(lines) + "\n"


def escape(value: str) -> str:
    """FFMETADATA's escaping: '=', ';', '#', '\\' and newlines take a backslash."""
    for special in ("\\", "=", ";", "#", "\n"):
        value = value.replace(special, "\\" + special)
    return value


def run_ffmpeg(command: list[str], audio: np.ndarray) -> None:
    """Feed `audio` to ffmpeg piece by piece; its stderr is drained by a thread (so a chatty
    ffmpeg cannot block on a full pipe) and only its last lines are kept."""
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stderr is not None
    last_lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
    stderr = process.stderr
    reader = threading.Thread(
        target=lambda: last_lines.extend(line.decode("utf-8", "replace") for line in stderr),
        daemon=True,
    )
    reader.start()
    samples = np.asarray(audio, np.float32)
    try:
        # A broken pipe means ffmpeg stopped reading: its exit status and stderr say why.
        with contextlib.suppress(BrokenPipeError):
            for start in range(0, len(samples), FEED_SAMPLES):
                process.stdin.write(samples[start : start + FEED_SAMPLES].tobytes())
    finally:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        code = process.wait()
        reader.join()
    if code != 0:
        complaint = "".join(last_lines).strip() or "(nothing on stderr)"
        raise EncodeError(f"ffmpeg exited with status {code}: {complaint}")


def write_tags(path: Path, fmt: Format, tags: Tags, chapters: tuple[ChapterMark, ...]) -> None:
    """Title, artist, album, track, language and cover in the format's own tag block (and,
    for the Vorbis-comment formats, the chapter marks); WAV and MP3 have theirs already."""
    if fmt in (Format.M4A, Format.M4B):
        tag_mp4(path, tags)
    elif fmt is Format.FLAC:
        tag_flac(path, tags, chapters)
    elif fmt is Format.OPUS:
        tag_opus(path, tags, chapters)


def tag_mp4(path: Path, tags: Tags) -> None:
    audio = mp4.MP4(path)
    audio["\xa9nam"] = [tags.title]
    audio["\xa9ART"] = [tags.artist]
    if tags.album:
        audio["\xa9alb"] = [tags.album]
    if tags.track is not None:
        audio["trkn"] = [(tags.track, 0)]
    if tags.language:
        audio["----:com.apple.iTunes:LANGUAGE"] = [mp4.MP4FreeForm(tags.language.encode())]
    if tags.cover is not None:
        kind = mp4.MP4Cover.FORMAT_PNG if tags.cover.mime == "image/png" else None
        audio["covr"] = [mp4.MP4Cover(tags.cover.data, kind or mp4.MP4Cover.FORMAT_JPEG)]
    audio.save()


def picture(cover: Cover) -> flac.Picture:
    """A front-cover METADATA_BLOCK_PICTURE, as FLAC and Opus files carry it."""
    block = flac.Picture()
    block.type = 3
    block.mime = cover.mime
    block.desc = "Cover"
    block.data = cover.data
    return block


def vorbis_comments(tags: Tags, chapters: tuple[ChapterMark, ...]) -> dict[str, str]:
    """Text tags and chapter marks as Vorbis comments (CHAPTER001=HH:MM:SS.mmm and
    CHAPTER001NAME, the convention ffmpeg and players read). Written here, not by ffmpeg:
    ffmpeg 5.1 rounds each chapter's start to the next whole second."""
    names = {"track": "TRACKNUMBER"}
    comments = {names.get(key, key.upper()): value for key, value in text_tags(tags).items()}
    for number, mark in enumerate(chapters, start=1):
        millis = round(mark.start * 1000)
        hours, rest = divmod(millis, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        seconds, millis = divmod(rest, 1000)
        comments[f"CHAPTER{number:03d}"] = f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"
        comments[f"CHAPTER{number:03d}NAME"] = mark.title
    return comments


def tag_flac(path: Path, tags: Tags, chapters: tuple[ChapterMark, ...]) -> None:
    audio = flac.FLAC(path)
    audio.update(vorbis_comments(tags, chapters))
    if tags.cover is not None:
        audio.clear_pictures()
        audio.add_picture(picture(tags.cover))
    audio.save()


def tag_opus(path: Path, tags: Tags, chapters: tuple[ChapterMark, ...]) -> None:
    """Vorbis comments, the cover base64-encoded in METADATA_BLOCK_PICTURE as Opus wants."""
    audio = oggopus.OggOpus(path)
    audio.update(vorbis_comments(tags, chapters))
    if tags.cover is not None:
        encoded = base64.b64encode(picture(tags.cover).write()).decode("ascii")
        audio["METADATA_BLOCK_PICTURE"] = [encoded]
    audio.save()
