"""TorToiSe's generation knobs, declared once and free of torch.

config.yaml's tts section, voice.yaml and a text's front matter set these fields (through
daemon.core.config, which stays light enough for `voicedrop status`); the engine renders with
the same class, every knob left None filled in from the preset.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

Preset = Literal["ultra_fast", "fast", "standard", "high_quality"]
Decoder = Literal["diffusion", "hifigan"]
DiffusionSampler = Literal["p", "ddim", "dpm++2m"]  # daemon/tts/diffusion.py
TRAINED_DIFFUSION_STEPS = 4000  # tortoise's diffusion decoder schedule (api.py)
DEFAULT_MEL_TOKENS = 500  # tortoise api.py tts(max_mel_tokens=500): codes generated per chunk

# tortoise api.py: tts()'s defaults, then tts_with_preset's table on top
TORTOISE_DEFAULTS: dict[str, Any] = {
    "temperature": 0.8,
    "top_p": 0.8,
    "length_penalty": 1.0,
    "repetition_penalty": 2.0,
    "cond_free": True,
    "cond_free_k": 2.0,
    "diffusion_temperature": 1.0,
}
PRESETS: dict[str, dict[str, Any]] = {
    "ultra_fast": {**TORTOISE_DEFAULTS, "candidates": 16, "cond_free": False},
    "fast": {**TORTOISE_DEFAULTS, "candidates": 96},
    "standard": {**TORTOISE_DEFAULTS, "candidates": 256},
    "high_quality": {**TORTOISE_DEFAULTS, "candidates": 256},
}
# Diffusion steps by preset and sampler: p is tortoise's table; the deterministic solvers
# follow tortoise-tts-fast's presets (bench/RESULTS.md, "Diffusion samplers and half
# precision").
DIFFUSION_STEPS: dict[str, dict[str, int]] = {
    "ultra_fast": {"p": 30, "ddim": 15, "dpm++2m": 10},
    "fast": {"p": 80, "ddim": 30, "dpm++2m": 20},
    "standard": {"p": 200, "ddim": 60, "dpm++2m": 30},
    "high_quality": {"p": 400, "ddim": 100, "dpm++2m": 50},
}
# What a network client asks for by name (OpenAI's models, Wyoming's serve.wyoming_model):
# the preset, and the decoder when the name fixes one (None: the voice's tts.decoder).
SPEECH_MODELS: dict[str, tuple[str, Decoder | None]] = {
    "tts-1": ("ultra_fast", "hifigan"),
    "tts-1-hd": ("standard", None),
    **{preset: (preset, None) for preset in PRESETS},
}


@dataclass(frozen=True)
class GenerationKnobs:
    """What a render samples with, as settings declare it: a knob left None takes the
    preset's value, so changing only the preset changes every knob nobody set."""

    preset: Preset = "fast"
    decoder: Decoder = "diffusion"
    diffusion_sampler: DiffusionSampler = "p"  # p: tortoise's own, the same audio as before
    max_mel_tokens: int = DEFAULT_MEL_TOKENS  # capped by the model's own limit
    seed: int = 0
    candidates: int | None = None  # num_autoregressive_samples
    temperature: float | None = None
    top_p: float | None = None
    length_penalty: float | None = None
    repetition_penalty: float | None = None
    diffusion_iterations: int | None = None  # None: DIFFUSION_STEPS[preset][sampler]
    cond_free: bool | None = None
    cond_free_k: float | None = None
    diffusion_temperature: float | None = None


@dataclass(frozen=True)
class GenerationSettings(GenerationKnobs):
    """The knobs one render uses: the same fields, every None replaced by the preset's value
    when built, so the engine never sees an unset knob."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}: use one of {', '.join(PRESETS)}")
        steps = DIFFUSION_STEPS[self.preset].get(self.diffusion_sampler)
        if steps is None:
            raise ValueError(
                f"unknown diffusion sampler {self.diffusion_sampler!r}: use one of "
                f"{', '.join(typing.get_args(DiffusionSampler))}"
            )
        for name, value in {**PRESETS[self.preset], "diffusion_iterations": steps}.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # frozen: only while being built

    @classmethod
    def from_knobs(cls, knobs: GenerationKnobs) -> GenerationSettings:
        """The knobs of `knobs` (a text's TtsSettings, say) resolved against its preset."""
        return cls(**{f.name: getattr(knobs, f.name) for f in dataclasses.fields(GenerationKnobs)})
