"""Sampling TorToiSe's diffusion decoder: tortoise's own sampler, DDIM and DPM-Solver++(2M).

The decoder was trained on tortoise's linear beta schedule over 4000 steps to predict the
noise (its first 100 output channels; the other 100 are a learned variance only the `p`
sampler uses). `p` is tortoise's ancestral sampler, run by tortoise's own code so renders
stay what they were. `ddim` (Song et al. 2021, eta 0) and `dpm++2m` (Lu et al. 2022,
DPM-Solver++(2M)) solve the probability-flow ODE of the same respaced schedule from the same
starting noise: no random draws after it, and (as tortoise-tts-fast found by ear on the
released weights) fewer steps for the same quality. All three
guide the model the way tortoise's p_mean_variance does: the unconditioned output mixed in
with a weight ramped by the step, and the predicted clean mel clamped to [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from daemon.tts.generation import TRAINED_DIFFUSION_STEPS

if TYPE_CHECKING:
    import torch

MEL_CHANNELS = 100  # the decoder's in_channels; its out_channels are twice that

# the noise the solver's model predicts for x at a step of the schedule (its index)
NoisePredictor = Callable[["torch.Tensor", int], "torch.Tensor"]
OnStep = Callable[[int], None]  # steps done so far


@dataclass(frozen=True)
class Schedule:
    """The steps tortoise keeps of the 4000 trained ones (space_timesteps) and the
    cumulative alpha (alpha-bar) at each, in float64 as tortoise computes them."""

    timesteps: tuple[int, ...]  # trained step numbers, ascending
    alphas_cumprod: tuple[float, ...]

    @classmethod
    def spaced(cls, steps: int) -> Schedule:
        from tortoise.utils.diffusion import get_named_beta_schedule, space_timesteps

        if not 2 <= steps <= TRAINED_DIFFUSION_STEPS:
            raise ValueError(f"diffusion steps must be 2-{TRAINED_DIFFUSION_STEPS}, got {steps}")
        kept = sorted(space_timesteps(TRAINED_DIFFUSION_STEPS, [steps]))
        trained = np.cumprod(1.0 - get_named_beta_schedule("linear", TRAINED_DIFFUSION_STEPS))
        return cls(tuple(kept), tuple(float(trained[step]) for step in kept))

    def __len__(self) -> int:
        return len(self.timesteps)

    def alpha(self, index: int) -> float:
        """sqrt(alpha-bar): how much of the clean mel is left at this step (1 after the last)."""
        return math.sqrt(self.alphas_cumprod[index]) if index >= 0 else 1.0

    def sigma(self, index: int) -> float:
        """sqrt(1 - alpha-bar): how much noise there is at this step (0 after the last)."""
        return math.sqrt(1.0 - self.alphas_cumprod[index]) if index >= 0 else 0.0

    def log_snr(self, index: int) -> float:
        """lambda = log(alpha / sigma), the time DPM-Solver steps in."""
        return math.log(self.alpha(index) / self.sigma(index))


def guidance_weight(cond_free_k: float, index: int, steps: int) -> float:
    """tortoise's ramp (p_mean_variance, ramp_conditioning_free): no guidance at the first,
    noisiest step, growing to almost cond_free_k at the last."""
    return cond_free_k * (1 - index / steps)


def decoder_noise(
    model: torch.nn.Module,
    aligned: torch.Tensor,
    schedule: Schedule,
    cond_free: bool,
    cond_free_k: float,
) -> NoisePredictor:
    """The decoder's predicted noise at a step of `schedule`, guided as tortoise guides it:
    the model called with the trained step number and the precomputed aligned embeddings,
    and with conditioning_free=True for the unconditioned branch."""
    import torch

    def predict(x: torch.Tensor, index: int) -> torch.Tensor:
        steps = torch.full((x.shape[0],), schedule.timesteps[index], device=x.device)
        conditioned = model(x, steps, precomputed_aligned_embeddings=aligned)[:, :MEL_CHANNELS]
        if not cond_free:
            return conditioned
        free = model(x, steps, precomputed_aligned_embeddings=aligned, conditioning_free=True)
        weight = guidance_weight(cond_free_k, index, len(schedule))
        return (1 + weight) * conditioned - weight * free[:, :MEL_CHANNELS]

    return predict


def clean_estimate(
    x: torch.Tensor, noise: torch.Tensor, schedule: Schedule, index: int
) -> torch.Tensor:
    """The clean mel implied by the predicted noise, clamped to [-1, 1] as tortoise's
    clip_denoised does (the mel is normalised to that range)."""
    return ((x - schedule.sigma(index) * noise) / schedule.alpha(index)).clamp(-1, 1)


def first_order_step(
    x: torch.Tensor, clean: torch.Tensor, schedule: Schedule, index: int
) -> torch.Tensor:
    """From step `index` to `index - 1` with the clean estimate held fixed: DDIM with
    eta 0, which is also DPM-Solver++'s first-order update. After the last step (index 0)
    it is the clean estimate itself."""
    ratio = schedule.sigma(index - 1) / schedule.sigma(index)
    return ratio * x + (schedule.alpha(index - 1) - ratio * schedule.alpha(index)) * clean


def sample_ddim(
    predict: NoisePredictor, noise: torch.Tensor, schedule: Schedule, on_step: OnStep
) -> torch.Tensor:
    """DDIM (eta 0) from the starting noise over every step of `schedule`."""
    x = noise
    for done, index in enumerate(reversed(range(len(schedule))), 1):
        x = first_order_step(
            x, clean_estimate(x, predict(x, index), schedule, index), schedule, index
        )
        on_step(done)
    return x


def sample_dpmpp_2m(
    predict: NoisePredictor, noise: torch.Tensor, schedule: Schedule, on_step: OnStep
) -> torch.Tensor:
    """DPM-Solver++(2M): each step's clean estimate extrapolated with the previous one's
    (second order in log-SNR time). The first step has no previous estimate; the last two
    are first-order: on tortoise's spacing the step onto trained step 0 spans most of the
    log-SNR range, where extrapolating overshoots (Lu et al.'s lower_order_final), and the
    step after it only denoises."""
    x, previous = noise, None
    for done, index in enumerate(reversed(range(len(schedule))), 1):
        clean = clean_estimate(x, predict(x, index), schedule, index)
        if previous is None or index <= 1:
            x = first_order_step(x, clean, schedule, index)
        else:
            step = schedule.log_snr(index - 1) - schedule.log_snr(index)
            last = schedule.log_snr(index) - schedule.log_snr(index + 1)
            half_ratio = 1 / (2 * last / step)
            x = first_order_step(
                x, (1 + half_ratio) * clean - half_ratio * previous, schedule, index
            )
        previous = clean
        on_step(done)
    return x


ODE_SOLVERS = {"ddim": sample_ddim, "dpm++2m": sample_dpmpp_2m}


def sample_mel(
    sampler: str,
    model: torch.nn.Module,
    aligned: torch.Tensor,
    noise: torch.Tensor,
    *,
    steps: int,
    cond_free: bool,
    cond_free_k: float,
    on_step: OnStep,
) -> torch.Tensor:
    """The decoder's normalised mel for `aligned` (its timestep_independent embeddings),
    from `noise`, with `steps` steps of `sampler`."""
    if sampler == "p":
        return _tortoise_p(model, aligned, noise, steps, cond_free, cond_free_k, on_step)
    solver = ODE_SOLVERS.get(sampler)
    if solver is None:
        raise ValueError(f"unknown diffusion sampler {sampler!r}: use p, ddim or dpm++2m")
    schedule = Schedule.spaced(steps)
    predict = decoder_noise(model, aligned, schedule, cond_free, cond_free_k)
    return solver(predict, noise, schedule, on_step)


def _tortoise_p(
    model: torch.nn.Module,
    aligned: torch.Tensor,
    noise: torch.Tensor,
    steps: int,
    cond_free: bool,
    cond_free_k: float,
    on_step: OnStep,
) -> torch.Tensor:
    """tortoise's p_sample_loop as api.py's do_spectrogram_diffusion runs it: each step
    draws fresh noise from torch's global generator and uses the learned variance."""
    from tortoise.api import load_discrete_vocoder_diffuser

    diffuser = load_discrete_vocoder_diffuser(
        desired_diffusion_steps=steps, cond_free=cond_free, cond_free_k=cond_free_k
    )
    mel = noise
    for done, output in enumerate(
        diffuser.p_sample_loop_progressive(
            model,
            tuple(noise.shape),
            noise=noise,
            model_kwargs={"precomputed_aligned_embeddings": aligned},
        ),
        1,
    ):
        mel = output["sample"]
        on_step(done)
    return mel
