"""daemon.tts.engine on the tiny model set: real TorToiSe classes, random weights, from disk."""

from __future__ import annotations

import dataclasses
import shutil
import typing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from daemon.tts.checkpoints import save_checkpoint
from daemon.tts.engine import (
    AR_WINDOW,
    Engine,
    GenerationSettings,
    Latents,
)
from daemon.tts.generation import (
    DIFFUSION_STEPS,
    PRESETS,
    DiffusionSampler,
    GenerationKnobs,
    Preset,
)
from daemon.tts.spec import BadCheckpoint, ModelSpec, WeightsMissing
from daemon.tts.tiny import write_tiny_models
from tests.conftest import tortoise_clips, write_wav

TEXT = "The quick brown fox jumps over the lazy dog."
QUICK = GenerationSettings(candidates=2, diffusion_iterations=4, max_mel_tokens=46)
TINY = ModelSpec.tiny()
DIM = TINY.autoregressive["model_dim"]
MAX_SECONDS = (QUICK.max_mel_tokens + 2) * 1024 / 22050


@pytest.fixture(scope="module")
def engine(tiny_models: Path) -> Engine:
    return Engine(tiny_models, device="cpu")


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [sf.read(path, dtype="float32")[0] for path in tortoise_clips("tom")]


@pytest.fixture(scope="module")
def latents(engine: Engine, clips: list[np.ndarray]) -> Latents:
    return engine.conditioning_latents(clips)


@pytest.fixture(scope="module")
def fine_tune(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another autoregressive model of the same dims, standing in for a voice's fine-tune."""
    folder = tmp_path_factory.mktemp("fine-tune")
    write_tiny_models(folder, seed=1)
    return folder / "autoregressive.pth"


def render(engine: Engine, latents: Latents, **changes) -> np.ndarray:
    autoregressive = changes.pop("autoregressive", None)
    settings = dataclasses.replace(QUICK, **changes)
    return engine.render(TEXT, latents, settings, autoregressive=autoregressive)


def test_latents_from_real_speech_have_the_models_widths(latents: Latents) -> None:
    assert latents.autoregressive.shape == (1, DIM)
    assert latents.diffusion.shape == (1, 2 * TINY.diffusion["model_channels"])
    for tensor in (latents.autoregressive, latents.diffusion):
        assert tensor.device.type == "cpu" and tensor.dtype == torch.float32
        assert torch.isfinite(tensor).all()


def test_a_long_clip_is_cut_into_pieces_that_all_count(
    engine: Engine, clips: list[np.ndarray], latents: Latents
) -> None:
    long_clip = np.concatenate(clips)[: 20 * 22050]
    whole = engine.conditioning_latents([long_clip])
    start = engine.conditioning_latents([long_clip[:AR_WINDOW]])
    assert whole.autoregressive.shape == latents.autoregressive.shape
    assert whole.diffusion.shape == latents.diffusion.shape
    assert not torch.equal(whole.autoregressive, start.autoregressive)
    assert not torch.equal(whole.diffusion, start.diffusion)


def test_latents_are_deterministic_and_survive_a_round_trip(
    engine: Engine, clips: list[np.ndarray], latents: Latents, tmp_path: Path
) -> None:
    again = engine.conditioning_latents(clips)
    assert torch.equal(again.autoregressive, latents.autoregressive)
    assert torch.equal(again.diffusion, latents.diffusion)
    path = tmp_path / "latents" / "voice.pth"
    latents.save(path)
    loaded = Latents.load(path)
    assert torch.equal(loaded.autoregressive, latents.autoregressive)
    assert torch.equal(loaded.diffusion, latents.diffusion)
    assert [p.name for p in path.parent.iterdir()] == ["voice.pth"]


def test_a_file_that_is_no_latents_file(tmp_path: Path) -> None:
    path = tmp_path / "latents.pth"
    torch.save({"diffusion": torch.zeros(1, 4)}, path)
    with pytest.raises(BadCheckpoint, match="not a voicedrop latents file"):
        Latents.load(path)
    torch.save({"autoregressive": torch.zeros(1, 4), "diffusion": [1, 2]}, path)
    with pytest.raises(BadCheckpoint, match="not a voicedrop latents file"):
        Latents.load(path)


def test_univnet_mel_matches_tortoises(engine: Engine) -> None:
    """The diffusion conditioning mel is computed with torch.stft instead of tortoise's
    TacotronSTFT (whose set-up inverts a 1026x1024 matrix); the numbers must agree."""
    from threadpoolctl import threadpool_limits
    from tortoise.utils.audio import wav_to_univnet_mel

    wave = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, 24000).astype(np.float32))
    with threadpool_limits(1):  # numpy's BLAS threads fight torch's on small machines
        expected = wav_to_univnet_mel(wave.unsqueeze(0), do_normalization=False, device="cpu")
    assert torch.allclose(engine._univnet_mel(wave), expected[0], atol=1e-4)


