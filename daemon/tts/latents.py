"""Conditioning latents per voice, cached under voices/<voice>/latents/<key>.pth.

The key covers the models that compute them, every clip of the voice (but those held back as
another speaker) and the method (with its seed), so a new or kept clip, a new (fine-tuned)
model or another tts.latents means new latents, and the second render of a voice reuses them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import soundfile as sf
from loguru import logger

from daemon.core.paths import VoicePaths
from daemon.quality.held import held_clips

LATENT_MODELS = ("autoregressive.pth", "diffusion_decoder.pth")


class NoClips(Exception):
    """A voice needs clips before it can speak."""


def clip_set_hash(voice: VoicePaths) -> str:
    from daemon.core.files import cached_sha256

    digest = hashlib.sha256()
    for clip in voice_clips(voice):
        digest.update(f"{clip.name}\0{cached_sha256(clip)}\n".encode())
    return digest.hexdigest()


def voice_clips(voice: VoicePaths) -> list[Path]:
    """The clips the voice speaks from: all of clips/ but those the import held back as
    another speaker (daemon.quality.held) until the user keeps them."""
    if not voice.clips.is_dir():
        return []
    held = held_clips(voice)
    return sorted(clip for clip in voice.clips.glob("*.wav") if clip.name not in held)


def latents_key(
    model_hashes: dict[str, str], clips_hash: str, method: str = "voicedrop", seed: int = 0
) -> str:
    """Only the tortoise method draws random crops, so only its key holds the seed."""
    relevant = {name: model_hashes[name] for name in LATENT_MODELS if name in model_hashes}
    recipe = {"method": method, "seed": seed} if method == "tortoise" else {"method": method}
    payload = json.dumps({"models": relevant, "clips": clips_hash, **recipe}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cached_latents(
    engine,
    voice: VoicePaths,
    model_hashes: dict[str, str],
    autoregressive,
    method: str = "voicedrop",
    seed: int = 0,
):
    """Return (latents, key, seconds spent computing: 0 when they came from the cache).
    The diffusion latent is computed when the diffusion model is among `model_hashes`."""
    from daemon.tts.engine import Latents

    clips = voice_clips(voice)
    if not clips:
        raise NoClips(
            f"voice {voice.name} has no clips yet: drop a few clips of the voice into "
            f"inbox/{voice.name}/ and this text renders once they are imported"
        )
    key = latents_key(model_hashes, clip_set_hash(voice), method, seed)
    path = voice.latents / f"{key}.pth"
    if path.exists():
        return Latents.load(path), key, 0.0
    started = time.monotonic()
    audio = [sf.read(clip, dtype="float32")[0] for clip in clips]
    latents = engine.conditioning_latents(
        audio,
        autoregressive=autoregressive,
        diffusion=LATENT_MODELS[1] in model_hashes,
        method=method,
        seed=seed,
    )
    latents.save(path)
    for stale in voice.latents.glob("*.pth"):
        if stale != path:
            stale.unlink()
    seconds = time.monotonic() - started
    logger.info(
        "voice {}: latents from {} clips computed in {:.1f} s", voice.name, len(clips), seconds
    )
    return latents, key, seconds
