"""daemon.tts.diffusion: the samplers' maths against exact answers, against tortoise's own
code on the tiny decoder (real classes, random weights, loaded from disk), and renders."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tortoise.api import load_discrete_vocoder_diffuser

from daemon.core.config import (
    ConfigError,
    Settings,
    TtsSettings,
    load_settings,
    load_voice_settings,
    text_settings,
)
from daemon.tts.checkpoints import build_diffusion, load_strict
from daemon.tts.diffusion import (
    Schedule,
    decoder_noise,
    sample_ddim,
    sample_dpmpp_2m,
    sample_mel,
)
from daemon.tts.engine import Engine, GenerationSettings, Latents
from daemon.tts.generation import TRAINED_DIFFUSION_STEPS
from daemon.tts.spec import DIFFUSION_FILE, ModelSpec
from tests.conftest import tortoise_clips

SOLVERS = {"ddim": sample_ddim, "dpm++2m": sample_dpmpp_2m}
TEXT = "The quick brown fox jumps over the lazy dog."
QUICK = GenerationSettings(candidates=2, diffusion_iterations=4, max_mel_tokens=46)


def ignore(done: int) -> None:
    """on_step for callers that do not follow progress."""


@pytest.fixture(scope="module")
def decoder(tiny_models: Path) -> torch.nn.Module:
    model = load_strict(build_diffusion(ModelSpec.tiny()), tiny_models / DIFFUSION_FILE)
    return model.eval()


@pytest.fixture(scope="module")
def aligned(decoder: torch.nn.Module) -> torch.Tensor:
    """The decoder's embeddings of random speech latents: 12 codes, 52 mel frames."""
    generator = torch.Generator().manual_seed(3)
    dims = ModelSpec.tiny().diffusion
    speech = torch.randn(1, 12, dims["in_latent_channels"], generator=generator)
    conditioning = torch.randn(1, 2 * dims["model_channels"], generator=generator)
    with torch.no_grad():
        return decoder.timestep_independent(speech, conditioning, 52, False)


