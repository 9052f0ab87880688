"""Fine-tuning speed and memory options (issue 14): steps/s and peak memory of one optimizer
step of ai-voice-cloning's batch (128 lines) for fp32 / bf16 and gradient checkpointing off /
on, each against a bare PyTorch loop of the same model, side by side in one run.

Production side: what `train_voice` runs for a step, from its own functions: the AR built by
`training_spec` (checkpointing), `resolve_precision`, `build_optimizer` (fused AdamW),
`grad_scaler`, the micro-batch from `memory_cap` (free CUDA memory
through daemon.training.memory; 4 lines on the CPU) and `optimizer_step` (accumulation over
micro-batches, clip, step). Bare side: the same step written out in plain PyTorch (per
micro-batch autocast, forward, backward; then clip and step). Both step one model with one
optimizer in turn, ABBA after WARMUP steps each, so they meet the same weights, optimizer
state and load on the box; what differs is only each side's own code.

The lines are made up, not a voice's: random tokens, audio and codes of a spread of lengths
(what a step costs depends on the lengths, not on what the lines say), collated by train.py's
`collate`. The weights are random, in the released shapes: speed and memory do not depend on
their values, and the released file may not be there. Peak memory is
`torch.cuda.max_memory_allocated` during a step (weights, optimizer state, activations), set
against the ~16 GB DL-Art-School recorded on a 3090 for this batch and against
daemon.training.memory's estimate.

    python -m bench.train_gpu_bench            # CUDA: released dims
    python -m bench.train_gpu_bench --cpu      # the harness at reduced dims on the CPU

Prints a table and writes bench/out/train_gpu.json (train_gpu_cpu.json with --cpu).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.common import describe_machine, text_table
from daemon.training.memory import bytes_per_line, state_bytes
from daemon.training.precision import Precision, grad_scaler, resolve_precision
from daemon.training.trainer import (
    BETAS,
    GRAD_CLIP,
    Batch,
    Example,
    TrainingOptions,
    build_optimizer,
    checkpointing_on,
    collate,
    memory_cap,
    optimizer_step,
    parameter_groups,
    pick_micro_batch,
    step_shape,
    training_spec,
)
from daemon.tts.checkpoints import build_autoregressive
from daemon.tts.spec import ModelSpec

BATCH = 128  # ai-voice-cloning's optimizer batch
DLAS_3090_GB = 16  # DL-Art-School's recorded use for this batch on a 3090 (24 GB)
TARGET_RATIO = 1.1
WARMUP = 2
WEIGHTS = (0.01, 1.0)  # English text and mel loss weights
# (text tokens, seconds) the made-up lines cycle through: 0.8 s to 11 s, 10 to 190 tokens
LINE_LENGTHS = ((10, 0.8), (40, 2.5), (70, 4.0), (100, 6.0), (140, 8.0), (190, 11.0))
CPU_DIMS = {"layers": 2, "model_dim": 128, "heads": 4}  # the harness check
CPU_BATCH = 8  # two CPU micro-batches of 4
CPU_LINE_LENGTHS = ((10, 0.8), (25, 1.5), (40, 2.2))
CPU_THREADS = 1  # a shared box's other work stalls OpenMP's spinning threads (bench/RESULTS.md)
COMBINATIONS = [(p, c) for p in ("fp32", "bf16") for c in (False, True)]


def made_up_batch(
    size: int, lengths: tuple[tuple[int, float], ...], device: torch.device
) -> tuple[Batch, list[Example]]:
    """`size` lines cycling through `lengths`, collated as training collates them."""
    generator = torch.Generator().manual_seed(0)
    examples = []
    for index in range(size):
        tokens, seconds = lengths[index % len(lengths)]
        samples = int(seconds * 22050)
        examples.append(
            Example(
                wave=torch.randn(samples, generator=generator) * 0.1,
                text=torch.randint(3, 250, (tokens,), generator=generator),
                codes=torch.randint(0, 8192, (samples // 1024 + 1,), generator=generator),
            )
        )
    return collate(examples, ModelSpec.released(), generator, device), examples


def production_step(model: nn.Module, state: StepState, batch: Batch, micro_batch: int) -> None:
    """train_voice's step: its optimizer_step."""
    optimizer_step(
        model, state.optimizer, state.scaler, batch, micro_batch, WEIGHTS, state.precision
    )


