"""Diffusion samplers and half precision (issue 14), side by side in one run, on the CPU.

The decoder is TorToiSe's DiffusionTts with random weights, at the tiny set's dims and (for
precision, a few steps only) at the released dims; the same speech latents, conditioning
and starting noise go into every row.

1. Samplers at the tiny dims: p (tortoise's) at 80 and 200 steps against ddim and dpm++2m
   at fewer steps, with classifier-free guidance as the fast preset has it (k 2). Each row:
   seconds, model calls, and its distance to p@200, to p@200 from other noise (how far two
   p samples lie apart: the floor for any comparison with p) and to what the ODE solvers
   converge to (dpm++2m@200). Distances: relative L2 of the normalised mel, and the mean
   absolute difference of the log mel (natural log units).
2. Precision: dpm++2m run in float32 and with the decoder's own mixed precision
   (DiffusionTts.enable_fp16: every layer but the first under autocast) in bfloat16 and
   float16, then UnivNet under the same autocast; relative L2 error against float32 of
   the mel, of the wave UnivNet makes of the float32 mel in half precision ("vocoder"),
   of the wave of the half mel in half precision ("both") and of the wave float32 UnivNet
   makes of the half mel ("mel only": the decoder alone in half precision).

Random weights say nothing about how good the audio sounds; they do say how far the
samplers' answers lie apart and how much half precision moves the numbers.

    python -m bench.diffusion_bench [--quick] [--precision-only]

Prints tables and writes bench/out/diffusion.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tortoise.utils.audio import denormalize_tacotron_mel

from bench.common import describe_machine, text_table
from daemon.tts.checkpoints import build_diffusion, build_vocoder
from daemon.tts.diffusion import sample_mel
from daemon.tts.spec import ModelSpec

OUT = Path(__file__).parent / "out"
CODES = 12  # speech latents of about 0.56 s (52 mel frames): the CPU is shared
CODE_FRAMES = CODES * 4 * 24000 // 22050
SAMPLER_ROWS = [
    ("p", 80),
    ("p", 200),
    ("ddim", 10),
    ("ddim", 20),
    ("ddim", 30),
    ("ddim", 60),
    ("dpm++2m", 10),
    ("dpm++2m", 20),
    ("dpm++2m", 30),
    ("dpm++2m", 50),
]
ODE_REFERENCE = ("dpm++2m", 200)


def decoder_inputs(spec: ModelSpec) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """The decoder and vocoder with seeded random weights, and the decoder's embeddings of
    seeded random speech latents and conditioning."""
    torch.manual_seed(0)
    decoder, vocoder = build_diffusion(spec).eval(), build_vocoder(spec)
    vocoder.eval(inference=True)
    speech = torch.randn(1, CODES, spec.diffusion["in_latent_channels"])
    conditioning = torch.randn(1, 2 * spec.diffusion["model_channels"])
    with torch.no_grad():
        aligned = decoder.timestep_independent(speech, conditioning, CODE_FRAMES, False)
    return decoder, vocoder, aligned


def noise(seed: int) -> torch.Tensor:
    return torch.randn(1, 100, CODE_FRAMES, generator=torch.Generator().manual_seed(seed))


def run(
    decoder: torch.nn.Module, aligned: torch.Tensor, sampler: str, steps: int, seed: int = 0
) -> tuple[torch.Tensor, float, int]:
    """The normalised mel, seconds and model calls of one sampling run."""
    calls = 0

    def count(module: Any, args: Any, output: Any) -> None:
        nonlocal calls
        calls += 1

    hook = decoder.register_forward_hook(count)
    torch.manual_seed(seed)  # the p sampler's fresh noise at every step
    started = time.perf_counter()
    with torch.no_grad():
        mel = sample_mel(
            sampler,
            decoder,
            aligned,
            noise(seed),
            steps=steps,
            cond_free=True,
            cond_free_k=2.0,
            on_step=lambda done: None,
        )
    seconds = time.perf_counter() - started
    hook.remove()
    return mel, seconds, calls


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def log_mel_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((denormalize_tacotron_mel(a) - denormalize_tacotron_mel(b)).abs().mean())


def sampler_table(quick: bool) -> list[dict[str, Any]]:
    decoder, _, aligned = decoder_inputs(ModelSpec.tiny())
    reference, _, _ = run(decoder, aligned, "p", 200)
    other_noise, _, _ = run(decoder, aligned, "p", 200, seed=1)
    ode, _, _ = run(decoder, aligned, *ODE_REFERENCE)
    rows = []
    for sampler, steps in SAMPLER_ROWS[::3] if quick else SAMPLER_ROWS:
        mel, seconds, calls = run(decoder, aligned, sampler, steps)
        rows.append(
            {
                "sampler": sampler,
                "steps": steps,
                "model_calls": calls,
                "seconds": seconds,
                "relative_to_p200": relative(mel, reference),
                "log_mel_to_p200": log_mel_distance(mel, reference),
                "relative_to_ode": relative(mel, ode),
                "log_mel_to_ode": log_mel_distance(mel, ode),
            }
        )
    rows.append(
        {
            "sampler": "p, other noise",
            "steps": 200,
            "relative_to_p200": relative(other_noise, reference),
            "log_mel_to_p200": log_mel_distance(other_noise, reference),
            "relative_to_ode": relative(other_noise, ode),
            "log_mel_to_ode": log_mel_distance(other_noise, ode),
        }
    )
    return rows


@contextlib.contextmanager
def precision(decoder: torch.nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """The decoder's mixed precision in `dtype` (None: float32), as CUDA would run it with
    float16: enable_fp16 puts every layer but the first under autocast."""
    if dtype is None:
        yield
        return
    default = torch.get_autocast_dtype("cpu")
    torch.set_autocast_dtype("cpu", dtype)
    decoder.enable_fp16 = True
    try:
        yield
    finally:
        decoder.enable_fp16 = False
        torch.set_autocast_dtype("cpu", default)


def vocode(vocoder: torch.nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """UnivNet's wave of a normalised mel, with the same noise every time: its inference
    draws its noise input from torch's global generator."""
    torch.manual_seed(0)
    return vocoder.inference(denormalize_tacotron_mel(mel))


