"""TorToiSe's model files and their dimensions: the released set and the tiny set the tests
run on. A folder of weights carries spec.json when its dimensions are not the released ones.
No torch here: the daemon, `status` and `doctor` read it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.core.atomic import write_text

AUTOREGRESSIVE_FILE = "autoregressive.pth"
DIFFUSION_FILE = "diffusion_decoder.pth"
VOCODER_FILE = "vocoder.pth"
CLVP_FILE = "clvp2.pth"
HIFIGAN_FILE = "hifidecoder.pth"
DVAE_FILE = "dvae.pth"  # turns mels into the AR's codes; only fine-tuning needs it
REQUIRED_FILES = (AUTOREGRESSIVE_FILE, DIFFUSION_FILE, VOCODER_FILE, CLVP_FILE)
SPEC_FILE = "spec.json"

OPTIONAL_SECTIONS = {"dvae"}  # spec.json files written before fine-tuning lack them


class BadCheckpoint(Exception):
    """A checkpoint file that does not fit the model it is meant for."""


class WeightsMissing(Exception):
    """Model files a render needs are not installed."""

    def __init__(self, directory: Path, missing: list[str]) -> None:
        self.directory = Path(directory)
        self.missing = list(missing)
        super().__init__(
            f"missing {', '.join(self.missing)} in {self.directory}: run `voicedrop models "
            "fetch`, or put TorToiSe's released checkpoints there"
        )


@dataclass(frozen=True)
class ModelSpec:
    """Constructor keyword arguments of every TorToiSe model class, as stored in spec.json."""

    autoregressive: dict[str, Any]
    diffusion: dict[str, Any]
    clvp: dict[str, Any]
    vocoder: dict[str, Any]
    hifigan: dict[str, Any]
    dvae: dict[str, Any] = dataclasses.field(default_factory=lambda: ModelSpec.released().dvae)

    @classmethod
    def released(cls) -> ModelSpec:
        """The dimensions of TorToiSe's released checkpoints (tortoise api.py / api_fast.py)."""
        return cls(
            autoregressive=_autoregressive(
                layers=30, model_dim=1024, heads=16, max_text_tokens=402, max_mel_tokens=604
            ),
            diffusion=_diffusion(model_channels=1024, num_layers=10, latent=1024, heads=16),
            clvp=_clvp(dim=768, depth=20, heads=12),
            vocoder=_vocoder(channel_size=32),
            hifigan=_hifigan(latent=1024, initial_channel=512),
            dvae=_dvae(codebook_dim=512, hidden_dim=512, resnet_blocks=3, tokens=8192),
        )

    @classmethod
    def tiny(cls) -> ModelSpec:
        """The same classes small enough to render a sentence on a CPU in about a second.

        The token limits are the released ones, so real dataset lines fit; random weights
        almost never emit the stop token, so a render's length comes from tts.max_mel_tokens."""
        return cls(
            autoregressive=_autoregressive(
                layers=1, model_dim=64, heads=2, max_text_tokens=402, max_mel_tokens=604
            ),
            diffusion=_diffusion(model_channels=64, num_layers=1, latent=64, heads=2),
            clvp=_clvp(dim=32, depth=1, heads=2),
            vocoder=_vocoder(channel_size=8),
            hifigan=_hifigan(latent=64, initial_channel=32),
            dvae=_dvae(codebook_dim=32, hidden_dim=16, resnet_blocks=1, tokens=256),
        )

    @classmethod
    def read(cls, models_dir: Path) -> ModelSpec:
        """The spec.json in `models_dir`, or the released dimensions when there is none."""
        path = Path(models_dir) / SPEC_FILE
        if not path.exists():
            return cls.released()
        names = sorted(f.name for f in dataclasses.fields(cls))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise BadCheckpoint(f"{path} is not valid JSON: {error}") from error
        if not isinstance(data, dict) or sorted(set(data) | OPTIONAL_SECTIONS) != names:
            raise BadCheckpoint(f"{path} must be an object with exactly the sections {names}")
        return cls(**data)

    def write(self, models_dir: Path) -> Path:
        path = Path(models_dir) / SPEC_FILE
        write_text(path, json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path


def _autoregressive(
    layers: int, model_dim: int, heads: int, max_text_tokens: int, max_mel_tokens: int
) -> dict[str, Any]:
    return {
        "layers": layers,
        "model_dim": model_dim,
        "heads": heads,
        "max_text_tokens": max_text_tokens,
        "max_mel_tokens": max_mel_tokens,
        "max_conditioning_inputs": 2,
        "number_text_tokens": 255,
        "start_text_token": 255,
        "checkpointing": False,
        "train_solo_embeddings": False,
    }


def _diffusion(model_channels: int, num_layers: int, latent: int, heads: int) -> dict[str, Any]:
    return {
        "model_channels": model_channels,
        "num_layers": num_layers,
        "in_channels": 100,
        "out_channels": 200,
        "in_latent_channels": latent,
        "in_tokens": 8193,
        "dropout": 0,
        "use_fp16": False,
        "num_heads": heads,
        "layer_drop": 0,
        "unconditioned_percentage": 0,
    }


def _clvp(dim: int, depth: int, heads: int) -> dict[str, Any]:
    return {
        "dim_text": dim,
        "dim_speech": dim,
        "dim_latent": dim,
        "num_text_tokens": 256,
        "text_enc_depth": depth,
        "text_seq_len": 350,
        "text_heads": heads,
        "num_speech_tokens": 8192,
        "speech_enc_depth": depth,
        "speech_heads": heads,
        "speech_seq_len": 430,
        "use_xformers": True,
    }


def _vocoder(channel_size: int) -> dict[str, Any]:
    return {
        "noise_dim": 64,
        "channel_size": channel_size,
        "dilations": [1, 3, 9, 27],
        "strides": [8, 8, 4],
        "lReLU_slope": 0.2,
        "kpnet_conv_size": 3,
        "hop_length": 256,
        "n_mel_channels": 100,
    }


def _hifigan(latent: int, initial_channel: int) -> dict[str, Any]:
    return {
        "in_channels": latent,
        "out_channels": 1,
        "resblock_type": "1",
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_kernel_sizes": [16, 16, 4, 4],
        "upsample_initial_channel": initial_channel,
        "upsample_factors": [8, 8, 2, 2],
        "cond_channels": latent,
    }


def _dvae(codebook_dim: int, hidden_dim: int, resnet_blocks: int, tokens: int) -> dict[str, Any]:
    """DL-Art-School's lucidrains_dvae settings for TorToiSe (see daemon.training.dvae)."""
    return {
        "channels": 80,
        "codebook_dim": codebook_dim,
        "hidden_dim": hidden_dim,
        "kernel_size": 3,
        "num_layers": 2,
        "num_resnet_blocks": resnet_blocks,
        "num_tokens": tokens,
        "stride": 2,
    }


def missing_weights(models_dir: Path, decoder: str) -> list[str]:
    """The files rendering with `decoder` needs that are not in `models_dir`."""
    return [name for name in needed_files(decoder) if not (Path(models_dir) / name).is_file()]


def needed_files(decoder: str) -> tuple[str, ...]:
    """diffusion: tortoise api.py (CLVP ranks the candidates); hifigan: api_fast.py, which
    samples one candidate, ranks nothing and computes no diffusion latents."""
    if decoder == "diffusion":
        return (AUTOREGRESSIVE_FILE, CLVP_FILE, DIFFUSION_FILE, VOCODER_FILE)
    if decoder == "hifigan":
        return (AUTOREGRESSIVE_FILE, HIFIGAN_FILE)
    raise ValueError(f"unknown decoder {decoder!r}: use 'diffusion' or 'hifigan'")