def test_render_gives_finite_float32_speech_at_24_khz(engine: Engine, latents: Latents) -> None:
    stages: list[tuple[str, float]] = []
    audio = engine.render(TEXT, latents, QUICK, on_progress=lambda *step: stages.append(step))
    assert Engine.SAMPLE_RATE == 24000
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert 0.2 < audio.size / Engine.SAMPLE_RATE <= MAX_SECONDS * 1.1
    names = [name for name, _ in stages]
    assert names[0] == "autoregressive" and names[-1] == "done"
    assert {"clvp", "diffusion"} <= set(names)
    assert [f for name, f in stages if name == "diffusion"][-1] == 1.0


def test_same_seed_same_audio_other_seed_other_audio(engine: Engine, latents: Latents) -> None:
    first = render(engine, latents, seed=7)
    assert np.array_equal(first, render(engine, latents, seed=7))
    assert not np.array_equal(first, render(engine, latents, seed=8))


def test_diffusion_temperature_scales_only_the_diffusion_noise(
    engine: Engine, latents: Latents
) -> None:
    """The same seed draws the same candidates; only the diffusion decoder's starting noise
    (tortoise's randn * diffusion_temperature) changes, which hifigan never uses."""
    assert QUICK.diffusion_temperature == 1.0
    assert not np.array_equal(
        render(engine, latents), render(engine, latents, diffusion_temperature=0.5)
    )
    hifigan = render(engine, latents, decoder="hifigan")
    assert np.array_equal(
        hifigan, render(engine, latents, decoder="hifigan", diffusion_temperature=0.5)
    )


def test_hifigan_decoder(engine: Engine, latents: Latents) -> None:
    audio = render(engine, latents, decoder="hifigan")
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    assert 0.2 < audio.size / Engine.SAMPLE_RATE <= MAX_SECONDS * 1.1
    assert np.array_equal(audio, render(engine, latents, decoder="hifigan"))


@pytest.mark.parametrize("decoder", ["diffusion", "hifigan"])
def test_voicedrops_sampler_renders_what_tortoises_inference_speech_renders(
    engine: Engine, tiny_models: Path, latents: Latents, decoder: str
) -> None:
    """The default sampler draws the same codes on a CPU, so the audio is bit for bit the
    same; 10 candidates take two batches of CPU_BATCH and the rest."""
    assert engine.sampler == "voicedrop"
    tortoise = Engine(tiny_models, device="cpu", sampler="tortoise")
    settings = dataclasses.replace(QUICK, decoder=decoder, candidates=10, seed=3)
    assert np.array_equal(
        engine.render(TEXT, latents, settings), tortoise.render(TEXT, latents, settings)
    )


def test_an_unknown_sampler_is_refused(tiny_models: Path) -> None:
    with pytest.raises(ValueError, match="voicedrop or tortoise"):
        Engine(tiny_models, device="cpu", sampler="beam")


