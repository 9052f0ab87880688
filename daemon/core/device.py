"""Which device a model runs on: one answer for TorToiSe, training and Whisper alike."""

from __future__ import annotations

import functools


def resolve_device(device: str) -> str:
    """`auto` is CUDA when torch can use it, else the CPU; anything else is taken as given
    (`cpu`, `cuda`, `cuda:1`)."""
    if device != "auto":
        return device
    return "cuda" if cuda_usable() else "cpu"


@functools.cache
def cuda_usable() -> bool:
    import torch

    return torch.cuda.is_available()
