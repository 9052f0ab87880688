"""Decode, vet, normalise and measure voice clips.

The import stage calls, in this order: `decode()` -> `check_usable()` -> `to_mono()` ->
`analyse()`, then `write_clip()`. Anything that can never become a usable clip raises
`BadAudio` with a stable `code` and a sentence the user can act on.

Levels are in dBFS relative to a full-scale sample (|x| = 1.0). Digital silence has no finite
level, so every level is floored at `DB_FLOOR` (-120 dB): all values stay finite and
JSON-ready, and -120 dB is far below any real recording's noise.
"""

from __future__ import annotations

import contextlib
import math
import re
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.logging
import numpy as np
import soundfile
import soxr
from scipy import signal

from daemon.core.atomic import atomic_path
from daemon.core.jobs import ClipAnalysis

CLIP_RATE = 22050
DB_FLOOR = -120.0
CLIPPED_AT = 0.999
# Trusted headers count samples or frames exactly; this absorbs codec priming/padding and a
# damaged final frame, but nothing a listener would miss.
TRUNCATION_TOLERANCE_S = 0.25
FRAME_S = 0.050
# Decoded float32 samples held at once: 20 min of 48 kHz stereo fit, 8 channels at 384 kHz
# do not, however small their file (silence compresses to almost nothing).
MAX_DECODED_BYTES = 512 << 20
# A 50 ms frame is silence when it is this far below the clip's loud frames (95th percentile):
# room tone between words counts as silence, quiet speech does not.
SILENCE_BELOW_LOUD_DB = 35.0
NOISE_PERCENTILE = 10.0
SILENT_PEAK_DBFS = -60.0
MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"


class BadAudio(Exception):
    """Input that can never be imported; `code` is a short stable slug, str(e) a sentence a user
    can act on."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, eq=False)
class Decoded:
    """Samples exactly as the file holds them: original rate and channels, float32 (channels, n).

    eq=False: comparing numpy arrays field by field has no single truth value.
    """

    samples: np.ndarray
    sample_rate: int
    channels: int
    codec: str
    container: str
    bits: int | None

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate


# --- decoding -------------------------------------------------------------------------------


def decode(path: Path, max_seconds: float | None = None) -> Decoded:
    """Decode any format ffmpeg reads, refusing files that are empty, damaged or cut short,
    and files longer than `max_seconds` (from their header when it says, else as soon as
    decoding passes it), so memory stays bounded."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadAudio("empty", f"{path.name} is empty (0 bytes); copy the file again")
    with _ffmpeg_messages() as messages:
        container = _open(path, messages)
        with container:
            stream = _audio_stream(container, path)
            announced = _announced_seconds(path, container, stream)
            if max_seconds is not None and announced is not None and announced > max_seconds:
                raise _too_long(path, max_seconds)
            codec = stream.codec_context
            if announced is not None and decoded_bytes(codec, announced) > MAX_DECODED_BYTES:
                raise _too_large(path, codec.channels, codec.sample_rate, announced)
            collected = _decode_stream(container, stream, messages, path, max_seconds)
            samples = collected.samples(codec.channels)
            decoded = Decoded(
                samples=samples,
                sample_rate=collected.rate,
                channels=samples.shape[0],
                codec=codec.codec.canonical_name,
                container=container.format.name,
                bits=_bit_depth(codec),
            )
    _check_complete(decoded, collected.problems, announced)
    return decoded


class _FfmpegLogLevel:
    """ffmpeg's log level is process-wide: raised while any thread decodes, restored after.

    PyAV keeps ffmpeg quiet by default; capturing its messages needs a level, and Capture()
    then takes this thread's messages away from stderr.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: tuple[int | None, bool] = (None, True)

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = (av.logging.get_level(), av.logging.get_skip_repeated())
                av.logging.set_level(av.logging.ERROR)
                av.logging.set_skip_repeated(False)  # else repeats surface in a later file
            self._users += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                av.logging.set_level(self._saved[0])
                av.logging.set_skip_repeated(self._saved[1])


_LOG_LEVEL = _FfmpegLogLevel()
Messages = list[tuple[int, str, str]]


@contextlib.contextmanager
def _ffmpeg_messages() -> Iterator[Messages]:
    """Collect ffmpeg's error messages for our reasons instead of letting them reach stderr."""
    with _LOG_LEVEL, av.logging.Capture() as messages:
        yield messages


