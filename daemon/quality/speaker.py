"""Who is speaking: Resemblyzer's speaker encoder (a d-vector of 256 values per clip), kept
loaded like Whisper, and a voice's reference embedding cached beside its latents.

A clip of one person scores a cosine similarity of 0.84-0.99 against the person's other clips,
another person mostly 0.4-0.8 (bench/speaker_bench.py, on TorToiSe's own voices): enough to
notice a clip of someone else, a tone or heavy noise dropped into a voice.
"""

from __future__ import annotations

import functools
import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from daemon.core import atomic
from daemon.core.device import resolve_device
from daemon.core.jobs import SpeakerCheck
from daemon.core.model_loads import LoadedModel, record_load
from daemon.core.paths import VoicePaths
from daemon.tts.latents import clip_set_hash, voice_clips

ENCODER_RATE = 16000  # Resemblyzer's sampling rate
# Less voiced audio than this (after Resemblyzer trims long silences) gives an embedding that
# says more about the room than the speaker: refused rather than padded into a guess.
MIN_SPEECH_SECONDS = 0.5
# Part of every cache key: another encoder or preprocessing makes new embeddings.
ENCODER_ID = "resemblyzer-0.1.4-pretrained"
EMBEDDING_PREFIX = "speaker-"
# A voice recorded in varied rooms scores lower among its own clips: a new clip is held only
# when it is also this far below the lowest of them (bench/RESULTS.md, "Speaker check").
SPREAD_MARGIN = 0.05


class NotEnoughSpeech(ValueError):
    """Audio with too little voiced sound to tell who speaks."""


