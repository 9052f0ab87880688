"""daemon.training.dvae: the released dvae.pth layout, nearest-codebook codes, the codes cache."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from daemon.core.files import file_sha256
from daemon.training.dvae import (
    TRAINING_SAMPLES,
    CodesCache,
    build_dvae,
    code_count,
    training_codes,
    wave_to_mel,
)
from daemon.tts.checkpoints import load_strict, save_checkpoint
from daemon.tts.spec import DVAE_FILE, BadCheckpoint, ModelSpec
from tests.conftest import voiced_signal

# docs/TORTOISE.md, "The dVAE"
RELEASED_SHAPES = {
    "encoder.0.0.weight": (512, 80, 3),
    "encoder.1.0.weight": (1024, 512, 3),
    "encoder.2.net.0.weight": (1024, 1024, 3),
    "encoder.3.net.2.weight": (1024, 1024, 3),
    "encoder.4.net.4.weight": (1024, 1024, 1),
    "encoder.5.weight": (512, 1024, 1),
    "encoder.5.bias": (512,),
    "codebook.embed": (512, 8192),
    "codebook.cluster_size": (8192,),
    "codebook.embed_avg": (512, 8192),
    "decoder.0.weight": (1024, 512, 1),
    "decoder.1.net.0.weight": (1024, 1024, 3),
    "decoder.3.net.4.weight": (1024, 1024, 1),
    "decoder.4.0.conv.weight": (1024, 1024, 3),
    "decoder.5.0.conv.weight": (512, 1024, 3),
    "decoder.6.weight": (80, 512, 1),
    "decoder.6.bias": (80,),
}


def test_released_dims_give_the_released_state_dict() -> None:
    state = build_dvae(ModelSpec.released()).state_dict()
    assert {name: tuple(state[name].shape) for name in RELEASED_SHAPES} == RELEASED_SHAPES
    convs = [
        f"{stack}.{i}.net.{j}"
        for stack, blocks in (("encoder", (2, 3, 4)), ("decoder", (1, 2, 3)))
        for i in blocks
        for j in (0, 2, 4)
    ]
    expected = {f"{conv}.{kind}" for conv in convs for kind in ("weight", "bias")}
    expected |= {name.rsplit(".", 1)[0] + ".bias" for name in RELEASED_SHAPES if "weight" in name}
    expected |= set(RELEASED_SHAPES)
    assert set(state) == expected


def test_tiny_dvae_loads_strictly_and_a_wrong_file_is_refused(
    tiny_models: Path, tmp_path: Path
) -> None:
    load_strict(build_dvae(ModelSpec.tiny()), tiny_models / DVAE_FILE)
    with pytest.raises(BadCheckpoint, match="does not fit DiscreteVAE"):
        load_strict(build_dvae(ModelSpec.tiny()), tiny_models / "clvp2.pth")
    state = torch.load(tiny_models / DVAE_FILE, map_location="cpu", weights_only=True)
    state["codebook.embed"] = state["codebook.embed"][:, :10]
    with pytest.raises(BadCheckpoint, match=r"codebook\.embed"):
        load_strict(build_dvae(ModelSpec.tiny()), save_checkpoint(state, tmp_path / DVAE_FILE))


def test_codes_are_the_nearest_codebook_column_per_four_mel_frames(tiny_models: Path) -> None:
    dvae = load_strict(build_dvae(ModelSpec.tiny()), tiny_models / DVAE_FILE).eval()
    mel = wave_to_mel(torch.from_numpy(voiced_signal(1.3)).unsqueeze(0))
    codes = dvae.codes(mel)
    assert codes.dtype == torch.long
    assert codes.shape == (1, math.ceil(mel.shape[-1] / 4))
    encoded = dvae.encoder(mel)[0].T  # (frames, codebook_dim)
    distances = torch.cdist(encoded, dvae.codebook.embed.T)
    assert torch.equal(codes[0], distances.argmin(1))
    assert int(codes.max()) < ModelSpec.tiny().dvae["num_tokens"]


def test_codes_cache_is_reused_until_the_audio_or_the_dvae_changes(
    tiny_models: Path, tmp_path: Path
) -> None:
    dvae = load_strict(build_dvae(ModelSpec.tiny()), tiny_models / DVAE_FILE).eval()
    audio = tmp_path / "audio" / "piece_00001.wav"
    audio.parent.mkdir()
    sf.write(audio, voiced_signal(1.5, seed=1), 22050)
    wave = torch.from_numpy(voiced_signal(1.5, seed=1))
    cache = CodesCache(tmp_path / "codes", dvae, file_sha256(tiny_models / DVAE_FILE))

    first = cache.codes(audio, wave)
    assert cache.computed == 1
    assert (tmp_path / "codes" / "piece_00001.pt").exists()
    assert torch.equal(cache.codes(audio, wave), first)
    assert cache.computed == 1

    sf.write(audio, voiced_signal(1.5, seed=2), 22050)
    cache.codes(audio, torch.from_numpy(voiced_signal(1.5, seed=2)))
    assert cache.computed == 2

    other = CodesCache(tmp_path / "codes", dvae, "another dvae")
    other.codes(audio, wave)
    assert other.computed == 1


def test_training_codes_are_those_of_a_dl_art_school_batch_padded_to_255995(
    tiny_models: Path, tmp_path: Path
) -> None:
    """DL-Art-School encodes each training batch zero-padded to 255995 samples: a clip's codes
    are its row of such a batch, cut to its own length. Encoded alone, the last codes differ
    (the mel's reflected edge instead of zeros); a cache from before that is recomputed."""
    dvae = load_strict(build_dvae(ModelSpec.tiny()), tiny_models / DVAE_FILE).eval()
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():  # codebook columns taken from encoded audio, as training makes them
        seen = dvae.encoder(wave_to_mel(0.1 * torch.randn(1, 300000, generator=noise)))[0]
        dvae.codebook.embed.copy_(seen[:, : dvae.codebook.embed.shape[1]])
    clips = [0.1 * torch.randn(n, generator=noise) for n in (13000, 40000, 100001, 150000)]
    batch = torch.stack([F.pad(clip, (0, TRAINING_SAMPLES - clip.numel())) for clip in clips])
    rows = dvae.codes(wave_to_mel(batch))
    differ = 0
    for row, clip in zip(rows, clips, strict=True):
        codes = training_codes(dvae, clip)
        assert torch.equal(codes, row[: code_count(clip.numel())])
        alone = dvae.codes(wave_to_mel(clip.unsqueeze(0)))[0]
        assert alone.shape == codes.shape
        assert torch.equal(alone[: len(alone) // 2], codes[: len(codes) // 2])
        differ += not torch.equal(alone, codes)
    assert differ

    audio = tmp_path / "piece_00001.wav"
    sf.write(audio, clips[0].numpy(), 22050)
    digest = hashlib.sha256(audio.read_bytes()).hexdigest()
    old = {"codes": torch.zeros(3, dtype=torch.long), "audio_sha256": digest, "dvae_sha256": "d"}
    save_checkpoint(old, tmp_path / "codes" / "piece_00001.pt")  # cached without the padding
    cache = CodesCache(tmp_path / "codes", dvae, "d")
    assert torch.equal(cache.codes(audio, clips[0]), training_codes(dvae, clips[0]))
    assert cache.computed == 1