def _ffmpeg_text(messages: Messages, fallback: str) -> str:
    """The most specific thing ffmpeg said: its last logged error, else the exception text."""
    if not messages:
        return fallback
    _level, source, text = messages[-1]
    return f"{source}: {text.strip()}" if source else text.strip()


def _open(path: Path, messages: Messages) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except OSError:
        raise  # missing file, no permission: the file may still be fine, so not BadAudio
    except av.error.EOFError as error:
        raise BadAudio(
            "truncated",
            f"the file ends inside its header after {path.stat().st_size} bytes "
            f"(ffmpeg: {_ffmpeg_text(messages, error.strerror)}); copy or export it again",
        ) from error
    except av.FFmpegError as error:
        raise BadAudio(
            "not_audio",
            f"ffmpeg cannot read {path.name} as audio ({_ffmpeg_text(messages, error.strerror)}); "
            "drop a wav, flac, mp3, ogg, opus, m4a or webm file",
        ) from error


def _audio_stream(container: av.container.InputContainer, path: Path) -> av.AudioStream:
    if container.streams.audio:
        return container.streams.audio[0]
    kinds = ", ".join(f"{s.type} ({s.codec_context.name})" for s in container.streams) or "none"
    raise BadAudio(
        "no_audio_stream",
        f"{path.name} holds no audio, only: {kinds}; drop an audio file or export the sound track",
    )


@dataclass(frozen=True)
class _Problem:
    """An ffmpeg error, and how many samples per channel had been decoded when it happened
    (None: while opening the file, before decoding began)."""

    at: int | None
    text: str


class _Collector:
    """Decoded chunks, plus every ffmpeg error met on the way and where it happened."""

    def __init__(self, messages: Messages) -> None:
        self.messages = messages
        self.chunks: list[np.ndarray] = []
        self.problems: list[_Problem] = []
        self.rate = 0
        self.decoded = 0
        self._seen = len(messages)
        if messages:  # opening read ahead and met damage; where exactly is unknown
            self.problems.append(_Problem(None, _ffmpeg_text(messages, "")))

    def add(self, frame: av.AudioFrame) -> None:
        chunk = _frame_samples(frame)
        self.rate = self.rate or frame.sample_rate
        channels = self.chunks[0].shape[0] if self.chunks else chunk.shape[0]
        if (frame.sample_rate, chunk.shape[0]) != (self.rate, channels):
            raise BadAudio(  # chained streams: joining different formats would be garbage
                "corrupt",
                f"the audio format changes at {self.decoded / self.rate:.2f} s from "
                f"{self.rate} Hz with {channels} channel(s) to {frame.sample_rate} Hz with "
                f"{chunk.shape[0]}; export it again as one continuous recording",
            )
        self.chunks.append(chunk)
        self.decoded += chunk.shape[1]

    def note(self, failure: str | None) -> None:
        """Record a raised error and whatever ffmpeg logged since the last packet."""
        if len(self.messages) > self._seen or failure:
            text = _ffmpeg_text(self.messages[self._seen :], failure or "")
            self.problems.append(_Problem(self.decoded, text))
            self._seen = len(self.messages)

    def samples(self, channels: int) -> np.ndarray:
        if not self.chunks:
            return np.zeros((max(channels, 1), 0), np.float32)
        return np.concatenate(self.chunks, axis=1)


def _too_large(path: Path, channels: int, rate: int, seconds: float) -> BadAudio:
    return BadAudio(
        "too_large",
        f"{path.name} would take {channels * rate * seconds * 4 / 2**20:.0f} MiB of memory to "
        f"decode ({channels} channels at {rate} Hz for {seconds:.0f} s; at most "
        f"{MAX_DECODED_BYTES >> 20} MiB): export it as mono or stereo at 48 kHz or less",
    )


