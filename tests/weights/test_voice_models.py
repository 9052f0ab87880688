"""daemon.weights.voice_models: fine-tunes from voicedrop or ai-voice-cloning rendering a voice.

Real TorToiSe weights cannot exist here, so the ai-voice-cloning checkpoints below are stand-ins
in its format: the tiny autoregressive model's state dict saved as DL-Art-School saves
`<step>_gpt.pth`, with the `attn.bias` / `attn.masked_bias` buffers older transformers kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from daemon.cli import main as cli_main
from daemon.tts.checkpoints import build_autoregressive
from daemon.tts.spec import ModelSpec
from daemon.weights.voice_models import KEEP_PREVIOUS, PREVIOUS_DIR, installed, use_model
from tests.conftest import configure, run_until_idle, tortoise_clips

FAST = "---\ncandidates: 2\ndiffusion_iterations: 4\n---\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gpt_checkpoint(path: Path, seed: int, spec: ModelSpec | None = None) -> Path:
    """A `<step>_gpt.pth` as DL-Art-School writes it (stand-in, tiny dims, random weights)."""
    torch.manual_seed(seed)
    model = build_autoregressive(spec or ModelSpec.tiny())
    state = dict(model.state_dict())
    positions = model.gpt.config.n_positions
    for layer in range(len(model.gpt.h)):
        state[f"gpt.h.{layer}.attn.bias"] = torch.tril(
            torch.ones(positions, positions, dtype=torch.bool)
        ).view(1, 1, positions, positions)
        state[f"gpt.h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def wrong_dims() -> ModelSpec:
    spec = ModelSpec.tiny()
    return dataclasses.replace(spec, autoregressive={**spec.autoregressive, "model_dim": 32})


@pytest.fixture
def voice_root(root: Path, tiny_models: Path) -> Path:
    configure(root, {"tts": {"models_dir": str(tiny_models)}})
    return root


def use(root: Path, voice: str, file: Path) -> int:
    return cli_main(["models", "use", voice, str(file), "--root", str(root)])


def test_models_use_installs_a_checked_copy_and_keeps_the_replaced_model(voice_root, tmp_path):
    models = voice_root / "voices" / "tom" / "models"
    first = gpt_checkpoint(tmp_path / "1000_gpt.pth", seed=1)
    second = gpt_checkpoint(tmp_path / "2000_gpt.pth", seed=2)

    assert use(voice_root, "tom", first) == 0
    assert sha256(models / "autoregressive.pth") == sha256(first)
    assert first.exists()  # copied, the user's file stays where it was
    record = installed(models)
    assert record and record.origin == "models use" and record.source == str(first)

    assert use(voice_root, "tom", second) == 0
    assert sha256(models / "autoregressive.pth") == sha256(second)
    (kept,) = (models / PREVIOUS_DIR).glob("*.pth")
    assert sha256(kept) == sha256(first)
    assert json.loads(kept.with_suffix(".json").read_text())["source"] == str(first)


@pytest.mark.parametrize("kind", ["wrong dims", "not a checkpoint", "code in a pickle", "missing"])
def test_a_file_that_does_not_fit_is_refused_and_the_voice_keeps_its_model(
    voice_root, tmp_path, capsys, kind
):
    models = voice_root / "voices" / "tom" / "models"
    assert use(voice_root, "tom", gpt_checkpoint(tmp_path / "good.pth", seed=1)) == 0
    before = sha256(models / "autoregressive.pth")
    bad = tmp_path / "bad_gpt.pth"
    if kind == "wrong dims":
        gpt_checkpoint(bad, seed=3, spec=wrong_dims())
    elif kind == "not a checkpoint":
        bad.write_bytes(b"\x00not a checkpoint" * 100)
    elif kind == "code in a pickle":
        torch.save({"weights": shutil.rmtree}, bad)  # weights_only refuses to load functions

    assert use(voice_root, "tom", bad) == 1
    message = capsys.readouterr().err
    assert str(bad) in message and "keeps the model it had" in message
    assert sha256(models / "autoregressive.pth") == before
    assert sorted(p.name for p in models.iterdir()) == ["autoregressive.json", "autoregressive.pth"]


def test_only_the_last_replaced_models_are_kept(tmp_path):
    models = tmp_path / "models"
    sources = [gpt_checkpoint(tmp_path / f"{n}_gpt.pth", seed=n) for n in range(KEEP_PREVIOUS + 3)]
    for source in sources:
        use_model(models, source, ModelSpec.tiny(), "models use")
    kept = sorted((models / PREVIOUS_DIR).glob("*.pth"))
    assert [sha256(path) for path in kept] == [sha256(s) for s in sources[-KEEP_PREVIOUS - 1 : -1]]


def test_a_checkpoint_dropped_into_the_models_folder_is_picked_up_by_the_next_render(
    voice_root, tmp_path
):
    """ai-voice-cloning users copy `<step>_gpt.pth` by hand: the daemon checks and uses it; a
    file that does not fit is explained beside it and the voice keeps rendering."""
    (voice_root / "inbox" / "tom").mkdir()
    shutil.copy(tortoise_clips("tom")[0], voice_root / "inbox" / "tom" / "clip.wav")
    models = voice_root / "voices" / "tom" / "models"
    dropped = gpt_checkpoint(models / "1500_gpt.pth", seed=5)
    dropped_sha = sha256(dropped)
    broken = gpt_checkpoint(models / "900_gpt.pth", seed=6, spec=wrong_dims())
    outbox = voice_root / "outbox" / "tom"
    outbox.mkdir()
    (outbox / "line.txt").write_text(FAST + "Hello there.")

    run_until_idle(voice_root)

    meta = json.loads((outbox / "line.json").read_text())
    assert meta["fine_tuned"] is True
    assert meta["models"]["autoregressive.pth"]["sha256"] == dropped_sha
    assert not dropped.exists() and installed(models).origin == "dropped"
    assert broken.exists()
    reason = (models / "900_gpt.pth.error.txt").read_text()
    assert "900_gpt.pth was not used" in reason and "shape" in reason
