"""daemon.audio.clips on real files: made with numpy + soundfile, or encoded by the ffmpeg CLI."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import av.logging
import numpy as np
import pytest
import soundfile as sf

from daemon.audio.clips import (
    MP4_FAMILY,
    BadAudio,
    Decoded,
    _k_weighting,
    analyse,
    check_usable,
    decode,
    integrated_loudness,
    to_mono,
    write_clip,
)
from daemon.core.jobs import ClipAnalysis, ImportData

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")


# --- fixture helpers ------------------------------------------------------------------------


def tone(seconds: float, rate: int, *, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def bursts(seconds: float, rate: int, *, amp: float = 0.3) -> np.ndarray:
    """A 220 Hz tone, 1 s on and 0.5 s off: like speech, it leaves pauses between sounds."""
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * 220 * t) * ((t % 1.5) < 1.0)).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, data, rate, subtype=subtype)
    return path


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


def stereo_source(directory: Path, seconds: float = 3.0) -> Path:
    """Left: 440 Hz at -6 dBFS; right: the same at half the level."""
    left = tone(seconds, 44100)
    return write(directory / "source.wav", np.stack([left, left * 0.5], axis=1), 44100)


def encode(directory: Path, ext: str, codec: str, *extra: str) -> Path:
    target = directory / f"clip.{ext}"
    ffmpeg("-i", stereo_source(directory), "-c:a", codec, *extra, target)
    return target


def cut(path: Path, keep: float) -> Path:
    """Keep the first `keep` share of the file, as an interrupted copy would."""
    data = path.read_bytes()
    target = path.with_name(f"cut-{path.name}")
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def damage(path: Path, size: int = 2000) -> Path:
    """Overwrite `size` bytes in the middle of the file with random bytes."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + size] = np.random.default_rng(1).bytes(size)
    target = path.with_name(f"damaged-{path.name}")
    target.write_bytes(bytes(data))
    return target


def decoded_from(samples: np.ndarray, rate: int = 22050) -> Decoded:
    """A Decoded as decode() returns it, for checks that need no file."""
    samples = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    return Decoded(samples, rate, samples.shape[0], "pcm_f32le", "wav", 32)


def peak_hz(mono: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / rate)[np.argmax(spectrum)])


def rejected(path: Path) -> BadAudio:
    with pytest.raises(BadAudio) as caught:
        decoded = decode(path)
        check_usable(decoded)
    return caught.value


# --- formats --------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize(
    ("subtype", "codec", "bits", "step"),
    [
        ("PCM_16", "pcm_s16le", 16, 2**-15),
        ("PCM_24", "pcm_s24le", 24, 2**-23),
        ("PCM_32", "pcm_s32le", 32, 2**-24),
        ("FLOAT", "pcm_f32le", 32, 0.0),
    ],
)
def test_wav_any_depth_and_rate(
    tmp_path: Path, rate: int, subtype: str, codec: str, bits: int, step: float
) -> None:
    source = tone(1.0, rate)
    decoded = decode(write(tmp_path / "clip.wav", source, rate, subtype))

    assert (decoded.sample_rate, decoded.channels, decoded.bits) == (rate, 1, bits)
    assert (decoded.codec, decoded.container) == (codec, "wav")
    assert decoded.samples.dtype == np.float32 and decoded.samples.shape == (1, rate)
    assert decoded.duration == pytest.approx(1.0)
    np.testing.assert_allclose(decoded.samples[0], source, atol=step)

    mono = to_mono(decoded)
    assert mono.dtype == np.float32 and mono.ndim == 1
    assert abs(len(mono) - 22050) <= 1
    assert peak_hz(mono, 22050) == pytest.approx(440, abs=1)


def test_stereo_is_decoded_without_downmix(tmp_path: Path) -> None:
    decoded = decode(stereo_source(tmp_path))

    assert decoded.channels == 2 and decoded.samples.shape == (2, 3 * 44100)
    np.testing.assert_allclose(decoded.samples[1], decoded.samples[0] * 0.5, atol=2**-15)
    mono = to_mono(decoded)
    assert len(mono) == 3 * 22050
    # The mean of both channels: 0.75 of the left one's 0.5 amplitude.
    assert np.abs(mono).max() == pytest.approx(0.375, abs=0.01)


