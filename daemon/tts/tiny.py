"""The tiny model set: TorToiSe's real classes at small sizes with random weights, written in
the released files' formats. Tests, benches and demos (`voicedrop models tiny`) run the whole
pipeline on it where the released weights cannot be had."""

from __future__ import annotations

from pathlib import Path

from daemon.training.dvae import build_dvae
from daemon.tts.checkpoints import (
    VOCODER_KEY,
    build_autoregressive,
    build_clvp,
    build_diffusion,
    build_hifigan,
    build_vocoder,
    save_checkpoint,
)
from daemon.tts.spec import (
    AUTOREGRESSIVE_FILE,
    CLVP_FILE,
    DIFFUSION_FILE,
    DVAE_FILE,
    HIFIGAN_FILE,
    VOCODER_FILE,
    ModelSpec,
)


def write_tiny_models(directory: Path, seed: int = 0) -> list[Path]:
    """Write a randomly initialised tiny model set in the released files' formats."""
    import torch

    directory = Path(directory)
    spec = ModelSpec.tiny()
    torch.manual_seed(seed)
    files = {
        AUTOREGRESSIVE_FILE: build_autoregressive(spec).state_dict(),
        DIFFUSION_FILE: build_diffusion(spec).state_dict(),
        VOCODER_FILE: {VOCODER_KEY: build_vocoder(spec).state_dict()},
        CLVP_FILE: build_clvp(spec).state_dict(),
        HIFIGAN_FILE: build_hifigan(spec).state_dict(),
        DVAE_FILE: build_dvae(spec).state_dict(),
    }
    written = [save_checkpoint(data, directory / name) for name, data in files.items()]
    return [*written, spec.write(directory)]