def _too_long(path: Path, max_seconds: float) -> BadAudio:
    return BadAudio(
        "too_long",
        f"{path.name} is longer than import.max_duration ({max_seconds:.0f} s): cut it into "
        "shorter clips, or raise import.max_duration in config.yaml",
    )


def _decode_stream(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    messages: Messages,
    path: Path,
    max_seconds: float | None,
) -> _Collector:
    """Decode packet by packet, so a bad packet is recorded with its position, not fatal."""
    codec = stream.codec_context
    collected = _Collector(messages)
    limit = None if max_seconds is None else max_seconds * (codec.sample_rate or 192000)
    try:
        for packet in container.demux(stream):
            try:
                for frame in codec.decode(packet):
                    collected.add(frame)
                    if limit is not None and collected.decoded > limit:
                        raise _too_long(path, max_seconds)
                    seconds = collected.decoded / collected.rate
                    if decoded_bytes(codec, seconds) > MAX_DECODED_BYTES:
                        raise _too_large(path, codec.channels, collected.rate, seconds)
            except av.FFmpegError as error:
                collected.note(error.strerror)
            else:
                collected.note(None)
    except av.FFmpegError as error:  # the demuxer gave up; judge what decoded before
        collected.note(error.strerror)
    return collected


def decoded_bytes(codec: av.AudioCodecContext, seconds: float) -> float:
    """Memory the decoded float32 samples of `seconds` of this stream take."""
    return codec.channels * (codec.sample_rate or 0) * seconds * 4


def _frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """One frame as float32 (channels, n), scaled so that integer full scale is 1.0."""
    data = frame.to_ndarray()
    if not frame.format.is_planar:
        data = data.reshape(-1, frame.layout.nb_channels).T
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if data.dtype.kind == "i":
        return data.astype(np.float32) / float(2 ** (data.dtype.itemsize * 8 - 1))
    return data.astype(np.float32)


def _check_complete(decoded: Decoded, problems: list[_Problem], announced: float | None) -> None:
    """Refuse what decoded only partly: errors mid-stream, or less audio than the header says."""
    total = decoded.samples.shape[1]
    if total == 0:
        if problems:
            raise BadAudio(
                "not_audio",
                f"ffmpeg found no decodable audio in it ({problems[0].text}); "
                "drop a wav, flac, mp3, ogg, opus, m4a or webm file",
            )
        raise BadAudio("no_samples", "the file has an audio header but holds no samples")
    rate = decoded.sample_rate
    # An error after which audio kept coming damaged the middle; one at the very end only
    # cost the final frame, which the truncation check below weighs. Errors met while opening
    # are not placed in time (an odd tag is no reason to refuse) and only explain a shortfall.
    midstream = [p for p in problems if p.at is not None and p.at < total]
    if midstream:
        raise BadAudio(
            "corrupt",
            f"decoding failed at {midstream[0].at / rate:.2f} s of {total / rate:.2f} s "
            f"(ffmpeg: {midstream[0].text}; {len(midstream)} error(s) in all); "
            "the file is damaged, copy or export it again",
        )
    if announced is not None and announced - decoded.duration > TRUNCATION_TOLERANCE_S:
        detail = f" (ffmpeg: {problems[0].text})" if problems else ""
        raise BadAudio(
            "truncated",
            f"the header announces {announced:.2f} s but only {decoded.duration:.2f} s "
            f"could be decoded{detail}; the file was cut short, copy or export it again",
        )


