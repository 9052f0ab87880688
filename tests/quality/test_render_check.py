"""The render check through the real daemon: every chunk is heard by the packaged Whisper
model and compared with the voice by the speaker encoder; a failing chunk is rendered again
with the next seed, the best attempt kept, and a text still failing is written and flagged.

Real TorToiSe weights cannot exist here and the tiny random ones babble, so one stand-in is
used, named `EspeakEngine`: the real engine (tiny set: real latents, real chunking) whose
`render` returns espeak-ng speech instead, of the chunk's own text, of another text, or
silence, as scripted per seed. The voice's clips are espeak-ng speech too, so the speaker
is the same. The last test runs the real tiny engine end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from daemon.quality.render_check import (
    Attempt,
    CheckLimits,
    ChunkVerdict,
    keep_best,
    spoken_text,
)
from daemon.tts.redact import Redaction
from tests.conftest import WHISPER_BASE, configure, run_until_idle, status
from tests.quality.speech import EspeakEngine, espeak_voice_root, spoken

TEXT = "The weather was lovely today, and the children played outside until dinner."
LIMITS = CheckLimits(max_cer=0.3, min_similarity=0.6, retries=2)


@pytest.fixture
def espeak_root(root: Path, espeak_voice_template: Path, tiny_models: Path, monkeypatch) -> Path:
    """Voice `eve` made of espeak-ng clips, the tiny set for latents, the check on."""
    return espeak_voice_root(root, espeak_voice_template, tiny_models, monkeypatch, check=True)


def render(root: Path, script: dict[int, str]) -> tuple[dict, Path]:
    EspeakEngine.script = script
    text = root / "outbox" / "eve" / "day.txt"
    text.write_text(TEXT, encoding="utf-8")
    run_until_idle(root)
    sidecar = json.loads(text.with_suffix(".json").read_text(encoding="utf-8"))
    return sidecar, text


def test_a_chunk_that_says_its_text_in_the_voice_passes_at_once(espeak_root):
    sidecar, text = render(espeak_root, {})
    check = sidecar["check"]
    assert check["passed"] and check["failed_chunks"] == []
    (chunk,) = check["chunks"]
    (attempt,) = chunk["attempts"]
    assert attempt["seed"] == 0 and attempt["cer"] < 0.15 and attempt["similarity"] > 0.8
    assert "lovely" in attempt["heard"].lower()
    assert EspeakEngine.seeds == [0]
    assert not text.with_suffix(".check.txt").exists()
    assert status(espeak_root)["voices"]["eve"]["flagged_renders"] == []


def test_a_chunk_saying_something_else_is_rendered_again_and_the_good_attempt_kept(espeak_root):
    sidecar, text = render(espeak_root, {0: "wrong"})
    (chunk,) = sidecar["check"]["chunks"]
    assert [a["seed"] for a in chunk["attempts"]] == [0, 1] and chunk["kept"] == 1
    assert chunk["attempts"][0]["cer"] > 0.5 and "elephant" in chunk["attempts"][0]["heard"]
    assert sidecar["check"]["passed"] and not text.with_suffix(".check.txt").exists()
    kept, rate = sf.read(text.with_suffix(".wav"))
    said, said_rate = spoken(TEXT)
    assert abs(len(kept) / rate - len(said) / said_rate) < 0.1  # the right speech was kept


@pytest.mark.parametrize("mode", ["wrong", "silence"])
def test_a_chunk_failing_every_retry_is_written_and_flagged(espeak_root, mode):
    sidecar, text = render(espeak_root, dict.fromkeys(range(3), mode))
    assert EspeakEngine.seeds == [0, 1, 2]  # render.retries: 2
    check = sidecar["check"]
    assert not check["passed"] and check["failed_chunks"] == [1]
    assert text.with_suffix(".wav").exists(), "written all the same"
    note = text.with_suffix(".check.txt").read_text(encoding="utf-8")
    assert note.startswith("1 of 1 chunks of day.wav did not pass the render check")
    assert "chunk 1: 'The weather was lovely today" in note and "seeds tried 0, 1, 2" in note
    if mode == "silence":
        attempts = check["chunks"][0]["attempts"]
        assert all(a["similarity"] == 0.0 and a["cer"] == 1.0 for a in attempts)
    else:
        assert "elephants" in note.lower()
    (flagged,) = status(espeak_root)["voices"]["eve"]["flagged_renders"]
    assert flagged["file"] == "day.wav" and "did not pass the render check" in flagged["check"]


def test_a_text_that_passes_later_loses_its_flag(espeak_root):
    _, text = render(espeak_root, dict.fromkeys(range(3), "wrong"))
    assert text.with_suffix(".check.txt").exists()
    EspeakEngine.script = {}
    text.write_text(TEXT + " And then it rained.", encoding="utf-8")
    run_until_idle(espeak_root)
    assert not text.with_suffix(".check.txt").exists()
    assert status(espeak_root)["voices"]["eve"]["flagged_renders"] == []


def test_the_best_attempt_is_the_first_that_passed_else_the_closest():
    good = Attempt(seed=1, heard="x", cer=0.1, similarity=0.9)
    near = Attempt(seed=0, heard="x", cer=0.35, similarity=0.9)
    far = Attempt(seed=2, heard="x", cer=0.9, similarity=0.3)
    assert keep_best([near, good, far], LIMITS) == 1
    assert keep_best([far, near], LIMITS) == 1
    unknown_voice = Attempt(seed=0, heard="x", cer=0.1, similarity=None)
    assert unknown_voice.passes(LIMITS), "no reference: only the words are checked"


def test_the_text_a_chunk_should_say_leaves_out_cut_prompts():
    chunk = "[I am really sad,] Please feed me."
    assert spoken_text(chunk, Redaction.CUT) == "Please feed me."
    assert spoken_text(chunk, Redaction.KEPT) == "I am really sad, Please feed me."


def test_a_verdict_survives_a_restart_as_json():
    verdict = ChunkVerdict(3, "Hello.", (Attempt(7, "hello", 0.0, 0.91),), 0, True)
    assert ChunkVerdict.from_json(verdict.to_json()) == verdict


def test_the_real_tiny_pipeline_fails_every_chunk_retries_and_flags_losing_nothing(
    root, tiny_models
):
    """Random weights babble: every chunk fails, is tried render.retries more times, and the
    text is still written, flagged, with every attempt in the sidecar."""
    configure(
        root,
        {
            "tts": {"models_dir": str(tiny_models)},
            "whisper": {"model": str(WHISPER_BASE), "language": "en"},
            "render": {"check": True, "retries": 1},
        },
    )
    from tests.conftest import tortoise_clips

    inbox = root / "inbox" / "tom"
    inbox.mkdir(parents=True)
    for clip in tortoise_clips("tom")[:2]:
        (inbox / clip.name).write_bytes(clip.read_bytes())
    text = root / "outbox" / "tom" / "two.txt"
    text.parent.mkdir(parents=True)
    body = "---\ncandidates: 2\ndiffusion_iterations: 4\n---\nFirst sentence here. Second one."
    text.write_text(body, encoding="utf-8")
    run_until_idle(root)
    sidecar = json.loads(text.with_suffix(".json").read_text(encoding="utf-8"))
    chunks = sidecar["check"]["chunks"]
    assert chunks and all(len(c["attempts"]) == 2 for c in chunks)
    assert all([a["seed"] for a in c["attempts"]] == [0, 1] for c in chunks)
    assert sidecar["check"]["failed_chunks"] == list(range(1, len(chunks) + 1))
    assert text.with_suffix(".wav").exists() and text.with_suffix(".check.txt").exists()
    assert status(root)["failed"] == []
    assert status(root)["chunk_cache"]["chunks"] == len(chunks), "the kept attempts are cached"