def test_six_channels(tmp_path: Path) -> None:
    channels = np.stack([tone(2.0, 48000, amp=0.1 * (i + 1)) for i in range(6)], axis=1)
    decoded = decode(write(tmp_path / "surround.wav", channels, 48000, "PCM_24"))

    assert (decoded.channels, decoded.sample_rate, decoded.bits) == (6, 48000, 24)
    assert decoded.samples.shape == (6, 96000)
    mono = to_mono(decoded)
    assert len(mono) == 2 * 22050
    assert np.abs(mono).max() == pytest.approx(0.35, abs=0.01)
    assert peak_hz(mono, 22050) == pytest.approx(440, abs=1)


@pytest.mark.parametrize(("subtype", "bits"), [("PCM_16", 16), ("PCM_24", 24)])
def test_flac(tmp_path: Path, subtype: str, bits: int) -> None:
    source = np.stack([tone(2.0, 44100), tone(2.0, 44100, amp=0.2)], axis=1)
    decoded = decode(write(tmp_path / "clip.flac", source, 44100, subtype))

    assert (decoded.codec, decoded.container, decoded.bits) == ("flac", "flac", bits)
    assert (decoded.channels, decoded.sample_rate) == (2, 44100)
    np.testing.assert_allclose(decoded.samples, source.T, atol=2**-15)


@needs_ffmpeg
@pytest.mark.parametrize(
    ("ext", "encoder", "codec", "container", "rate"),
    [
        ("mp3", "libmp3lame", "mp3", "mp3", 44100),
        ("ogg", "libvorbis", "vorbis", "ogg", 44100),
        ("opus", "libopus", "opus", "ogg", 48000),
        ("m4a", "aac", "aac", MP4_FAMILY, 44100),
        ("webm", "libopus", "opus", "matroska,webm", 48000),
    ],
)
def test_compressed_formats(
    tmp_path: Path, ext: str, encoder: str, codec: str, container: str, rate: int
) -> None:
    decoded = decode(encode(tmp_path, ext, encoder))

    assert (decoded.codec, decoded.container, decoded.bits) == (codec, container, None)
    assert (decoded.channels, decoded.sample_rate) == (2, rate)
    assert decoded.duration == pytest.approx(3.0, abs=0.06)  # encoder priming and padding
    mono = to_mono(decoded)
    assert mono.dtype == np.float32 and abs(len(mono) - decoded.duration * 22050) <= 1
    assert peak_hz(mono, 22050) == pytest.approx(440, abs=1)
    check_usable(decoded)


@needs_ffmpeg
@pytest.mark.parametrize(("ext", "encoder"), [("opus", "libopus"), ("webm", "libopus")])
def test_clip_cut_from_a_longer_recording_is_not_truncated(
    tmp_path: Path, ext: str, encoder: str
) -> None:
    """Ogg and Matroska announce where the audio ends; a clip kept its original timestamps."""
    late = tmp_path / f"late.{ext}"
    ffmpeg("-ss", "1", "-i", encode(tmp_path, ext, encoder), "-c", "copy", "-copyts", late)
    assert decode(late).duration == pytest.approx(2.0, abs=0.05)


@needs_ffmpeg
def test_mp3_with_a_damaged_tag_still_imports(tmp_path: Path) -> None:
    """ffmpeg logs an error for the tag while opening; the audio itself is fine."""
    path = encode(tmp_path, "mp3", "libmp3lame", "-metadata", "comment=recorded at home")
    data = bytearray(path.read_bytes())
    data[data.index(b"TXXX") + 10] = 1  # UTF-16 text without its byte-order mark
    path.write_bytes(bytes(data))
    decoded = decode(path)
    assert decoded.duration == pytest.approx(3.0, abs=0.06)
    check_usable(decoded)


