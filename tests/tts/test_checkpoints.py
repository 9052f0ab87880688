"""daemon.tts.checkpoints: the tiny model set on disk, strict loading, spec.json, weight checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from daemon.training.dvae import build_dvae
from daemon.tts.checkpoints import (
    build_autoregressive,
    build_clvp,
    build_diffusion,
    build_hifigan,
    build_vocoder,
    load_strict,
    save_checkpoint,
)
from daemon.tts.spec import (
    HIFIGAN_FILE,
    REQUIRED_FILES,
    BadCheckpoint,
    ModelSpec,
    WeightsMissing,
    missing_weights,
)
from daemon.tts.tiny import write_tiny_models

LOADERS = {
    "autoregressive.pth": (build_autoregressive, None),
    "diffusion_decoder.pth": (build_diffusion, None),
    "vocoder.pth": (build_vocoder, "model_g"),
    "clvp2.pth": (build_clvp, None),
    "hifidecoder.pth": (build_hifigan, None),
    "dvae.pth": (build_dvae, None),
}


def test_tiny_set_has_every_file_in_the_released_formats(tiny_models: Path) -> None:
    names = sorted(path.name for path in tiny_models.iterdir())
    assert names == sorted([*LOADERS, "spec.json"])
    assert ModelSpec.read(tiny_models) == ModelSpec.tiny()
    vocoder = torch.load(tiny_models / "vocoder.pth", map_location="cpu", weights_only=True)
    assert list(vocoder) == ["model_g"]


@pytest.mark.parametrize("name", LOADERS)
def test_tiny_models_load_strictly_with_the_saved_weights(tiny_models: Path, name: str) -> None:
    build, key = LOADERS[name]
    module = load_strict(build(ModelSpec.tiny()), tiny_models / name, key)
    saved = torch.load(tiny_models / name, map_location="cpu", weights_only=True)
    saved = saved[key] if key else saved
    for param, value in module.state_dict().items():
        assert torch.equal(value, saved[param]), param


def test_same_seed_writes_the_same_weights(tmp_path: Path) -> None:
    first = write_tiny_models(tmp_path / "a", seed=3)
    second = write_tiny_models(tmp_path / "b", seed=3)
    for a, b in zip(first, second, strict=True):
        if a.suffix == ".pth":
            one = torch.load(a, map_location="cpu", weights_only=True)
            two = torch.load(b, map_location="cpu", weights_only=True)
            assert all(torch.equal(one[k], two[k]) for k in one if isinstance(one[k], torch.Tensor))
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def clvp_state(tiny_models: Path) -> dict[str, torch.Tensor]:
    return torch.load(tiny_models / "clvp2.pth", map_location="cpu", weights_only=True)


def renamed(state: dict) -> dict:
    state["text_emb.weights"] = state.pop("text_emb.weight")
    return state


def extra(state: dict) -> dict:
    state["speech_head.weight"] = torch.zeros(3)
    return state


def reshaped(state: dict) -> dict:
    state["to_text_latent.weight"] = torch.zeros(7, 7)
    return state


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        (renamed, ["1 missing keys: text_emb.weight", "1 unexpected keys: text_emb.weights"]),
        (extra, ["1 unexpected keys: speech_head.weight"]),
        (reshaped, ["to_text_latent.weight is (7, 7), expected (32, 32)"]),
    ],
)
def test_a_checkpoint_that_does_not_fit_names_file_and_key(
    tiny_models: Path, tmp_path: Path, change, mentions: list[str]
) -> None:
    path = save_checkpoint(change(clvp_state(tiny_models)), tmp_path / "clvp2.pth")
    with pytest.raises(BadCheckpoint) as raised:
        load_strict(build_clvp(ModelSpec.tiny()), path)
    message = str(raised.value)
    assert str(path) in message
    for text in mentions:
        assert text in message


def test_a_wrong_file_lists_a_few_keys_and_counts_the_rest(
    tiny_models: Path, tmp_path: Path
) -> None:
    """The diffusion decoder dropped where the CLVP belongs."""
    path = tmp_path / "clvp2.pth"
    shutil.copy(tiny_models / "diffusion_decoder.pth", path)
    with pytest.raises(BadCheckpoint) as raised:
        load_strict(build_clvp(ModelSpec.tiny()), path)
    message = str(raised.value)
    assert "missing keys" in message and "unexpected keys" in message
    assert "more" in message
    assert len(message) < 2000


def test_legacy_gpt2_buffers_of_the_released_autoregressive_model_are_accepted(
    tiny_models: Path, tmp_path: Path
) -> None:
    """The released autoregressive.pth carries gpt.h.N.attn.bias / masked_bias buffers that
    transformers 4.31 no longer saves; strict loading must not trip over them."""
    state = torch.load(tiny_models / "autoregressive.pth", map_location="cpu", weights_only=True)
    state["gpt.h.0.attn.bias"] = torch.ones(1, 1, 4, 4)
    state["gpt.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    path = save_checkpoint(state, tmp_path / "autoregressive.pth")
    load_strict(build_autoregressive(ModelSpec.tiny()), path)


def test_vocoder_weights_must_be_under_model_g(tiny_models: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_models / "vocoder.pth", map_location="cpu", weights_only=True)
    path = save_checkpoint(state["model_g"], tmp_path / "vocoder.pth")
    with pytest.raises(BadCheckpoint, match="no 'model_g' entry"):
        load_strict(build_vocoder(ModelSpec.tiny()), path, "model_g")


def test_a_file_that_is_no_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "clvp2.pth"
    path.write_text("<html>404</html>")
    with pytest.raises(BadCheckpoint, match="not a readable PyTorch checkpoint"):
        load_strict(build_clvp(ModelSpec.tiny()), path)


BASE = ("autoregressive.pth", "clvp2.pth")
DIFFUSION = ("diffusion_decoder.pth", "vocoder.pth")


@pytest.mark.parametrize(
    ("present", "decoder", "missing"),
    [
        ((), "diffusion", [*BASE, *DIFFUSION]),
        ((), "hifigan", ["autoregressive.pth", HIFIGAN_FILE]),
        (REQUIRED_FILES, "diffusion", []),
        (REQUIRED_FILES, "hifigan", [HIFIGAN_FILE]),
        (("autoregressive.pth", HIFIGAN_FILE), "hifigan", []),
        (("autoregressive.pth", HIFIGAN_FILE), "diffusion", ["clvp2.pth", *DIFFUSION]),
    ],
)
def test_missing_weights_per_decoder(
    tmp_path: Path, present: tuple[str, ...], decoder: str, missing: list[str]
) -> None:
    for name in present:
        (tmp_path / name).write_bytes(b"x")
    assert missing_weights(tmp_path, decoder) == missing


def test_missing_weights_refuses_an_unknown_decoder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown decoder"):
        missing_weights(tmp_path, "griffin-lim")


def test_weights_missing_says_what_to_do() -> None:
    error = WeightsMissing(Path("/x/models/tortoise"), ["autoregressive.pth", "vocoder.pth"])
    assert error.directory == Path("/x/models/tortoise")
    assert error.missing == ["autoregressive.pth", "vocoder.pth"]
    assert str(error) == (
        "missing autoregressive.pth, vocoder.pth in /x/models/tortoise: run `voicedrop models "
        "fetch`, or put TorToiSe's released checkpoints there"
    )


def test_spec_json_round_trips_and_defaults_to_released(tmp_path: Path) -> None:
    assert ModelSpec.read(tmp_path) == ModelSpec.released()
    spec = ModelSpec.tiny()
    path = spec.write(tmp_path)
    assert path == tmp_path / "spec.json"
    assert ModelSpec.read(tmp_path) == spec
    assert json.loads(path.read_text())["autoregressive"]["model_dim"] == 64


@pytest.mark.parametrize("text", ["{not json", '{"autoregressive": {}}', "[]"])
def test_a_broken_spec_json_is_reported(tmp_path: Path, text: str) -> None:
    (tmp_path / "spec.json").write_text(text)
    with pytest.raises(BadCheckpoint, match=r"spec\.json"):
        ModelSpec.read(tmp_path)


def test_released_spec_has_the_released_dims() -> None:
    """The numbers in docs/TORTOISE.md ("Released dimensions")."""
    spec = ModelSpec.released()
    assert spec.autoregressive == {
        "layers": 30,
        "model_dim": 1024,
        "heads": 16,
        "max_text_tokens": 402,
        "max_mel_tokens": 604,
        "max_conditioning_inputs": 2,
        "number_text_tokens": 255,
        "start_text_token": 255,
        "checkpointing": False,
        "train_solo_embeddings": False,
    }
    assert {
        key: spec.diffusion[key]
        for key in (
            "model_channels",
            "num_layers",
            "in_channels",
            "out_channels",
            "in_latent_channels",
            "in_tokens",
            "num_heads",
        )
    } == {
        "model_channels": 1024,
        "num_layers": 10,
        "in_channels": 100,
        "out_channels": 200,
        "in_latent_channels": 1024,
        "in_tokens": 8193,
        "num_heads": 16,
    }
    assert spec.clvp == {
        "dim_text": 768,
        "dim_speech": 768,
        "dim_latent": 768,
        "num_text_tokens": 256,
        "text_enc_depth": 20,
        "text_seq_len": 350,
        "text_heads": 12,
        "num_speech_tokens": 8192,
        "speech_enc_depth": 20,
        "speech_heads": 12,
        "speech_seq_len": 430,
        "use_xformers": True,
    }
    assert spec.hifigan["in_channels"] == spec.hifigan["cond_channels"] == 1024
    assert spec.hifigan["upsample_initial_channel"] == 512


def test_vocoder_spec_is_univnets_defaults() -> None:
    """The release loads into a plain UnivNetGenerator(): the spec must spell its defaults."""
    import inspect

    from tortoise.models.vocoder import UnivNetGenerator

    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(UnivNetGenerator).parameters.items()
    }
    assert ModelSpec.released().vocoder == defaults


def test_tiny_models_keep_the_released_interfaces() -> None:
    tiny = ModelSpec.tiny()
    assert tiny.diffusion["in_latent_channels"] == tiny.autoregressive["model_dim"]
    assert tiny.hifigan["in_channels"] == tiny.autoregressive["model_dim"]
    assert tiny.hifigan["cond_channels"] == tiny.autoregressive["model_dim"]
    assert tiny.autoregressive["max_mel_tokens"] == 604
    assert tiny.autoregressive["max_text_tokens"] == 402