def precision_table(quick: bool) -> list[dict[str, Any]]:
    sizes = [("tiny", ModelSpec.tiny(), 20)]
    if not quick:
        sizes.append(("released", ModelSpec.released(), 3))
    rows = []
    for name, spec, steps in sizes:
        decoder, vocoder, aligned = decoder_inputs(spec)
        with torch.no_grad():
            mel32, seconds32, _ = run(decoder, aligned, "dpm++2m", steps)
            wave32 = vocode(vocoder, mel32)
            for dtype in (torch.bfloat16, torch.float16):
                with precision(decoder, dtype):
                    mel, seconds, _ = run(decoder, aligned, "dpm++2m", steps)
                with torch.autocast("cpu", dtype=dtype):
                    vocoded, wave = vocode(vocoder, mel32), vocode(vocoder, mel)
                engine_wave = vocode(vocoder, mel)
                rows.append(
                    {
                        "dims": name,
                        "steps": steps,
                        "dtype": str(dtype).removeprefix("torch."),
                        "mel_relative": relative(mel, mel32),
                        "mel_log_distance": log_mel_distance(mel, mel32),
                        "vocoder_wave_relative": relative(vocoded, wave32),
                        "wave_relative": relative(wave, wave32),
                        "wave_float32_vocoder_relative": relative(engine_wave, wave32),
                        "seconds_float32": seconds32,
                        "seconds": seconds,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows, tiny dims only")
    parser.add_argument("--precision-only", action="store_true", help="skip the samplers")
    args = parser.parse_args()
    quick = args.quick
    machine = describe_machine(torch=torch.__version__, threads=torch.get_num_threads())
    samplers = [] if args.precision_only else sampler_table(quick)
    print(
        text_table(
            [
                ("sampler", "steps", "calls", "seconds", "rel p@200", "logmel p@200", "rel ODE"),
                *(
                    (
                        row["sampler"],
                        str(row["steps"]),
                        str(row.get("model_calls", "")),
                        f"{row['seconds']:.2f}" if "seconds" in row else "",
                        f"{row['relative_to_p200']:.3f}",
                        f"{row['log_mel_to_p200']:.3f}",
                        f"{row['relative_to_ode']:.4f}",
                    )
                    for row in samplers
                ),
            ]
        )
    )
    precisions = precision_table(quick)
    print(
        text_table(
            [
                ("dims", "steps", "dtype", "mel", "logmel", "vocoder", "both", "mel only"),
                *(
                    (
                        row["dims"],
                        str(row["steps"]),
                        row["dtype"],
                        f"{row['mel_relative']:.2e}",
                        f"{row['mel_log_distance']:.2e}",
                        f"{row['vocoder_wave_relative']:.2e}",
                        f"{row['wave_relative']:.2e}",
                        f"{row['wave_float32_vocoder_relative']:.2e}",
                    )
                    for row in precisions
                ),
            ]
        )
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "diffusion.json").write_text(
        json.dumps(
            {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": machine,
                "samplers": samplers,
                "precision": precisions,
            },
            indent=2,
        ),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