def _announced_seconds(
    path: Path, container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    """The length the file's own header promises, only where that header counts exactly.

    Ogg's is the last page's sample position: pages lost in between show as a shortfall.
    Elsewhere ffmpeg guesses a duration from the bit rate, which would flag good files.
    """
    name = container.format.name
    if name == "wav":
        frames = _wav_data_frames(path)
        return None if frames is None else frames / stream.codec_context.sample_rate
    if name == "flac":
        info = _flac_streaminfo(stream.codec_context.extradata)
        return info[1] / info[0] if info and info[1] else None
    if name in ("ogg", MP4_FAMILY) or (name == "mp3" and _mp3_counts_frames(path)):
        end = float(stream.duration * stream.time_base) if stream.duration else None
    elif name == "matroska,webm" and len(container.streams) == 1 and container.duration:
        end = container.duration / av.time_base
    else:
        return None
    # Ogg and Matroska state where the audio ends, not how long it is: a clip cut from a longer
    # recording starts late. Where the value is a length, this only makes the check milder.
    start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    return None if end is None else end - max(0.0, start)


def _wav_data_frames(path: Path) -> int | None:
    """Sample frames the RIFF data chunk announces (ffmpeg clamps it to the file size)."""
    with path.open("rb") as wav:
        if wav.read(4) != b"RIFF" or wav.read(8)[4:] != b"WAVE":
            return None
        block_align = 0
        while len(header := wav.read(8)) == 8:
            chunk_id, size = struct.unpack("<4sI", header)
            if chunk_id == b"data":
                unknown = size in (0, 0xFFFFFFFF)  # streamed wavs leave the size unset
                return None if unknown or not block_align else size // block_align
            body = wav.read(size + (size & 1))
            if chunk_id == b"fmt " and len(body) >= 14:
                block_align = struct.unpack_from("<H", body, 12)[0]
    return None


def _flac_streaminfo(extradata: bytes | None) -> tuple[int, int, int] | None:
    """(sample rate, total samples, bits per sample) from FLAC's STREAMINFO block."""
    if not extradata or len(extradata) < 18:
        return None
    packed = int.from_bytes(extradata[10:18], "big")
    rate, bits, total = packed >> 44, ((packed >> 36) & 0x1F) + 1, packed & (2**36 - 1)
    return rate, total, bits


def _mp3_counts_frames(path: Path) -> bool:
    """Whether the first MPEG frame is a Xing/Info/VBRI header holding the exact frame count."""
    with path.open("rb") as mp3:
        head = mp3.read(10)
        if head[:3] == b"ID3" and len(head) == 10:
            tag_size = sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))
            mp3.seek(10 + tag_size + (10 if head[5] & 0x10 else 0))
        else:
            mp3.seek(0)
        first_frame = mp3.read(200)
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))


def _bit_depth(codec: av.AudioCodecContext) -> int | None:
    """Bit depth where the format states it: PCM codec names and FLAC's STREAMINFO."""
    if match := re.fullmatch(r"pcm_[suf](\d+)(?:le|be)?(?:planar)?", codec.name):
        return int(match.group(1))
    if codec.name == "flac" and (info := _flac_streaminfo(codec.extradata)):
        return info[2]
    return None


# --- vetting and normalising ----------------------------------------------------------------


def check_usable(
    decoded: Decoded, *, min_seconds: float = 0.6, min_sample_rate: int = 8000
) -> None:
    """Refuse clips no amount of processing makes useful for voice cloning."""
    samples = decoded.samples
    if nans := int(np.isnan(samples).sum()):
        raise BadAudio(
            "nan",
            f"contains {nans} NaN samples (not-a-number) out of {samples.size}; "
            "the file is damaged or was written by a faulty tool, export it again",
        )
    if infinite := int(np.isinf(samples).sum()):
        raise BadAudio(
            "infinite",
            f"contains {infinite} infinite samples out of {samples.size}; "
            "the file is damaged or was written by a faulty tool, export it again",
        )
    if decoded.sample_rate < min_sample_rate:
        raise BadAudio(
            "low_rate",
            f"sample rate {decoded.sample_rate} Hz is below the minimum of {min_sample_rate} Hz; "
            "record or export at 22050 Hz or more",
        )
    if decoded.duration < min_seconds:
        raise BadAudio(
            "too_short",
            f"too short: {decoded.duration:.2f} s; a clip must be at least {min_seconds:g} s",
        )
    centred = samples - samples.mean(axis=1, keepdims=True)
    peak = float(_db_power(float(np.abs(centred).max()) ** 2))
    if peak < SILENT_PEAK_DBFS:
        raise BadAudio(
            "silent",
            f"nothing but silence: after removing DC offset the peak is {peak:.1f} dBFS "
            f"(below {SILENT_PEAK_DBFS:g} dBFS); check the microphone and record again",
        )