# --- files that can never be imported -------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "clip.wav").touch()
    error = rejected(tmp_path / "clip.wav")
    assert error.code == "empty" and "0 bytes" in str(error)


def test_text_file_named_wav(tmp_path: Path) -> None:
    (tmp_path / "clip.wav").write_text("these are my notes, not a recording\n" * 20)
    error = rejected(tmp_path / "clip.wav")
    assert error.code == "not_audio" and "Invalid data" in str(error)


@pytest.mark.parametrize("size", [100, 300_000])
def test_random_bytes_named_mp3(tmp_path: Path, size: int) -> None:
    path = tmp_path / "clip.mp3"
    path.write_bytes(np.random.default_rng(size).bytes(size))
    error = rejected(path)
    assert error.code == "not_audio"
    assert "mp3" in str(error)  # what ffmpeg said: no MPEG frames or no header


def test_zip_named_mp3(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "clip.mp3", "w") as archive:
        archive.writestr("notes.txt", "hello " * 10_000)
        archive.writestr("noise.bin", np.random.default_rng(0).bytes(50_000))
    assert rejected(tmp_path / "clip.mp3").code == "not_audio"


@needs_ffmpeg
def test_png_named_wav(tmp_path: Path) -> None:
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32", "-frames:v", "1", tmp_path / "x.png")
    (tmp_path / "x.png").rename(tmp_path / "clip.wav")
    error = rejected(tmp_path / "clip.wav")
    assert error.code == "no_audio_stream" and "video (png)" in str(error)


@needs_ffmpeg
def test_video_without_sound(tmp_path: Path) -> None:
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=64x64:d=1", "-c:v", "mpeg4", tmp_path / "v.mp4")
    error = rejected(tmp_path / "v.mp4")
    assert error.code == "no_audio_stream" and "video" in str(error)


def test_header_without_samples(tmp_path: Path) -> None:
    path = write(tmp_path / "clip.wav", np.zeros(0, np.float32), 22050)
    error = rejected(path)
    assert error.code == "no_samples"


def test_header_cut_off_before_the_samples(tmp_path: Path) -> None:
    full = write(tmp_path / "clip.wav", tone(1.0, 22050), 22050)
    assert rejected(cut(full, 44 / full.stat().st_size)).code == "no_samples"


def test_truncated_wav(tmp_path: Path) -> None:
    full = write(tmp_path / "clip.wav", tone(2.0, 44100), 44100)
    error = rejected(cut(full, 0.5))
    assert error.code == "truncated"
    assert "header announces 2.00 s but only 1.00 s could be decoded" in str(error)


def test_truncated_flac(tmp_path: Path) -> None:
    full = write(tmp_path / "clip.flac", tone(4.0, 44100), 44100, "PCM_24")
    error = rejected(cut(full, 0.5))
    assert error.code == "truncated"
    assert "header announces 4.00 s but only" in str(error)


@needs_ffmpeg
@pytest.mark.parametrize(
    ("ext", "encoder", "extra"),
    [
        ("mp3", "libmp3lame", ()),  # LAME's Info header counts the frames
        ("m4a", "aac", ("-movflags", "+faststart")),  # index first, as phones write it
        ("webm", "libopus", ()),
    ],
)
def test_truncated_compressed(tmp_path: Path, ext: str, encoder: str, extra: tuple) -> None:
    error = rejected(cut(encode(tmp_path, ext, encoder, *extra), 0.5))
    assert error.code == "truncated"
    found = re.search(
        r"header announces ([\d.]+) s but only ([\d.]+) s could be decoded", str(error)
    )
    assert found, str(error)
    assert float(found[1]) == pytest.approx(3.0, abs=0.05)  # less an mp3's encoder delay
    assert float(found[2]) == pytest.approx(1.5, abs=0.2)


@needs_ffmpeg
def test_m4a_cut_before_its_index(tmp_path: Path) -> None:
    """ffmpeg writes the index (moov) last; without it nothing can be found, so not_audio."""
    error = rejected(cut(encode(tmp_path, "m4a", "aac"), 0.5))
    assert error.code == "not_audio" and "moov atom not found" in str(error)