def bare_step(model: nn.Module, state: StepState, batch: Batch, micro_batch: int) -> None:
    """The same step written out in plain PyTorch."""
    state.optimizer.zero_grad(set_to_none=True)
    for part in batch.split(micro_batch):
        with torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=state.half):
            latent = model.get_conditioning(part.conditioning)
            loss_text, loss_mel, _ = model(
                latent,
                part.text,
                part.text_lengths,
                part.codes,
                part.wav_lengths,
                clip_inputs=False,
            )
            loss = (WEIGHTS[0] * loss_text + WEIGHTS[1] * loss_mel) * len(part) / len(batch)
        loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    state.optimizer.step()


@dataclasses.dataclass
class StepState:
    """What both sides share: the optimizer train_voice builds, its scaler, the precision."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: Precision
    device: torch.device

    @property
    def half(self) -> bool:
        return self.precision is Precision.BF16


def timed_step(
    step: Callable[..., None], model: nn.Module, state: StepState, batch: Batch, micro_batch: int
) -> tuple[float, int | None]:
    """Seconds of one step and, on CUDA, the most memory allocated during it."""
    cuda = state.device.type == "cuda"
    synchronise(state.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(state.device)
    started = time.perf_counter()
    step(model, state, batch, micro_batch)
    synchronise(state.device)
    seconds = time.perf_counter() - started
    return seconds, torch.cuda.max_memory_allocated(state.device) if cuda else None


def measure_combination(
    precision: str,
    checkpointing: bool,
    spec: ModelSpec,
    batch_size: int,
    lengths: tuple[tuple[int, float], ...],
    device: torch.device,
    steps: int,
) -> dict[str, Any]:
    """Both sides step one model in turn (ABBA), so they meet the same weights, optimizer
    state and load on the box; the micro-batch is train_voice's pick for the free memory."""
    options = TrainingOptions(precision=precision, checkpointing=checkpointing)
    torch.manual_seed(0)
    with device:
        model = build_autoregressive(training_spec(spec, options, device)).train()
    batch, examples = made_up_batch(batch_size, lengths, device)
    shape = step_shape(model, examples)
    resolved = resolve_precision(precision, device)
    micro_batch = pick_micro_batch(
        options, batch_size, memory_cap(device, shape, resolved, options)
    )
    optimizer = build_optimizer(model, options)
    state = StepState(optimizer, grad_scaler(resolved), resolved, device)
    sides = {"production": production_step, "bare": bare_step}
    for _ in range(WARMUP):
        for step in sides.values():
            step(model, state, batch, micro_batch)
    measured: dict[str, list[tuple[float, int | None]]] = {name: [] for name in sides}
    for index in range(steps):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for name in order:
            measured[name].append(timed_step(sides[name], model, state, batch, micro_batch))
    checkpointed = checkpointing_on(options, device)
    kernels = "fused" if optimizer.defaults.get("fused") else "foreach"
    optimizer_name = f"{type(optimizer).__name__} ({kernels})"
    weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    estimate = (
        weights_bytes
        + state_bytes(shape.parameters, resolved, options.optimizer)
        + micro_batch * bytes_per_line(shape, resolved, checkpointed)
    )
    del model, optimizer, state
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    def median_step(name: str) -> float:
        return statistics.median(seconds for seconds, _ in measured[name])

    def peak(name: str) -> int | None:
        peaks = [bytes_ for _, bytes_ in measured[name] if bytes_ is not None]
        return max(peaks) if peaks else None

    production, bare = median_step("production"), median_step("bare")
    return {
        "precision": resolved.value,
        "checkpointing": checkpointed,
        "micro_batch": micro_batch,
        "accumulation": -(-batch_size // micro_batch),
        "optimizer": optimizer_name,
        "production_steps_per_s": 1 / production,
        "bare_steps_per_s": 1 / bare,
        "ratio": production / bare,
        "production_peak_bytes": peak("production"),
        "bare_peak_bytes": peak("bare"),
        "estimated_peak_bytes": estimate,
        "step_seconds": {name: [seconds for seconds, _ in m] for name, m in measured.items()},
    }


def optimizer_kernels(spec: ModelSpec, device: torch.device, steps: int = 20) -> dict[str, float]:
    """ms per AdamW step (the recipe's groups) with each of torch's kernels, on the model the
    bench trains: why build_optimizer takes the fused one."""
    torch.manual_seed(0)
    with device:
        model = build_autoregressive(spec)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    kernels = {
        "for-loop": {"foreach": False},
        "foreach": {"foreach": True},
        "fused": {"fused": True},
    }
    found = {}
    for name, choice in kernels.items():
        optimizer = torch.optim.AdamW(parameter_groups(model), lr=1e-4, betas=BETAS, **choice)
        seconds = []
        for _ in range(steps):
            synchronise(device)
            started = time.perf_counter()
            optimizer.step()
            synchronise(device)
            seconds.append(time.perf_counter() - started)
        found[name] = 1000 * statistics.median(seconds[WARMUP:])
    return found


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def report(results: list[dict[str, Any]], device: torch.device, batch_size: int) -> str:
    def gib(value: float | None) -> str:
        return f"{value / 2**30:.1f}" if value is not None else "-"

    rows = [
        (
            "precision",
            "ckpt",
            "micro",
            "steps/s",
            "bare",
            "ratio",
            "peak GiB",
            "bare GiB",
            "estimate GiB",
        )
    ]
    for r in results:
        rows.append(
            (
                r["precision"],
                "on" if r["checkpointing"] else "off",
                f"{r['micro_batch']} x{r['accumulation']}",
                f"{r['production_steps_per_s']:.3f}",
                f"{r['bare_steps_per_s']:.3f}",
                f"{r['ratio']:.3f}" + (" ok" if r["ratio"] <= TARGET_RATIO else " MISSED"),
                gib(r["production_peak_bytes"]),
                gib(r["bare_peak_bytes"]),
                gib(r["estimated_peak_bytes"]),
            )
        )
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return (
        f"batch {batch_size} on {where} (target production / bare ≤ {TARGET_RATIO}; "
        f"DL-Art-School ~{DLAS_3090_GB} GB on a 3090)\n" + text_table(rows)
    )


def write_result(out: Path, result: dict[str, Any], started: float) -> None:
    result["wall_seconds"] = time.monotonic() - started
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="reduced dims on the CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per side and round")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("out"))
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu for the harness check")
    device = torch.device("cpu" if args.cpu else "cuda")
    spec = ModelSpec.released()
    batch_size, lengths, steps = BATCH, LINE_LENGTHS, args.steps or 3
    if args.cpu:
        spec = dataclasses.replace(spec, autoregressive={**spec.autoregressive, **CPU_DIMS})
        batch_size, lengths, steps = CPU_BATCH, CPU_LINE_LENGTHS, args.steps or 16
        torch.set_num_threads(CPU_THREADS)
    started = time.monotonic()
    info = describe_machine(
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    )
    out = args.out / ("train_gpu_cpu.json" if args.cpu else "train_gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench.train_gpu_bench" + (" --cpu" if args.cpu else ""),
        "machine": info,
        "dims": {k: spec.autoregressive[k] for k in ("layers", "model_dim", "heads")},
        "batch_size": batch_size,
        "line_lengths": lengths,
        "steps_per_side_and_round": steps,
        "targets": {"ratio_production_over_bare": TARGET_RATIO, "dlas_3090_gb": DLAS_3090_GB},
        "results": [],
    }
    results = result["results"]
    for precision, checkpointing in COMBINATIONS:
        results.append(
            measure_combination(precision, checkpointing, spec, batch_size, lengths, device, steps)
        )
        print(report(results[-1:], device, batch_size).splitlines()[-1], flush=True)
        write_result(out, result, started)  # a run cut short keeps its finished combinations
    kernels = optimizer_kernels(spec, device)
    print("AdamW step, ms: " + ", ".join(f"{k} {v:.1f}" for k, v in kernels.items()))
    result["adamw_step_ms"] = kernels
    write_result(out, result, started)
    print(report(results, device, batch_size))
    print(f"wrote {out} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