def to_mono(decoded: Decoded, sample_rate: int = CLIP_RATE) -> np.ndarray:
    """Average the channels and resample with soxr's high-quality filter."""
    mono = np.ascontiguousarray(decoded.samples.mean(axis=0, dtype=np.float32))
    if decoded.sample_rate != sample_rate:
        mono = soxr.resample(mono, decoded.sample_rate, sample_rate, quality="HQ")
    return mono.astype(np.float32, copy=False)


def write_clip(target: Path, mono: np.ndarray, sample_rate: int = CLIP_RATE) -> None:
    """Write a 32-bit float WAV that appears complete or not at all."""
    with atomic_path(Path(target)) as tmp:
        soundfile.write(tmp, mono, sample_rate, subtype="FLOAT", format="WAV")


# --- analysis -------------------------------------------------------------------------------


def analyse(
    decoded: Decoded,
    mono: np.ndarray,
    mono_rate: int = CLIP_RATE,
    *,
    short_seconds: float = 3.0,
    long_seconds: float = 15.0,
    max_clipping_share: float = 0.001,
    min_snr_db: float = 20.0,
    max_silence_share: float = 0.5,
    min_lufs: float = -35.0,
    min_rate: int = CLIP_RATE,
) -> ClipAnalysis:
    """Measure a clip and phrase TorToiSe's guidance (about 10 s, clean, unclipped) as warnings.

    Peak and clipping are measured on the original samples, where clipping happened; the rest
    on the mono clip TorToiSe will hear. `mono` must not be empty (check_usable sees to that).
    """
    m = _measure(decoded, mono, mono_rate)
    advice = "TorToiSe works best with clips of about 10 s (3-15 s)"
    checks = [
        (m["duration"] < short_seconds, f"short: {m['duration']:.1f} s; {advice}"),
        (
            m["duration"] > long_seconds,
            f"long: {m['duration']:.1f} s; {advice}, split it at pauses",
        ),
        (
            m["clipping_share"] > max_clipping_share,
            f"clipping: {m['clipping_share']:.2%} of samples are at full scale; "
            "lower the input gain and record again",
        ),
        (
            m["snr_db"] < min_snr_db,
            f"noisy: signal-to-noise about {m['snr_db']:.0f} dB (background at "
            f"{m['noise_floor_dbfs']:.0f} dBFS); TorToiSe copies background noise and hum, "
            "record somewhere quieter",
        ),
        (
            m["silence_share"] > max_silence_share,
            f"mostly_silence: {m['silence_share']:.0%} of the clip is silence; trim the pauses",
        ),
        (
            m["lufs"] < min_lufs,
            f"quiet: loudness {m['lufs']:.1f} LUFS (below {min_lufs:g} LUFS); "
            "record closer to the microphone or raise the gain",
        ),
        (
            decoded.sample_rate < min_rate,
            f"low_rate: recorded at {decoded.sample_rate} Hz and upsampled to {mono_rate} Hz, so "
            "it lacks high frequencies; record at 22050 Hz or more",
        ),
    ]
    return ClipAnalysis(
        **m,
        sample_rate=decoded.sample_rate,
        channels=decoded.channels,
        codec=decoded.codec,
        warnings=tuple(text for hit, text in checks if hit),
    )


