"""A stand-in speech source: espeak-ng speaking a given text, as a numpy array and its rate.

Tests cannot have TorToiSe's released weights (the tiny random ones babble), so this is the
one stand-in for "speech that says this text": real synthetic speech Whisper understands,
for checks that ask whether audio says its text.
"""

from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile as sf


def spoken(text: str, voice: str = "en-us", speed: int = 160) -> tuple[np.ndarray, int]:
    """`text` spoken by espeak-ng: mono float32 samples and their rate (22050 Hz)."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, rate
