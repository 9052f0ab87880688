"""Where models are found: the store, TORTOISE_MODELS_DIR, tortoise's Hugging Face cache, a
configured folder; and Whisper, from any root."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from daemon.core.config import load_settings
from daemon.core.paths import Root
from daemon.tts.checkpoints import build_clvp, load_strict
from daemon.tts.spec import REQUIRED_FILES, BadCheckpoint, ModelSpec
from daemon.weights import store as model_store
from daemon.weights.store import (
    FileState,
    ModelMissing,
    Source,
    dvae_file,
    file_status,
    store_dir,
    tortoise_models,
    whisper_model,
)
from tests.conftest import (
    REPO,
    SENTENCES,
    WHISPER_BASE,
    configure,
    espeak,
    run_until_idle,
    status,
    voicedrop,
)

CHECKOUT_WHISPER = WHISPER_BASE


def settings_of(root: Path):
    return load_settings(root / "config.yaml")


def hf_cache(base: Path, repo: str, files: dict[str, Path], revision: str = "c0ffee") -> Path:
    """tortoise's cache as huggingface_hub lays it out: snapshot names link to blobs named
    by their sha256."""
    repo_dir = base / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    (repo_dir / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    for name, source in files.items():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        blob = repo_dir / "blobs" / digest
        shutil.copy(source, blob)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def test_the_store_is_the_env_then_the_config_then_the_checkout_then_xdg(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(root, {"models": {"store": "shared-models"}})
    settings = settings_of(root)
    assert store_dir(Root.at(root), settings) == root / "shared-models"
    monkeypatch.setenv("VOICEDROP_MODELS", str(tmp_path / "env-store"))
    assert store_dir(Root.at(root), settings) == tmp_path / "env-store"
    monkeypatch.delenv("VOICEDROP_MODELS")
    configure(root)
    plain = settings_of(root).__class__()
    assert store_dir(Root.at(root), plain) == REPO / "models"
    monkeypatch.setattr(model_store, "install_folder", lambda: None)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert store_dir(Root.at(root), plain) == tmp_path / "data" / "voicedrop" / "models"


def test_tortoise_weights_are_found_in_the_hf_cache_without_copying(
    root: Path, tmp_path: Path, tiny_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "tortoise-cache"
    files = {name: tiny_models / name for name in (*REQUIRED_FILES, "spec.json")}
    snapshot = hf_cache(cache, model_store.TORTOISE_REPO, files)
    monkeypatch.setenv("TORTOISE_MODELS_DIR", str(cache))
    found = tortoise_models(Root.at(root), settings_of(root), None, "diffusion")
    assert found == model_store.Location(snapshot, Source.TORTOISE_ENV)
    assert file_status(snapshot / "clvp2.pth").state is FileState.VERIFIED
    # hifigan needs hifidecoder.pth, which only the store has: the store wins for it
    store = Path(settings_of(root).models.store) / "tortoise"
    store.mkdir(parents=True)
    for name in ("autoregressive.pth", "clvp2.pth", "hifidecoder.pth", "diffusion_decoder.pth"):
        shutil.copy(tiny_models / name, store)
    hifigan = tortoise_models(Root.at(root), settings_of(root), None, "hifigan")
    assert hifigan == model_store.Location(store, Source.STORE)
    # a folder named in config is used as it is
    configured = tortoise_models(Root.at(root), settings_of(root), str(tiny_models), "diffusion")
    assert configured == model_store.Location(tiny_models, Source.CONFIG)


def test_the_default_tortoise_cache_is_searched_when_the_variable_is_unset(
    root: Path, tmp_path: Path, tiny_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TORTOISE_MODELS_DIR")
    monkeypatch.setattr(model_store, "TORTOISE_CACHE", tmp_path / "home-cache")
    snapshot = hf_cache(
        tmp_path / "home-cache",
        model_store.TORTOISE_REPO,
        {name: tiny_models / name for name in REQUIRED_FILES},
    )
    hf_cache(
        tmp_path / "home-cache",
        model_store.DVAE_REPO,
        {".models/dvae.pth": tiny_models / "dvae.pth"},
        revision="3704aea",
    )
    found = tortoise_models(Root.at(root), settings_of(root), None, "diffusion")
    assert found == model_store.Location(snapshot, Source.TORTOISE_CACHE)
    dvae = dvae_file(Root.at(root), settings_of(root), None)
    assert dvae.name == "dvae.pth" and dvae.is_file() and "tortoise-tts-v2" in str(dvae)


def test_a_tampered_cache_blob_is_refused_before_loading(tmp_path: Path, tiny_models: Path) -> None:
    snapshot = hf_cache(
        tmp_path, model_store.TORTOISE_REPO, {"clvp2.pth": tiny_models / "clvp2.pth"}
    )
    blob = (snapshot / "clvp2.pth").resolve()
    blob.write_bytes(blob.read_bytes()[:-10])
    assert file_status(snapshot / "clvp2.pth").state is FileState.MISMATCH
    with pytest.raises(BadCheckpoint, match="voicedrop models fetch"):
        load_strict(build_clvp(ModelSpec.tiny()), snapshot / "clvp2.pth")


def test_whisper_is_found_in_the_store_by_name_and_by_the_old_relative_default(
    root: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    (store / "whisper-base").mkdir(parents=True)
    (store / "whisper-base" / "model.bin").write_bytes(b"")
    configure(root, {"models": {"store": str(store)}})
    assert whisper_model(Root.at(root), settings_of(root)) == str(store / "whisper-base")
    configure(root, {"models": {"store": str(store)}, "whisper": {"model": "models/whisper-base"}})
    assert whisper_model(Root.at(root), settings_of(root)) == str(store / "whisper-base")
    configure(root, {"models": {"store": str(store)}, "whisper": {"model": "tiny"}})
    assert whisper_model(Root.at(root), settings_of(root)) == "tiny"  # downloaded by name
    configure(root, {"whisper": {"model": "whisper-base"}})
    with pytest.raises(ModelMissing, match="not in the model store"):
        whisper_model(Root.at(root), settings_of(root))


def test_a_root_made_anywhere_transcribes_with_no_config_edit(tmp_path: Path) -> None:
    """`voicedrop init` outside the checkout; the config is the template, untouched. The
    daemon finds the Whisper model `make setup` put in the checkout's store."""
    assert (CHECKOUT_WHISPER / "model.bin").is_file(), "run `make setup` first"
    root = tmp_path / "srv" / "voicedrop"
    voicedrop("init", str(root))
    assert not (root / "models").exists()
    espeak(root / "inbox" / "anna" / "a.wav", SENTENCES[1])
    run_until_idle(root)
    dataset = status(root)["voices"]["anna"]["dataset"]
    folder = root / "voices" / "anna" / "dataset"
    lines = [line for p in folder.glob("*.txt") for line in p.read_text().splitlines()]
    assert dataset["train"] + dataset["validation"] == len(lines) >= 1
    assert dataset["transcribed"] == 1 and dataset["to_transcribe"] == 0
    assert "coffee" in " ".join(lines).lower()
    doctor = voicedrop("doctor", "--root", str(root), check=False).stdout
    assert f"ok    whisper model: {CHECKOUT_WHISPER}" in doctor
    assert f"ok    model store: {CHECKOUT_WHISPER.parent} (default)" in doctor