def assert_fails_midway(error: BadAudio) -> None:
    found = re.search(r"decoding failed at ([\d.]+) s of ([\d.]+) s \(ffmpeg: .+\)", str(error))
    assert found, str(error)
    assert 0.3 < float(found[1]) / float(found[2]) < 0.7


# Damage in the middle of a wav is undetectable: PCM has no structure, garbage decodes as loud
# noise. Formats with frame headers and checksums do notice, and ffmpeg keeps decoding after
# the damaged frames: that is "corrupt" (errors with good audio after them), not "truncated".
def test_damaged_flac(tmp_path: Path) -> None:
    full = write(tmp_path / "clip.flac", tone(4.0, 44100), 44100, "PCM_24")
    error = rejected(damage(full))
    assert error.code == "corrupt" and "flac" in str(error)
    assert_fails_midway(error)


@needs_ffmpeg
@pytest.mark.parametrize(("ext", "encoder"), [("mp3", "libmp3lame"), ("m4a", "aac")])
def test_damaged_compressed(tmp_path: Path, ext: str, encoder: str) -> None:
    error = rejected(damage(encode(tmp_path, ext, encoder)))
    assert error.code == "corrupt"
    assert_fails_midway(error)


@needs_ffmpeg
def test_damaged_ogg_is_caught_by_its_length(tmp_path: Path) -> None:
    """Ogg drops pages that fail their checksum; the last page's position shows the loss."""
    error = rejected(damage(encode(tmp_path, "ogg", "libvorbis")))
    assert error.code == "truncated" and "CRC mismatch" in str(error)


def test_damage_leaves_stderr_quiet_and_logging_as_it_was(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    before = (av.logging.get_level(), av.logging.get_skip_repeated())
    full = write(tmp_path / "clip.flac", tone(4.0, 44100), 44100, "PCM_24")
    for path in (damage(full), cut(full, 0.5)):
        rejected(path)
    assert capfd.readouterr().err == ""
    assert (av.logging.get_level(), av.logging.get_skip_repeated()) == before


@pytest.mark.parametrize(("value", "code"), [(np.nan, "nan"), (np.inf, "infinite")])
def test_non_finite_samples(tmp_path: Path, value: float, code: str) -> None:
    samples = tone(1.0, 22050)
    samples[100:103] = value
    error = rejected(write(tmp_path / "clip.wav", samples, 22050, "FLOAT"))
    assert error.code == code and "contains 3 " in str(error)


def test_nan_is_reported_before_rate_and_length(tmp_path: Path) -> None:
    samples = tone(0.3, 4000)
    samples[5] = np.nan
    assert rejected(write(tmp_path / "clip.wav", samples, 4000, "FLOAT")).code == "nan"


def test_low_rate(tmp_path: Path) -> None:
    error = rejected(write(tmp_path / "clip.wav", tone(2.0, 4000, freq=300), 4000))
    assert error.code == "low_rate" and "4000 Hz" in str(error) and "8000 Hz" in str(error)


def test_too_short(tmp_path: Path) -> None:
    error = rejected(write(tmp_path / "clip.wav", tone(0.3, 22050), 22050))
    assert error.code == "too_short"
    assert str(error) == "too short: 0.30 s; a clip must be at least 0.6 s"


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(44100, np.float32),
        (10 ** (-80 / 20) * np.random.default_rng(0).uniform(-1, 1, 44100)).astype(np.float32),
        np.full(44100, 0.5, np.float32),
    ],
    ids=["zeros", "noise_at_-80dBFS", "dc_0.5"],
)
def test_silent(tmp_path: Path, samples: np.ndarray) -> None:
    error = rejected(write(tmp_path / "clip.wav", samples, 22050, "FLOAT"))
    assert error.code == "silent" and "-60 dBFS" in str(error)


def test_missing_file_is_not_bad_audio(tmp_path: Path) -> None:
    """It may be back in a moment (a rename in flight): that is no verdict on the content."""
    with pytest.raises(FileNotFoundError):
        decode(tmp_path / "gone.wav")