def test_a_fine_tuned_autoregressive_model_replaces_the_base_one(
    engine: Engine, latents: Latents, fine_tune: Path, tiny_models: Path
) -> None:
    files = engine.model_files(autoregressive=fine_tune)
    assert files["autoregressive.pth"] == fine_tune
    assert files["clvp2.pth"] == tiny_models / "clvp2.pth"
    assert set(engine.model_files(decoder="hifigan")) == {"autoregressive.pth", "hifidecoder.pth"}
    base = render(engine, latents)
    tuned = render(engine, latents, autoregressive=fine_tune)
    assert not np.array_equal(base, tuned)
    assert np.array_equal(base, render(engine, latents))


def test_latents_come_from_the_autoregressive_model_asked_for(
    engine: Engine, clips: list[np.ndarray], latents: Latents, fine_tune: Path
) -> None:
    tuned = engine.conditioning_latents(clips[:1], autoregressive=fine_tune)
    base = engine.conditioning_latents(clips[:1])
    assert not torch.equal(tuned.autoregressive, base.autoregressive)
    assert torch.equal(tuned.diffusion, base.diffusion)


def test_a_fine_tune_retrained_in_place_is_reloaded(
    engine: Engine, latents: Latents, tmp_path: Path, fine_tune: Path, tiny_models: Path
) -> None:
    path = tmp_path / "voice" / "autoregressive.pth"
    path.parent.mkdir()
    shutil.copy(fine_tune, path)
    before = render(engine, latents, autoregressive=path)
    shutil.copy(tiny_models / "autoregressive.pth", path)
    assert np.array_equal(render(engine, latents, autoregressive=path), render(engine, latents))
    assert not np.array_equal(before, render(engine, latents, autoregressive=path))