def _measure(decoded: Decoded, mono: np.ndarray, rate: int) -> dict[str, float]:
    original = np.abs(decoded.samples)
    frames = _frames(mono, rate)
    power = np.mean(np.square(frames), axis=1)
    levels = _db_power(power)
    # The background is never louder than the quiet moments themselves (steady sounds).
    noise = min(_noise_power(frames), float(np.percentile(power, NOISE_PERCENTILE)))
    noise_floor = float(_db_power(noise))
    loud = float(np.percentile(levels, 95))
    return {
        "duration": decoded.duration,
        "peak_dbfs": float(_db_power(float(original.max()) ** 2)),
        "clipping_share": float(np.mean(original >= CLIPPED_AT)),
        "rms_dbfs": float(_db_power(np.mean(np.square(mono, dtype=np.float64)))),
        "lufs": integrated_loudness(mono, rate),
        "noise_floor_dbfs": noise_floor,
        "snr_db": float(np.percentile(levels, 90)) - noise_floor,
        "silence_share": float(np.mean(levels < loud - SILENCE_BELOW_LOUD_DB)),
    }


def _db_power(power: float | np.ndarray) -> float | np.ndarray:
    """Mean square (1.0 = full scale) in dB, floored so silence stays a finite number."""
    with np.errstate(divide="ignore"):
        return np.maximum(DB_FLOOR, 10.0 * np.log10(power))


def _frames(mono: np.ndarray, rate: int) -> np.ndarray:
    """Whole 50 ms frames as rows, float64 (one row if the clip is shorter)."""
    size = max(1, round(FRAME_S * rate))
    samples = mono.astype(np.float64)
    whole = len(samples) // size * size
    return samples[:whole].reshape(-1, size) if whole else samples.reshape(1, -1)


def _noise_power(frames: np.ndarray) -> float:
    """Mean square of the steady background, by minimum statistics.

    Speech moves through the frequency bands and leaves them; hiss, hum or a fan stays. So in
    each band take a quiet moment (the 10th percentile over time), correct it for how noise
    power scatters around its mean (exponentially: the 10th percentile is 0.105 x the mean),
    and average over the bands, leaving out DC (an offset is not noise). A steady tone counts as
    noise too: it is indistinguishable from hum.
    """
    window = np.hanning(frames.shape[1])
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 / np.sum(window**2)
    quiet = np.percentile(power[:, 1:], NOISE_PERCENTILE, axis=0)
    return float(np.mean(quiet) / -math.log(1.0 - NOISE_PERCENTILE / 100.0))


def integrated_loudness(mono: np.ndarray, rate: int) -> float:
    """ITU-R BS.1770-4 integrated loudness of one channel, in LUFS (floored at DB_FLOOR).

    K-weighting, 400 ms blocks with 75 % overlap, -70 LUFS absolute and -10 LU relative gates.
    """
    weighted = mono.astype(np.float64)
    for b, a in _k_weighting(rate):
        weighted = signal.lfilter(b, a, weighted)
    block, hop = round(0.4 * rate), round(0.1 * rate)
    if len(weighted) < block:
        return DB_FLOOR
    starts = np.arange(0, len(weighted) - block + 1, hop)
    energy = np.cumsum(np.concatenate(([0.0], np.square(weighted))))
    power = (energy[starts + block] - energy[starts]) / block
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10.0 * np.log10(power)
    gated = power[loudness > -70.0]
    if not gated.size:
        return DB_FLOOR
    relative_gate = -0.691 + 10.0 * np.log10(gated.mean()) - 10.0
    gated = power[(loudness > -70.0) & (loudness > relative_gate)]
    return max(DB_FLOOR, float(-0.691 + 10.0 * np.log10(gated.mean())))


def _k_weighting(rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770's two K-weighting biquads at any rate (the standard tabulates only 48 kHz).

    The analogue prototypes behind the 48 kHz table (as derived for libebur128) are mapped with
    the bilinear transform; at 48 kHz this reproduces the standard's coefficients.
    """
    k = math.tan(math.pi * 1681.974450955533 / rate)
    q = 0.7071752369554196
    vh = 10.0 ** (3.999843853973347 / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = (
        np.array([vh + vb * k / q + k * k, 2.0 * (k * k - vh), vh - vb * k / q + k * k]) / a0,
        np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]),
    )
    k = math.tan(math.pi * 38.13547087602444 / rate)
    q = 0.5003270373238773
    a0 = 1.0 + k / q + k * k
    high_pass = (
        np.array([1.0, -2.0, 1.0]),
        np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]),
    )
    return [shelf, high_pass]
