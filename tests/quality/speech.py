"""A stand-in speech source: espeak-ng speaking a given text, as a numpy array and its rate.

Tests cannot have TorToiSe's released weights (the tiny random ones babble), so this is the
one stand-in for "speech that says this text": real synthetic speech Whisper understands,
for checks that ask whether audio says its text.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf
import soxr

from daemon.tts.engine import Engine

OTHER_TEXT = "Seven purple elephants are dancing on the frozen lake tonight."
VOICE_LINES = (
    "The morning train was late again, so we walked to the market instead.",
    "My sister keeps a small garden full of tomatoes and bright yellow flowers.",
    "Please bring the blue folder when you come to the meeting on Friday.",
    "He read the old letter twice before he folded it and put it away.",
)


def spoken(text: str, voice: str = "en-us", speed: int = 160) -> tuple[np.ndarray, int]:
    """`text` spoken by espeak-ng: mono float32 samples and their rate (22050 Hz)."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, rate


class EspeakEngine(Engine):
    """The real engine (tiny set: real latents, tokenizer and chunk limits) whose `render`
    returns espeak-ng speech instead of TorToiSe's: the stand-in for real weights, which
    cannot exist here. `script` maps a seed to what that attempt says: "right" (the chunk's
    text), "wrong" (OTHER_TEXT) or "silence"; unscripted seeds are right. `seeds` and
    `texts` record every call."""

    script: ClassVar[dict[int, str]] = {}
    seeds: ClassVar[list[int]] = []
    texts: ClassVar[list[str]] = []

    def render(self, text, latents, settings, autoregressive=None, *, on_progress=None):
        EspeakEngine.seeds.append(settings.seed)
        EspeakEngine.texts.append(text)
        mode = self.script.get(settings.seed, "right")
        if mode == "silence":
            return np.zeros(2 * self.SAMPLE_RATE, np.float32)
        audio, rate = spoken(OTHER_TEXT if mode == "wrong" else text)
        return soxr.resample(audio, rate, self.SAMPLE_RATE).astype(np.float32)

    @classmethod
    def reset(cls, script: dict[int, str] | None = None) -> None:
        cls.script, cls.seeds, cls.texts = script or {}, [], []


def drop_espeak_voice(inbox: Path) -> None:
    """A voice of espeak-ng clips, the same speaker as EspeakEngine's renders."""
    inbox.mkdir(parents=True, exist_ok=True)
    for index, line in enumerate(VOICE_LINES):
        audio, rate = spoken(line)
        sf.write(inbox / f"line{index}.wav", audio, rate)


def configure_espeak_root(root: Path, tiny_models: Path, **render: object) -> None:
    """The tiny set for latents and Whisper for listening; `render` settings on top."""
    from tests.conftest import WHISPER_BASE, configure

    configure(
        root,
        {
            "tts": {"models_dir": str(tiny_models)},
            "whisper": {"model": str(WHISPER_BASE), "language": "en"},
            "render": render,
        },
    )


def espeak_voice_root(
    root: Path, template: Path, tiny_models: Path, monkeypatch, **render: object
) -> Path:
    """`root` made a copy of the session's root with voice `eve` of espeak-ng clips imported
    (tests/conftest.py, espeak_voice_template), with `render` settings; renders go to
    EspeakEngine from now on."""
    shutil.rmtree(root)
    shutil.copytree(template, root)
    configure_espeak_root(root, tiny_models, **render)
    (root / "outbox" / "eve").mkdir()
    monkeypatch.setattr("daemon.tts.engine.Engine", EspeakEngine)
    EspeakEngine.reset()
    return root