def test_a_fine_tune_that_is_gone(engine: Engine, latents: Latents, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        render(engine, latents, autoregressive=tmp_path / "autoregressive.pth")


def test_text_limits(engine: Engine, latents: Latents) -> None:
    assert engine.max_text_tokens == TINY.autoregressive["max_text_tokens"] - 4
    assert 0 < engine.text_token_count(TEXT) <= engine.max_text_tokens
    too_long = " ".join([TEXT] * 14)
    assert engine.text_token_count(too_long) > engine.max_text_tokens
    with pytest.raises(ValueError, match="tokens long"):
        engine.render(too_long, latents, QUICK)
    with pytest.raises(ValueError, match="nothing to say"):
        engine.render("", latents, QUICK)


def test_the_released_length_limits_fit_the_model(tiny_models: Path, tmp_path: Path) -> None:
    """The most text and the most codes a render allows, at the tiny set's released
    max_text_tokens and max_mel_tokens: no position embedding runs out. The folder holds only
    what the hifigan decoder needs (tortoise's fast API): no clvp2.pth, no diffusion model."""
    assert TINY.autoregressive["max_text_tokens"] == 402
    assert TINY.autoregressive["max_mel_tokens"] == 604
    for name in ("autoregressive.pth", "hifidecoder.pth", "spec.json"):
        shutil.copy(tiny_models / name, tmp_path)
    engine = Engine(tmp_path, device="cpu")
    text = "a" * 40
    while engine.text_token_count(text + " a") <= engine.max_text_tokens:
        text += " a"
    assert engine.text_token_count(text) == engine.max_text_tokens == 398
    latents = engine.conditioning_latents([np.full(22050, 0.01, np.float32)], diffusion=False)
    assert latents.diffusion is None
    settings = dataclasses.replace(QUICK, decoder="hifigan", max_mel_tokens=10_000)
    assert engine.generation_length(settings) == 602  # capped by the model's own limit
    assert engine.generation_length(GenerationSettings()) == 500  # tortoise's default
    audio = engine.render(text, latents, settings)
    assert audio.size / Engine.SAMPLE_RATE > 25  # random weights never stop: 602 codes
    with pytest.raises(WeightsMissing):
        engine.render(TEXT, latents, dataclasses.replace(QUICK, decoder="diffusion"))


def test_the_generation_limit_bounds_the_audio(engine: Engine, latents: Latents) -> None:
    short = render(engine, latents, max_mel_tokens=10)
    longer = render(engine, latents, max_mel_tokens=30)
    assert short.size / Engine.SAMPLE_RATE <= 12 * 1024 / 22050 * 1.1
    assert longer.size > 2 * short.size


def test_clvp_ranking_matches_tortoise(engine: Engine) -> None:
    """Candidates of different lengths (some stop early, some carry calm codes): the engine
    picks the candidate tortoise api.py tts() picks with its own steps (pad each batch with the
    stop code to max_mel_tokens, fix_autoregressive_output, CLVP per batch, topk)."""
    import torch.nn.functional as F
    from tortoise.api import fix_autoregressive_output

    engine.load()
    stop, length = 8193, 46
    generator = torch.Generator().manual_seed(3)
    batches = []
    for stops in ((12, 30, None, 20), (40, None, 8, 25), (18, 33, 44, None)):
        batch = torch.randint(0, 8192, (len(stops), 45), generator=generator)
        for row, at in enumerate(stops):
            if at is not None:
                batch[row, at - 3 : at] = 83  # calm codes before the stop
                batch[row, at:] = stop
        batches.append(batch[:, : max(at or 45 for at in stops)])
    tokens = engine._text_tokens(TEXT)
    clvp = engine._loaded("clvp2.pth")

    def tortoise_best(pad_to: int) -> torch.Tensor:
        samples, scores = [], []
        for raw in batches:
            codes = F.pad(raw, (0, pad_to - raw.shape[1]), value=stop)
            for i in range(codes.shape[0]):
                codes[i] = fix_autoregressive_output(codes[i], stop, complain=False)
            scores.append(clvp(tokens.repeat(codes.shape[0], 1), codes, return_loss=False))
            samples.append(codes)
        return torch.cat(samples)[torch.topk(torch.cat(scores), k=1).indices]

    from daemon.tts.engine import pad_and_fix

    with torch.no_grad():
        chosen = engine._rank(pad_and_fix(batches, length, stop), tokens, lambda *_: None)
        expected = tortoise_best(length)
        assert torch.equal(chosen, expected)
        # the padding length matters: padded elsewhere, tortoise would pick another candidate
        assert not torch.equal(tortoise_best(length + 300)[:, :length], expected)


def test_conditioning_audio_is_clamped_like_tortoise(engine: Engine, clips) -> None:
    loud = clips[0] * 4
    assert np.abs(loud).max() > 1
    for method in ("voicedrop", "tortoise"):
        hot = engine.conditioning_latents([loud], method=method)
        clamped = engine.conditioning_latents([np.clip(loud, -1, 1)], method=method)
        assert torch.equal(hot.autoregressive, clamped.autoregressive)
        assert torch.equal(hot.diffusion, clamped.diffusion)


def test_tortoise_latents_follow_get_conditioning_latents(engine: Engine, clips) -> None:
    """tts.latents tortoise: api.py's steps on the same clips with the same seed give the same
    latents (one random 6 s crop per clip for the AR, the first 102400 samples at 24 kHz of
    each clip for diffusion); voicedrop's own method (every second of every clip) differs."""
    import random

    import torchaudio
    from tortoise.api import format_conditioning, pad_or_truncate
    from tortoise.utils.audio import wav_to_univnet_mel

    voice = [np.concatenate(clips)[: 9 * 22050], clips[1][: 3 * 22050]]  # one long, one short
    ours = engine.conditioning_latents(voice, method="tortoise", seed=5)
    waves = [torch.from_numpy(clip).unsqueeze(0) for clip in voice]
    random.seed(5)
    with torch.no_grad():
        conds = torch.stack([format_conditioning(w, device="cpu") for w in waves], dim=1)
        auto = engine._loaded("autoregressive.pth").get_conditioning(conds)
        mels = [
            wav_to_univnet_mel(
                pad_or_truncate(torchaudio.functional.resample(w, 22050, 24000), 102400),
                do_normalization=False,
                device="cpu",
            )
            for w in waves
        ]
        diffusion = engine._loaded("diffusion_decoder.pth").get_conditioning(torch.stack(mels, 1))
    assert torch.allclose(ours.autoregressive, auto, atol=1e-5)
    assert torch.allclose(ours.diffusion, diffusion, atol=1e-4)
    again = engine.conditioning_latents(voice, method="tortoise", seed=5)
    assert torch.equal(again.autoregressive, ours.autoregressive)
    other_crop = engine.conditioning_latents(voice, method="tortoise", seed=6)
    assert not torch.equal(other_crop.autoregressive, ours.autoregressive)
    assert torch.equal(other_crop.diffusion, ours.diffusion)
    own = engine.conditioning_latents(voice)
    assert not torch.equal(own.autoregressive, ours.autoregressive)
    with pytest.raises(ValueError, match="unknown latents method"):
        engine.conditioning_latents(voice, method="random")


def test_hifidecoder_tolerates_extra_entries_but_not_missing_keys(
    tiny_models: Path, tmp_path: Path, latents: Latents
) -> None:
    """As api_fast.py loads it (strict=False), for this file only: extra keys and non-tensor
    entries are skipped; a missing key still refuses the file, naming the key."""
    for name in ("autoregressive.pth", "spec.json"):
        shutil.copy(tiny_models / name, tmp_path)
    state = torch.load(tiny_models / "hifidecoder.pth", weights_only=True)
    extra = {**state, "speaker_encoder.weight": torch.zeros(3), "epoch": 12, "note": "release"}
    save_checkpoint(extra, tmp_path / "hifidecoder.pth")
    engine = Engine(tmp_path, device="cpu")
    settings = dataclasses.replace(QUICK, decoder="hifigan")
    reference = Engine(tiny_models, device="cpu").render(TEXT, latents, settings)
    assert np.array_equal(engine.render(TEXT, latents, settings), reference)
    removed = sorted(state)[0]
    save_checkpoint({k: v for k, v in extra.items() if k != removed}, tmp_path / "hifidecoder.pth")
    with pytest.raises(BadCheckpoint, match=f"missing keys: {removed}"):
        Engine(tmp_path, device="cpu").render(TEXT, latents, settings)
    extra_ar = {**torch.load(tiny_models / "autoregressive.pth", weights_only=True), "epoch": 1}
    save_checkpoint(extra_ar, tmp_path / "autoregressive.pth")
    shutil.copy(tiny_models / "hifidecoder.pth", tmp_path)
    with pytest.raises(BadCheckpoint, match="unexpected keys: epoch"):
        Engine(tmp_path, device="cpu").render(TEXT, latents, settings)


def test_release_drops_the_models_and_the_next_render_reloads(
    tiny_models: Path, latents: Latents
) -> None:
    engine = Engine(tiny_models, device="auto")
    assert not engine.loaded
    first = render(engine, latents)
    assert engine.loaded
    engine.release()
    assert not engine.loaded
    assert np.array_equal(first, render(engine, latents))


def test_without_weights_loading_says_which_files_are_missing(
    tmp_path: Path, tiny_models: Path, latents: Latents
) -> None:
    shutil.copy(tiny_models / "spec.json", tmp_path)
    shutil.copy(tiny_models / "autoregressive.pth", tmp_path)
    engine = Engine(tmp_path, device="cpu")
    with pytest.raises(WeightsMissing) as raised:
        engine.render(TEXT, latents, QUICK)
    assert raised.value.missing == ["clvp2.pth", "diffusion_decoder.pth", "vocoder.pth"]
    assert raised.value.directory == tmp_path
    with pytest.raises(WeightsMissing) as raised:
        engine.load(decoder="hifigan")
    assert raised.value.missing == ["hifidecoder.pth"]
    assert not engine.loaded


def test_presets_follow_tortoise() -> None:
    assert GenerationSettings() == GenerationSettings(preset="fast")
    ultra = GenerationSettings(preset="ultra_fast", seed=3)
    assert (ultra.candidates, ultra.diffusion_iterations, ultra.cond_free) == (16, 30, False)
    assert ultra.seed == 3
    assert GenerationSettings(preset="high_quality").diffusion_iterations == 400
    assert GenerationSettings(preset="standard", candidates=4).candidates == 4
    with pytest.raises(ValueError, match="unknown preset"):
        GenerationSettings(preset="turbo")
    assert typing.get_args(Preset) == tuple(PRESETS)
    unset = {f.name for f in dataclasses.fields(GenerationKnobs) if f.default is None}
    assert all(set(values) == unset - {"diffusion_iterations"} for values in PRESETS.values())
    samplers = set(typing.get_args(DiffusionSampler))
    assert all(set(steps) == samplers for steps in DIFFUSION_STEPS.values())  # by sampler
    assert set(DIFFUSION_STEPS) == set(PRESETS)


def test_cached_latents_are_computed_once_per_clip_set_models_and_method(
    engine: Engine, tmp_path: Path
) -> None:
    """daemon.tts.latents over a real voice folder: the cache key follows the clips, the
    latent models and the method (the seed only for tortoise's random crops)."""
    from daemon.core.paths import Root
    from daemon.tts.latents import NoClips, cached_latents

    voice = Root.at(tmp_path).voice("tom")
    models = {"autoregressive.pth": "a" * 64, "diffusion_decoder.pth": "d" * 64, "clvp2.pth": "c"}
    with pytest.raises(NoClips, match=r"drop a few clips of the voice into inbox/tom/"):
        cached_latents(engine, voice, models, None)
    write_wav(voice.clips / "1.wav", 2.0, seed=1)  # short clips: latents in about a second
    write_wav(voice.clips / "2.wav", 2.0, seed=2)

    first, key, seconds = cached_latents(engine, voice, models, None)
    assert seconds > 0 and first.diffusion is not None
    assert [p.name for p in voice.latents.glob("*.pth")] == [f"{key}.pth"]
    again, same_key, no_seconds = cached_latents(engine, voice, models, None)
    assert (same_key, no_seconds) == (key, 0.0)
    assert torch.equal(again.autoregressive, first.autoregressive)

    other_clvp = cached_latents(engine, voice, {**models, "clvp2.pth": "x"}, None)[1]
    assert other_clvp == key, "the CLVP does not compute latents: no new ones for it"
    fine_tuned = cached_latents(engine, voice, {**models, "autoregressive.pth": "f" * 64}, None)
    assert fine_tuned[1] != key and fine_tuned[2] > 0
    write_wav(voice.clips / "3.wav", 1.5, seed=3)
    more_clips = cached_latents(engine, voice, models, None)
    assert more_clips[1] not in (key, fine_tuned[1]) and more_clips[2] > 0
    assert [p.name for p in voice.latents.glob("*.pth")] == [f"{more_clips[1]}.pth"]

    hifigan = {"autoregressive.pth": "a" * 64}  # no diffusion model: no diffusion latent
    assert cached_latents(engine, voice, hifigan, None)[0].diffusion is None
    seeds = {
        (method, seed): cached_latents(engine, voice, hifigan, None, method, seed)[1]
        for method in ("voicedrop", "tortoise")
        for seed in (0, 1)
    }
    assert seeds["voicedrop", 0] == seeds["voicedrop", 1]
    assert seeds["tortoise", 0] != seeds["tortoise", 1] != seeds["voicedrop", 0]
