"""Which device a model runs on: one answer for TorToiSe, training and Whisper alike."""

from __future__ import annotations

import functools


def resolve_device(device: str) -> str:
    """`auto` is CUDA when a CUDA device is there, else the CPU; anything else is taken as given
    (`cpu`, `cuda`, `cuda:1`)."""
    if device != "auto":
        return device
    return "cuda" if cuda_usable() else "cpu"


@functools.cache
def cuda_usable() -> bool:
    """Asked of the CUDA driver through ctranslate2 (faster-whisper's runtime), which loads in
    milliseconds: importing torch only to ask would cost a transcribing daemon 500 MB."""
    import ctranslate2

    return ctranslate2.get_cuda_device_count() > 0
