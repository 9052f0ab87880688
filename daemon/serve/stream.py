"""Sentences streamed as one audio file in OpenAI's response formats, as they come.

`pcm` and `wav` at normal speed are written directly (a WAV header that says "length
unknown", as streaming servers send it); every other format, and any other speed, goes
through one ffmpeg process per response, fed sentence by sentence and read as it encodes,
so the first sentence is heard while the next renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from enum import StrEnum

from loguru import logger

from daemon.serve.speech import SpokenChunk

READ_SIZE = 1 << 16
MAX_FFMPEG_ERROR = 2000  # characters of ffmpeg's complaint kept for the log
UNKNOWN_LENGTH = 0xFFFFFFFF
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range


class ResponseFormat(StrEnum):
    MP3 = "mp3"
    OPUS = "opus"
    AAC = "aac"
    FLAC = "flac"
    WAV = "wav"
    PCM = "pcm"  # raw signed 16-bit little-endian mono at 24 kHz, as OpenAI sends it

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self]


MEDIA_TYPES = {
    ResponseFormat.MP3: "audio/mpeg",
    ResponseFormat.OPUS: "audio/ogg",
    ResponseFormat.AAC: "audio/aac",
    ResponseFormat.FLAC: "audio/flac",
    ResponseFormat.WAV: "audio/wav",
    ResponseFormat.PCM: "audio/pcm",
}
FFMPEG_OUTPUT = {
    ResponseFormat.MP3: ("-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"),
    ResponseFormat.OPUS: ("-c:a", "libopus", "-b:a", "32k", "-f", "ogg"),
    ResponseFormat.AAC: ("-c:a", "aac", "-b:a", "64k", "-f", "adts"),
    ResponseFormat.FLAC: ("-c:a", "flac", "-f", "flac"),
    ResponseFormat.WAV: ("-c:a", "pcm_s16le", "-f", "wav"),
    ResponseFormat.PCM: ("-c:a", "pcm_s16le", "-f", "s16le"),
}


async def encoded(
    first: SpokenChunk,
    rest: AsyncIterator[SpokenChunk],
    fmt: ResponseFormat,
    speed: float = 1.0,
) -> AsyncIterator[bytes]:
    """The response body; closing it (the client left) closes `rest`, which stops the job."""
    try:
        if speed == 1.0 and fmt in (ResponseFormat.PCM, ResponseFormat.WAV):
            if fmt is ResponseFormat.WAV:
                yield wav_header(first.rate)
            yield first.pcm16()
            async for chunk in rest:
                yield chunk.pcm16()
        else:
            async for data in through_ffmpeg(first, rest, fmt, speed):
                yield data
    finally:
        await rest.aclose()  # type: ignore[attr-defined]  # an async generator


async def through_ffmpeg(
    first: SpokenChunk, rest: AsyncIterator[SpokenChunk], fmt: ResponseFormat, speed: float
) -> AsyncIterator[bytes]:
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
        "-f", "s16le", "-ar", str(first.rate), "-ac", "1", "-i", "pipe:0",
        *tempo_filter(speed), *FFMPEG_OUTPUT[fmt], "-flush_packets", "1", "pipe:1",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    feeding = asyncio.create_task(feed(process.stdin, first, rest))
    try:
        while data := await process.stdout.read(READ_SIZE):
            yield data
        await feeding  # what stopped the sentences (a failed job) is raised here
        if await process.wait() != 0:
            assert process.stderr is not None
            complaint = (await process.stderr.read(MAX_FFMPEG_ERROR)).decode(errors="replace")
            logger.error("encoding a speech response as {} failed: {}", fmt, complaint.strip())
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeding
        if process.returncode is None:
            process.kill()
            await process.wait()


async def feed(stdin: asyncio.StreamWriter, first: SpokenChunk, rest: AsyncIterator[SpokenChunk]):
    """Write each sentence into ffmpeg as it comes, then end its input so it finishes."""
    try:
        stdin.write(first.pcm16())
        await stdin.drain()
        async for chunk in rest:
            stdin.write(chunk.pcm16())
            await stdin.drain()
    finally:
        stdin.close()


def tempo_filter(speed: float) -> tuple[str, ...]:
    """ffmpeg's atempo keeps the pitch; each stage takes 0.5-2, so 0.25 and 4 take two."""
    if speed == 1.0:
        return ()
    stages = []
    while speed > 2.0:
        stages.append(2.0)
        speed /= 2.0
    while speed < 0.5:
        stages.append(0.5)
        speed /= 0.5
    stages.append(speed)
    return ("-filter:a", ",".join(f"atempo={stage:.6g}" for stage in stages))


def wav_header(rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown": the length is not known until
    the last sentence, and players read such a stream to its end."""
    return (
        b"RIFF"
        + struct.pack("<I", UNKNOWN_LENGTH)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", UNKNOWN_LENGTH)
    )