class SpeakerEncoder:
    """Resemblyzer's VoiceEncoder, loaded on first use and kept until `release()`; a different
    device replaces it."""

    def __init__(self, device: str = "auto") -> None:
        self.device_setting = device
        self.model: Any = None
        self.loaded_device: str | None = None

    def load(self) -> Any:
        device = resolve_device(self.device_setting)
        if self.model is None or self.loaded_device != device:
            self.release()
            started = time.perf_counter()
            self.model = load_voice_encoder(device)
            record_load(LoadedModel.SPEAKER_ENCODER, started)
            self.loaded_device = device
        return self.model

    def release(self) -> None:
        self.model = None
        self.loaded_device = None

    def embed(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """A unit-norm float32 embedding of mono `audio`; raises NotEnoughSpeech when under
        MIN_SPEECH_SECONDS of it is voiced (shorter speech is padded by Resemblyzer itself)."""
        from resemblyzer import preprocess_wav

        mono = np.asarray(audio, dtype=np.float32)
        if rate != ENCODER_RATE:
            mono = soxr.resample(mono, rate, ENCODER_RATE, quality="HQ").astype(np.float32)
        speech = preprocess_wav(mono) if np.any(mono) else mono[:0]  # silence: no level
        if speech.size < MIN_SPEECH_SECONDS * ENCODER_RATE:
            raise NotEnoughSpeech(
                f"{speech.size / ENCODER_RATE:.2f} s of voiced audio, under the "
                f"{MIN_SPEECH_SECONDS:g} s needed to tell who speaks"
            )
        embedding = self.load().embed_utterance(speech.astype(np.float32))
        return unit(embedding)

    def embed_file(self, clip: Path) -> np.ndarray:
        audio, rate = sf.read(clip, dtype="float32", always_2d=True)
        return self.embed(audio.mean(axis=1), rate)


@functools.cache
def shared_encoder(device: str = "auto") -> SpeakerEncoder:
    """The process's one encoder per device setting: the import check and the render check
    share the loaded model."""
    return SpeakerEncoder(device)


def load_voice_encoder(device: str) -> Any:
    """Resemblyzer's network with the weights its wheel carries, read with weights_only=True
    and strictly: its own constructor unpickles the file as a whole and ignores missing keys."""
    import torch
    from resemblyzer import VoiceEncoder
    from resemblyzer.hparams import (
        mel_n_channels,
        model_embedding_size,
        model_hidden_size,
        model_num_layers,
    )

    class StrictVoiceEncoder(VoiceEncoder):
        def __init__(self) -> None:
            torch.nn.Module.__init__(self)
            self.lstm = torch.nn.LSTM(
                mel_n_channels, model_hidden_size, model_num_layers, batch_first=True
            )
            self.linear = torch.nn.Linear(model_hidden_size, model_embedding_size)
            self.relu = torch.nn.ReLU()
            self.device = torch.device(device)

    encoder = StrictVoiceEncoder()
    checkpoint = torch.load(pretrained_weights(), map_location="cpu", weights_only=True)
    wanted = encoder.state_dict().keys()
    # The checkpoint also holds the training loss's scale (similarity_weight/bias).
    encoder.load_state_dict({k: v for k, v in checkpoint["model_state"].items() if k in wanted})
    return encoder.to(device).eval()


def pretrained_weights() -> Any:
    """The weights inside the installed wheel (a Traversable, as torch.load takes it)."""
    from importlib import resources

    return resources.files("resemblyzer") / "pretrained.pt"


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity: 1 the same direction, 0 unrelated."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def clip_embedding(voice: VoicePaths, clip: Path, encoder: SpeakerEncoder) -> np.ndarray:
    """One clip's embedding, cached by its content: a voice's check at import compares the new
    clip with all the others, which must not cost their encoding each time."""
    from daemon.core.files import cached_sha256

    key = hashlib.sha256(f"{ENCODER_ID}\0{cached_sha256(clip)}".encode()).hexdigest()[:20]
    path = voice.latents / "speaker" / f"{key}.npy"
    return cached_array(path, lambda: encoder.embed_file(clip))


def voice_embedding(voice: VoicePaths, encoder: SpeakerEncoder) -> np.ndarray:
    """The voice's reference: the normalised mean of the embeddings of the clips its latents
    are made from, cached as voices/<voice>/latents/speaker-<key>.npy under the clip set's key."""
    clips = voice_clips(voice)
    if not clips:
        from daemon.tts.latents import NoClips

        raise NoClips(f"voice {voice.name} has no clips to take its speaker from")
    key = hashlib.sha256(f"{ENCODER_ID}\0{clip_set_hash(voice)}".encode()).hexdigest()[:20]
    path = voice.latents / f"{EMBEDDING_PREFIX}{key}.npy"
    reference = cached_array(
        path, lambda: unit(np.mean([clip_embedding(voice, c, encoder) for c in clips], axis=0))
    )
    for stale in voice.latents.glob(f"{EMBEDDING_PREFIX}*.npy"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return reference


def cached_array(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """An .npy read without pickles, else computed and written atomically; a damaged one is
    only a cache, computed again."""
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            path.unlink(missing_ok=True)
    array = compute()
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic.write_bytes(path, buffer.getvalue())
    return array


def check_clip(
    voice: VoicePaths,
    clip: Path,
    encoder: SpeakerEncoder,
    min_similarity: float,
    min_clips: int,
) -> SpeakerCheck | None:
    """`clip` against the voice's other clips (those its latents use). None when fewer than
    `min_clips` of them have speech to compare with: a voice's first clips set its speaker,
    whoever that is. The threshold is `min_similarity`, lowered to the voice's own spread (its
    clips each against the rest, less SPREAD_MARGIN) for a voice recorded unevenly. Raises
    NotEnoughSpeech when `clip` itself has too little."""
    others = []
    for other in voice_clips(voice):
        if other.name != clip.name:
            try:
                others.append(clip_embedding(voice, other, encoder))
            except NotEnoughSpeech:
                continue
    if len(others) < min_clips:
        return None
    return judge(clip_embedding(voice, clip, encoder), others, min_similarity)


def judge(embedding: np.ndarray, others: list[np.ndarray], min_similarity: float) -> SpeakerCheck:
    """The rule on embeddings alone (bench/speaker_bench.py runs it on TorToiSe's voices)."""
    typical = [
        similarity(one, np.mean(others[:i] + others[i + 1 :], axis=0))
        for i, one in enumerate(others)
    ]
    return SpeakerCheck(
        similarity=round(similarity(embedding, np.mean(others, axis=0)), 4),
        typical_low=round(min(typical), 4),
        typical_high=round(max(typical), 4),
        threshold=round(min(min_similarity, min(typical) - SPREAD_MARGIN), 4),
        compared_with=len(others),
    )