# --- analysis -------------------------------------------------------------------------------


def measure(samples: np.ndarray, rate: int = 22050) -> ClipAnalysis:
    decoded = decoded_from(samples, rate)
    check_usable(decoded)
    return analyse(decoded, to_mono(decoded))


def slugs(analysis: ClipAnalysis) -> set[str]:
    return {warning.split(":")[0] for warning in analysis.warnings}


def test_clean_clip_has_no_warnings() -> None:
    clean = bursts(9.0, 44100) + 1e-3 * np.random.default_rng(0).standard_normal(9 * 44100)
    analysis = measure(clean, 44100)

    assert analysis.warnings == ()
    assert (analysis.sample_rate, analysis.channels, analysis.codec) == (44100, 1, "pcm_f32le")
    assert analysis.duration == pytest.approx(9.0)


def test_clipped_sine() -> None:
    analysis = measure(np.clip(3 * tone(5.0, 22050), -1, 1))
    assert analysis.peak_dbfs == pytest.approx(0.0, abs=0.01)
    assert analysis.clipping_share > 0.5
    assert "clipping" in slugs(analysis)


def test_quiet_noise_gives_a_high_snr() -> None:
    noise = 10 ** (-60 / 20) * np.random.default_rng(0).standard_normal(6 * 22050)
    analysis = measure(bursts(6.0, 22050) + noise)
    assert analysis.noise_floor_dbfs == pytest.approx(-60, abs=2)
    assert analysis.snr_db > 40
    assert "noisy" not in slugs(analysis)


def test_loud_noise_is_noisy() -> None:
    noise = 0.05 * np.random.default_rng(0).standard_normal(6 * 22050)
    analysis = measure(bursts(6.0, 22050) + noise)
    assert analysis.snr_db < 20
    assert "noisy" in slugs(analysis)


def test_steady_hum_counts_as_noise_under_speech() -> None:
    hum = tone(6.0, 22050, freq=50, amp=0.05)
    assert "noisy" in slugs(measure(bursts(6.0, 22050) + hum))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_snr_of_real_speech(tmp_path: Path) -> None:
    """Continuous speech has few pauses; the estimate must still tell clean from noisy."""
    text = "Voice cloning works best with clean recordings of about ten seconds, spoken naturally."
    subprocess.run(["espeak-ng", "-w", tmp_path / "speech.wav", text], check=True)
    speech, rate = sf.read(tmp_path / "speech.wav", dtype="float32")
    level = 10 * np.log10(np.mean(np.square(speech)))
    noise = np.random.default_rng(0).standard_normal(len(speech)) * 10 ** ((level - 10) / 20)

    clean = measure(speech, rate)
    noisy = measure(speech + noise.astype(np.float32), rate)
    assert clean.snr_db > 30 and "noisy" not in slugs(clean)
    assert noisy.snr_db == pytest.approx(12, abs=4) and "noisy" in slugs(noisy)


@pytest.mark.parametrize(("seconds", "slug"), [(2.0, "short"), (20.0, "long")])
def test_length_warnings(seconds: float, slug: str) -> None:
    analysis = measure(bursts(seconds, 22050))
    assert slug in slugs(analysis)
    assert f"{slug}: {seconds:.1f} s; TorToiSe works best with clips of about 10 s" in " ".join(
        analysis.warnings
    )


@pytest.mark.parametrize("rate", [22050, 48000])
def test_lufs_of_a_1khz_sine(rate: int) -> None:
    """BS.1770 is calibrated so a 1 kHz sine on one channel reads its RMS level: -20 dBFS RMS
    (amplitude 0.1414) gives -20 LUFS (K-weighting adds ~+0.691 dB at 1 kHz, the -0.691 cancels).
    """
    amplitude = 10 ** (-20 / 20) * math.sqrt(2)
    sine = tone(5.0, rate, freq=1000, amp=amplitude)
    assert integrated_loudness(sine, rate) == pytest.approx(-20.0, abs=0.1)
    assert measure(sine, rate).rms_dbfs == pytest.approx(-20.0, abs=0.05)