def start_noise(seed: int = 0, frames: int = 52) -> torch.Tensor:
    return torch.randn(1, 100, frames, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("steps", [2, 7, 80, TRAINED_DIFFUSION_STEPS])
def test_the_schedule_is_tortoises_respacing(steps: int) -> None:
    diffuser = load_discrete_vocoder_diffuser(desired_diffusion_steps=steps)
    schedule = Schedule.spaced(steps)
    assert list(schedule.timesteps) == diffuser.timestep_map
    np.testing.assert_allclose(schedule.alphas_cumprod, diffuser.alphas_cumprod, rtol=1e-12)


def test_a_step_count_the_trained_schedule_cannot_hold() -> None:
    for steps in (1, TRAINED_DIFFUSION_STEPS + 1):
        with pytest.raises(ValueError, match="diffusion steps must be 2-4000"):
            Schedule.spaced(steps)


def oracle(schedule: Schedule, clean: torch.Tensor, noise: torch.Tensor):
    """A stand-in noise model that knows the true clean mel (no trained model could): it
    answers the noise that would put `clean` where x is."""

    def predict(x: torch.Tensor, index: int) -> torch.Tensor:
        return (x - schedule.alpha(index) * clean) / schedule.sigma(index)

    return predict


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("steps", [3, 30])
def test_a_solver_told_the_true_noise_recovers_the_clean_mel(name: str, steps: int) -> None:
    schedule = Schedule.spaced(steps)
    clean = torch.rand(1, 100, 40, dtype=torch.float64) * 1.8 - 0.9
    noise = start_noise(1, 40).double()
    first = len(schedule) - 1
    noisy = schedule.alpha(first) * clean + schedule.sigma(first) * noise
    out = SOLVERS[name](oracle(schedule, clean, noise), noisy, schedule, ignore)
    torch.testing.assert_close(out, clean, rtol=0, atol=1e-9)


def gaussian_data(schedule: Schedule, mean: float, spread: float):
    """A stand-in noise model for data that is N(mean, spread²) in every value: its best
    guess of the clean value is known in closed form, and so is where the probability-flow
    ODE takes a starting point (the value keeps its place in the widening normal)."""

    def predict(x: torch.Tensor, index: int) -> torch.Tensor:
        alpha, sigma = schedule.alpha(index), schedule.sigma(index)
        variance = alpha**2 * spread**2 + sigma**2
        clean = mean + alpha * spread**2 / variance * (x - alpha * mean)
        return (x - alpha * clean) / sigma

    def exact(start: torch.Tensor) -> torch.Tensor:
        alpha, sigma = schedule.alpha(len(schedule) - 1), schedule.sigma(len(schedule) - 1)
        return mean + spread * (start - alpha * mean) / math.sqrt(alpha**2 * spread**2 + sigma**2)

    return predict, exact


def ode_error(name: str, steps: int) -> float:
    schedule = Schedule.spaced(steps)
    predict, exact = gaussian_data(schedule, mean=0.1, spread=0.2)
    start = start_noise(2).double()
    truth = exact(start)
    assert truth.abs().max() < 1  # inside the clamp, so the ODE's answer is the answer
    out = SOLVERS[name](predict, start, schedule, ignore)
    return float((out - truth).norm() / truth.norm())


def test_the_solvers_converge_to_the_odes_exact_solution_at_their_order() -> None:
    ddim = {steps: ode_error("ddim", steps) for steps in (100, 200)}
    dpm = {steps: ode_error("dpm++2m", steps) for steps in (100, 200)}
    assert dpm[100] < ddim[100] / 3  # the second-order solver is the better one
    assert 1.7 < ddim[100] / ddim[200] < 2.3  # first order: twice the steps, half the error
    assert dpm[100] / dpm[200] > 3  # second order: about a quarter
    assert ode_error("ddim", TRAINED_DIFFUSION_STEPS) < 3e-3


@pytest.mark.parametrize("cond_free", [True, False])
def test_ddim_is_tortoises_ddim_on_the_tiny_decoder(
    decoder: torch.nn.Module, aligned: torch.Tensor, cond_free: bool
) -> None:
    """tortoise's ddim_sample_loop (eta 0) runs the same guidance ramp and clamp through its
    own p_mean_variance, so it checks how this module calls and guides the model."""
    steps, noise = 6, start_noise(4)
    diffuser = load_discrete_vocoder_diffuser(
        desired_diffusion_steps=steps, cond_free=cond_free, cond_free_k=2.0
    )
    with torch.no_grad():
        theirs = diffuser.ddim_sample_loop(
            decoder,
            tuple(noise.shape),
            noise=noise,
            model_kwargs={"precomputed_aligned_embeddings": aligned},
        )
        schedule = Schedule.spaced(steps)
        predict = decoder_noise(decoder, aligned, schedule, cond_free, 2.0)
        ours = sample_ddim(predict, noise, schedule, ignore)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert not torch.equal(ours, noise)


def test_guidance_changes_the_solvers_output(
    decoder: torch.nn.Module, aligned: torch.Tensor
) -> None:
    def mel(cond_free_k: float) -> torch.Tensor:
        with torch.no_grad():
            return sample_mel(
                "dpm++2m",
                decoder,
                aligned,
                start_noise(5),
                steps=5,
                cond_free=True,
                cond_free_k=cond_free_k,
                on_step=ignore,
            )

    assert torch.equal(mel(0.0), mel(0.0))
    assert not torch.allclose(mel(0.0), mel(2.0), atol=1e-3)


def test_each_step_is_reported_once(decoder: torch.nn.Module, aligned: torch.Tensor) -> None:
    for sampler in ("p", "ddim", "dpm++2m"):
        done: list[int] = []
        with torch.no_grad():
            sample_mel(
                sampler,
                decoder,
                aligned,
                start_noise(),
                steps=3,
                cond_free=False,
                cond_free_k=2.0,
                on_step=done.append,
            )
        assert done == [1, 2, 3], sampler


@pytest.fixture(scope="module")
def engine(tiny_models: Path) -> Engine:
    return Engine(tiny_models, device="cpu")


@pytest.fixture(scope="module")
def latents(engine: Engine) -> Latents:
    clips = [sf.read(path, dtype="float32")[0] for path in tortoise_clips("tom")]
    return engine.conditioning_latents(clips)


@pytest.fixture(scope="module")
def renders(engine: Engine, latents: Latents) -> dict[str, np.ndarray]:
    return {
        sampler: engine.render(TEXT, latents, dataclasses.replace(QUICK, diffusion_sampler=sampler))
        for sampler in ("p", "ddim", "dpm++2m")
    }


def test_every_sampler_renders_finite_audio_of_the_same_length(
    renders: dict[str, np.ndarray],
) -> None:
    lengths = {sampler: audio.shape for sampler, audio in renders.items()}
    assert len(set(lengths.values())) == 1, lengths
    for sampler, audio in renders.items():
        assert audio.dtype == np.float32 and np.isfinite(audio).all(), sampler
    assert not np.array_equal(renders["ddim"], renders["dpm++2m"])
    assert not np.array_equal(renders["p"], renders["ddim"])


def test_a_solver_render_is_reproducible_under_its_seed(
    engine: Engine, latents: Latents, renders: dict[str, np.ndarray]
) -> None:
    settings = dataclasses.replace(QUICK, diffusion_sampler="dpm++2m")
    assert np.array_equal(engine.render(TEXT, latents, settings), renders["dpm++2m"])
    other = engine.render(TEXT, latents, dataclasses.replace(settings, seed=1))
    assert other.shape != renders["dpm++2m"].shape or not np.allclose(other, renders["dpm++2m"])


def test_the_sampler_picks_the_presets_steps_unless_they_are_set() -> None:
    assert GenerationSettings().diffusion_sampler == "p"
    assert GenerationSettings().diffusion_iterations == 80  # tortoise's fast preset
    assert GenerationSettings(diffusion_sampler="dpm++2m").diffusion_iterations == 20
    assert (
        GenerationSettings(preset="ultra_fast", diffusion_sampler="ddim").diffusion_iterations == 15
    )
    chosen = GenerationSettings(diffusion_sampler="ddim", diffusion_iterations=7)
    assert chosen.diffusion_iterations == 7
    with pytest.raises(ValueError, match="unknown diffusion sampler 'euler': use one of p, ddim"):
        GenerationSettings(diffusion_sampler="euler")


def test_front_matter_and_voice_yaml_set_the_sampler(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("tts:\n  diffusion_sampler: ddim\n", encoding="utf-8")
    tts = load_settings(config).tts
    assert tts.generation().diffusion_sampler == "ddim"
    voice = tmp_path / "voice.yaml"
    voice.write_text("tts:\n  diffusion_sampler: p\n", encoding="utf-8")
    assert load_voice_settings(Settings(), voice).tts.diffusion_sampler == "p"
    text = text_settings(tts, {"diffusion_sampler": "dpm++2m"}, tmp_path / "a.txt")
    assert text.generation() == GenerationSettings(diffusion_sampler="dpm++2m")
    with pytest.raises(ConfigError, match=r"front matter\.diffusion_sampler: expected one of"):
        text_settings(TtsSettings(), {"diffusion_sampler": "dpm"}, tmp_path / "a.txt")
