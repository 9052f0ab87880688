"""daemon.tts.redact: [bracketed] prompts cut from real speech with the packaged Whisper model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from daemon.core.config import Settings, WhisperSettings
from daemon.core.paths import Root
from daemon.dataset.whisper import Whisper, WhisperOptions
from daemon.tts.redact import Part, Redaction, redact, split_redactions
from daemon.tts.texts import BadText
from tests.conftest import WHISPER_BASE, espeak


@pytest.fixture(scope="module")
def whisper() -> tuple[Whisper, WhisperOptions]:
    assert (WHISPER_BASE / "model.bin").is_file(), "run `make setup` first"
    settings = Settings(whisper=WhisperSettings(model=str(WHISPER_BASE), device="cpu"))
    return Whisper(), WhisperOptions.from_settings(settings, Root.at(WHISPER_BASE.parent))


def seconds(path: Path) -> float:
    return sf.info(path).duration


def heard(whisper, audio: np.ndarray, rate: int) -> list[str]:
    from daemon.tts.redact import listen

    return [word.word for word in listen(audio, rate, *whisper, "en")]


def test_brackets_split_into_kept_and_redacted_parts() -> None:
    assert split_redactions("[I am really angry.] Hello there.") == [
        Part("I am really angry.", True),
        Part(" Hello there.", False),
    ]
    assert [p.redacted for p in split_redactions("a [b] c [d] e")] == [
        False,
        True,
        False,
        True,
        False,
    ]
    assert split_redactions("no brackets") == [Part("no brackets", False)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[only a prompt]", "nothing would be left to hear"),
        ("[one] [two]", "nothing would be left to hear"),
        ("Hello [there", "never closed"),
        ("Hello there] friend", "closes no"),
        ("Hello [outer [inner] text] friend", "cannot nest"),
        ("Hello [] friend", "empty \\[\\]"),
        ("Hello [  ] friend", "empty \\[\\]"),
    ],
)
def test_malformed_brackets_are_explained(text: str, message: str) -> None:
    with pytest.raises(BadText, match=message):
        split_redactions(text)


def test_a_leading_prompt_is_cut_from_real_speech(whisper, tmp_path: Path) -> None:
    """espeak-ng speaks the whole text, as the AR does; only the unbracketed part remains."""
    full = espeak(tmp_path / "full.wav", "I am really angry. Hello there my friend.")
    only = espeak(tmp_path / "kept.wav", "Hello there my friend.")
    audio, rate = sf.read(full, dtype="float32")
    text = "[I am really angry.] Hello there my friend."
    out, status = redact(audio, rate, text, *whisper, "en")
    assert status is Redaction.CUT
    assert abs(out.size / rate - seconds(only)) <= 0.5
    words = heard(whisper, out, rate)
    assert {"hello", "friend"} <= {w.rstrip("s") for w in words}
    assert not {"angry", "really", "am"} & set(words)


def test_a_prompt_in_the_middle_keeps_both_sides(whisper, tmp_path: Path) -> None:
    full = espeak(tmp_path / "full.wav", "Good morning. I whisper this softly. See you tomorrow.")
    kept = espeak(tmp_path / "kept.wav", "Good morning. See you tomorrow.")
    audio, rate = sf.read(full, dtype="float32")
    text = "Good morning. [I whisper this softly.] See you tomorrow."
    out, status = redact(audio, rate, text, *whisper, "en")
    assert status is Redaction.CUT
    assert abs(out.size / rate - seconds(kept)) <= 0.5
    words = heard(whisper, out, rate)
    assert {"morning", "tomorrow"} <= set(words)
    assert not {"whisper", "softly"} & set(words)


def test_without_words_to_cut_at_the_audio_is_kept_whole(whisper) -> None:
    """Noise (what the random-weight test models say) has no words to find the cut by."""
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 24000 * 2).astype(np.float32)
    out, status = redact(noise, 24000, "[I am angry.] Hello there.", *whisper, "en")
    assert status is Redaction.KEPT
    assert np.array_equal(out, noise)


def test_text_without_brackets_is_untouched(whisper) -> None:
    audio = np.zeros(1000, np.float32)
    out, status = redact(audio, 24000, "Hello there.", *whisper, "en")
    assert status is Redaction.NONE and out is audio


def test_words_compare_without_case_and_punctuation() -> None:
    from daemon.tts.redact import words

    assert words("Hello, THERE! It's—fine.") == ["hello", "there", "it's", "fine"]
