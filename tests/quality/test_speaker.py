"""The speaker encoder on real speech of real people (the voices TorToiSe ships), and a voice's
reference embedding, cached beside its latents."""

from __future__ import annotations

import dataclasses
import json
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from daemon.core.jobs import ImportData, SpeakerCheck
from daemon.core.paths import Root, VoicePaths
from daemon.quality.held import SpeakerDecisions
from daemon.quality.speaker import (
    NotEnoughSpeech,
    SpeakerEncoder,
    check_clip,
    similarity,
    voice_embedding,
)
from tests.conftest import tortoise_clips


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder("cpu")


def voice_of(tmp_path: Path, clips: list[Path]) -> VoicePaths:
    voice = Root.at(tmp_path).voice("tom")
    voice.clips.mkdir(parents=True)
    for clip in clips:
        shutil.copyfile(clip, voice.clips / clip.name)
    return voice


def test_two_clips_of_one_person_are_closer_than_clips_of_two(encoder):
    tom = [encoder.embed_file(clip) for clip in tortoise_clips("tom")]
    grace = [encoder.embed_file(clip) for clip in tortoise_clips("train_grace")]
    for embedding in tom + grace:
        assert embedding.dtype == np.float32 and embedding.shape == (256,)
        assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-5
    same = min(similarity(a, b) for a, b in combinations(tom, 2))
    across = max(similarity(a, b) for a in tom for b in grace)
    assert same > 0.8 > across, (same, across)


def test_the_sample_rate_does_not_change_who_speaks(encoder):
    audio, rate = sf.read(tortoise_clips("tom")[0], dtype="float32")
    resampled = soxr.resample(audio, rate, 44100).astype(np.float32)
    assert similarity(encoder.embed(audio, rate), encoder.embed(resampled, 44100)) > 0.99


def test_too_little_speech_is_refused_not_guessed(encoder):
    audio, rate = sf.read(tortoise_clips("tom")[0], dtype="float32")
    with pytest.raises(NotEnoughSpeech, match=r"0\.5 s needed"):
        encoder.embed(audio[: int(0.3 * rate)], rate)
    with pytest.raises(NotEnoughSpeech):
        encoder.embed(np.zeros(2 * rate, np.float32), rate)


def test_the_voice_embedding_is_cached_per_clip_set_without_pickles(encoder, tmp_path):
    first, *rest = tortoise_clips("tom")
    voice = voice_of(tmp_path, rest)
    reference = voice_embedding(voice, encoder)
    (cached,) = voice.latents.glob("speaker-*.npy")
    assert np.array_equal(np.load(cached, allow_pickle=False), reference)
    assert similarity(reference, encoder.embed_file(first)) > 0.85
    written = cached.stat().st_mtime_ns
    assert np.array_equal(voice_embedding(voice, encoder), reference)
    assert cached.stat().st_mtime_ns == written, "the second call reads the cache"

    shutil.copyfile(first, voice.clips / first.name)
    voice_embedding(voice, encoder)
    (renewed,) = voice.latents.glob("speaker-*.npy")
    assert renewed != cached, "a new clip makes a new key; the old file goes"

    grace = tortoise_clips("train_grace")[0]
    shutil.copyfile(grace, voice.clips / "grace.wav")
    check = check_clip(voice, voice.clips / "grace.wav", encoder, 0.8, 3)
    assert check is not None and check.mismatch
    SpeakerDecisions(voice).settle("grace.wav", check)
    voice_embedding(voice, encoder)
    assert list(voice.latents.glob("speaker-*.npy")) == [renewed], "a held clip is left out"

    renewed.write_bytes(renewed.read_bytes()[:40])  # a damaged cache is computed again
    assert similarity(voice_embedding(voice, encoder), reference) > 0.95


def test_a_voice_with_too_few_clips_is_not_compared(encoder, tmp_path):
    tom = tortoise_clips("tom")
    voice = voice_of(tmp_path, tom[:3])
    shutil.copyfile(tortoise_clips("train_grace")[0], voice.clips / "grace.wav")
    assert check_clip(voice, voice.clips / "grace.wav", encoder, 0.8, 4) is None
    check = check_clip(voice, voice.clips / tom[0].name, encoder, 0.8, 3)
    assert isinstance(check, SpeakerCheck) and not check.mismatch
    assert check.compared_with == 3, "the clip itself and no other is left out"


def test_import_records_from_before_the_check_still_read():
    """A ledger written before the speaker check: its clips read as not compared."""
    analysis = {
        "duration": 8.0,
        "peak_dbfs": -1.0,
        "clipping_share": 0.0,
        "rms_dbfs": -20.0,
        "lufs": -19.0,
        "noise_floor_dbfs": -70.0,
        "snr_db": 45.0,
        "silence_share": 0.1,
        "sample_rate": 22050,
        "channels": 1,
        "codec": "pcm_s16le",
        "warnings": [],
    }
    old = ImportData.from_json(
        json.dumps({"version": 1, "outcome": "imported", "analysis": analysis})
    )
    assert old.analysis is not None and old.analysis.duration == 8.0
    assert old.analysis.speaker is None
    check = SpeakerCheck(0.5, 0.85, 0.95, 0.8, 4)
    checked = dataclasses.replace(old, analysis=dataclasses.replace(old.analysis, speaker=check))
    again = ImportData.from_json(checked.to_json())
    assert again.analysis.speaker == check and again.analysis.speaker.mismatch