def test_k_weighting_matches_the_standards_48khz_table() -> None:
    (shelf_b, shelf_a), (high_b, high_a) = _k_weighting(48000)
    np.testing.assert_allclose(shelf_b, [1.53512485958697, -2.69169618940638, 1.19839281085285])
    np.testing.assert_allclose(shelf_a, [1.0, -1.69065929318241, 0.73248077421585])
    np.testing.assert_allclose(high_b, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(high_a, [1.0, -1.99004745483398, 0.99007225036621])


def test_gating_ignores_silence() -> None:
    """The -70 LUFS absolute gate: pauses do not drag integrated loudness down."""
    sine = tone(4.0, 22050, freq=1000, amp=10 ** (-20 / 20) * math.sqrt(2))
    padded = np.concatenate([sine, np.zeros(4 * 22050, np.float32)])
    assert integrated_loudness(padded, 22050) == pytest.approx(-20.0, abs=0.2)


def test_half_silence() -> None:
    samples = np.concatenate([tone(4.0, 22050), np.zeros(4 * 22050, np.float32)])
    analysis = measure(samples)
    assert analysis.silence_share == pytest.approx(0.5, abs=0.02)
    assert analysis.noise_floor_dbfs == -120.0


def test_mostly_silence() -> None:
    samples = np.concatenate([tone(2.0, 22050), np.zeros(6 * 22050, np.float32)])
    assert "mostly_silence" in slugs(measure(samples))


def test_quiet() -> None:
    analysis = measure(bursts(6.0, 22050, amp=0.005))
    assert analysis.lufs < -35
    assert "quiet" in slugs(analysis)


def test_low_rate_warning() -> None:
    analysis = measure(bursts(6.0, 16000), 16000)
    assert "low_rate" in slugs(analysis) and "16000 Hz" in " ".join(analysis.warnings)
    assert "low_rate" not in slugs(measure(bursts(6.0, 22050)))


def test_every_warning_starts_with_a_slug() -> None:
    samples = np.clip(3 * np.concatenate([tone(0.5, 8000), np.zeros(1600, np.float32)]), -1, 1)
    analysis = measure(samples + 0.01, 8000)
    assert slugs(analysis) >= {"short", "clipping", "low_rate"}
    for warning in analysis.warnings:
        slug, _, sentence = warning.partition(": ")
        assert slug.replace("_", "").isalpha() and sentence


def test_the_analysis_is_kept_in_the_job_as_json_with_finite_numbers() -> None:
    samples = np.concatenate([tone(3.0, 22050), np.zeros(3 * 22050, np.float32)])
    analysis = measure(samples)
    record = ImportData(analysis=analysis).to_json()
    data = json.loads(record)["analysis"]

    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert isinstance(data["warnings"], list)
    assert data["noise_floor_dbfs"] == -120.0
    assert all(math.isfinite(v) for v in data.values() if isinstance(v, float))
    assert ImportData.from_json(record).analysis == analysis


# --- writing --------------------------------------------------------------------------------


def test_write_clip(tmp_path: Path) -> None:
    mono = to_mono(decoded_from(tone(1.5, 44100), 44100))
    target = tmp_path / "clips" / "voice.wav"
    write_clip(target, mono)

    info = sf.info(target)
    assert (info.samplerate, info.channels, info.subtype, info.format) == (22050, 1, "FLOAT", "WAV")
    written, rate = sf.read(target, dtype="float32")
    assert rate == 22050
    np.testing.assert_array_equal(written, mono)
    assert [p.name for p in target.parent.iterdir()] == ["voice.wav"]


def test_written_clip_decodes_to_the_same_samples(tmp_path: Path) -> None:
    mono = to_mono(decoded_from(bursts(3.0, 16000), 16000))
    write_clip(tmp_path / "clip.wav", mono)
    decoded = decode(tmp_path / "clip.wav")
    assert (decoded.codec, decoded.bits, decoded.sample_rate) == ("pcm_f32le", 32, 22050)
    np.testing.assert_array_equal(decoded.samples[0], mono)
