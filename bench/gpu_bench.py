"""Released-dims rendering benchmark (issue 14): voicedrop's Engine against tortoise-tts 3.0.0's
own `TextToSpeech(kv_cache=True, half=True).tts`, side by side in one run.

Random weights at the released dimensions (`--dims released`, the default on a GPU) or at
reduced ones (`--dims reduced`, the default on a CPU) are written to a temp folder in the
released files' formats. Random weights would emit the stop code about once in 8,194 draws,
so the AR's stop code is made unreachable (a large negative bias on its row of mel_head):
every candidate on both sides then runs to exactly the asked number of codes, nothing is cut
by fix_autoregressive_output or the calm-code cut, and both sides do the same diffusion work.
tortoise reads the same files: only what stops it from loading plain files is patched, here
and not in the product (`get_model_path` returns the file in the temp folder; at reduced dims
also its hard-coded constructors take the reduced spec). Both sides get the same text, seed,
preset, number of codes and conditioning latents (computed once, by the Engine, from a
synthetic clip).

Per render it measures the stages (AR sampling, CLVP, AR latents, diffusion, vocoder: the
span from the first call into the tortoise class that does the stage to the end of its last
call, timed with CUDA events on a GPU; "other" is the rest, e.g. tortoise moving its models
between CPU and GPU), the peak memory, the real-time factor and the ratio of tortoise's
time to each voicedrop side's. Before anything runs it prints the two numbers for each
stage: bytes it must read and FLOPs it must do, and the floor they imply at a device's
bandwidth and bf16 rate.

    python -m bench.gpu_bench [--quick] [--dims released|reduced] [--presets ...]
        [--codes 250,500] [--repeats N] [--budget-s S] [--floors-only] [--out DIR]

Prints tables and writes DIR/gpu_bench.json (default bench/out/). On the GPU machine,
bench/gpu/run.sh installs what it lacks and runs this.

A voicedrop side is one `VoicedropSide` line in VOICEDROP_SIDES: a name, the Engine's
arguments and the generation knobs it sets over the preset's, e.g.
`VoicedropSide("voicedrop+dpm++2m-30", engine={"half": True},
knobs={"diffusion_sampler": "dpm++2m", "diffusion_iterations": 30})`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import io
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bench.common import describe_machine, text_table
from daemon.tts.checkpoints import (
    VOCODER_KEY,
    build_autoregressive,
    build_clvp,
    build_diffusion,
    build_vocoder,
    save_checkpoint,
)
from daemon.tts.engine import CONDITIONING_RATE, CPU_BATCH, Engine, Latents
from daemon.tts.generation import DIFFUSION_STEPS, PRESETS, GenerationSettings
from daemon.tts.spec import (
    AUTOREGRESSIVE_FILE,
    CLVP_FILE,
    DIFFUSION_FILE,
    VOCODER_FILE,
    ModelSpec,
)

OUT_DIR = Path(__file__).with_name("out")
TEXT = (
    "The old lighthouse keeper climbed the stairs each evening, lit the lamp, and watched "
    "the ships pass safely through the narrow channel."
)
SEED = 0
UNREACHABLE_STOP_BIAS = -1.0e4  # exp(-1e4 / temperature) is 0, in float16 too
MEL_FRAMES_PER_CODE = 4  # the diffusion model's 24 kHz frames per code, before the rate change
DIFFUSION_RATE = 24000
CODE_SAMPLES = 1024  # samples at 22050 Hz per AR code (mel_length_compression)
STAGES = ("ar_sampling", "clvp", "ar_latents", "diffusion", "vocoder")
ONE_BATCH = "ar_sampling_one_batch"  # the AR floor were every candidate sampled in one batch
HALF_BYTES = 2  # the floor assumes float16/bf16 weights and activations
GPU_BATCH = 16  # candidates per AR pass on a GPU of > 14 GB: tortoise's table, the Engine's


@dataclass(frozen=True)
class DeviceFigures:
    """The two ceilings a floor is computed at."""

    name: str
    bytes_per_second: float
    flops_per_second: float


H100_SXM = DeviceFigures(
    "H100 SXM datasheet: 3.35 TB/s HBM3, 989 TFLOP/s bf16 dense", 3.35e12, 989e12
)


@dataclass(frozen=True)
class VoicedropSide:
    """One voicedrop configuration measured against tortoise: its name, the Engine's keyword
    arguments and the GenerationSettings fields it sets over the preset's values."""

    name: str
    engine: Mapping[str, Any] = field(default_factory=dict)
    knobs: Mapping[str, Any] = field(default_factory=dict)


VOICEDROP_SIDES = (
    VoicedropSide("voicedrop", engine={"half": True}),  # its own sampling loop, tortoise's p
    VoicedropSide("voicedrop+generate", engine={"half": True, "sampler": "tortoise"}),
    # DPM-Solver++(2M) at the preset's steps for it (fast: 20 instead of p's 80)
    VoicedropSide(
        "voicedrop+dpm++2m", engine={"half": True}, knobs={"diffusion_sampler": "dpm++2m"}
    ),
)
TORTOISE = "tortoise"


@dataclass(frozen=True)
class Case:
    """One preset at one number of generated codes per chunk."""

    preset: str
    codes: int

    @property
    def candidates(self) -> int:
        return PRESETS[self.preset]["candidates"]

    @property
    def diffusion_steps(self) -> int:
        """tortoise's own (its p sampler): the floors are those of the preset as it runs."""
        return DIFFUSION_STEPS[self.preset]["p"]

    @property
    def diffusion_passes(self) -> int:
        """Forward passes per diffusion step: conditioning-free guidance runs the model twice."""
        return 2 if PRESETS[self.preset]["cond_free"] else 1

    @property
    def audio_seconds(self) -> float:
        return self.codes * CODE_SAMPLES / CONDITIONING_RATE

    @property
    def mel_frames(self) -> int:
        return mel_frames(self.codes)


def mel_frames(codes: int) -> int:
    """The diffusion decoder's frames for `codes` AR codes (24 kHz mel of 22.05 kHz codes)."""
    return codes * MEL_FRAMES_PER_CODE * DIFFUSION_RATE // CONDITIONING_RATE


# -- the two numbers -------------------------------------------------------------------------


@dataclass(frozen=True)
class StageWork:
    """What one stage of one render must move and compute, and the floor that implies."""

    stage: str
    bytes: float
    flops: float
    note: str

    def floor(self, figures: DeviceFigures) -> float:
        return max(self.bytes / figures.bytes_per_second, self.flops / figures.flops_per_second)

    def bound(self, figures: DeviceFigures) -> str:
        memory = self.bytes / figures.bytes_per_second
        return "memory" if memory >= self.flops / figures.flops_per_second else "compute"


def reduced_spec() -> ModelSpec:
    """Small enough for a 2-core CPU to render all three presets in minutes, with the released
    token limits (the tiny set's), but more than one layer per model."""
    tiny = ModelSpec.tiny()
    return dataclasses.replace(
        tiny,
        autoregressive={**tiny.autoregressive, "layers": 4, "model_dim": 128, "heads": 4},
        diffusion={
            **tiny.diffusion,
            "model_channels": 128,
            "num_layers": 2,
            "num_heads": 4,
            "in_latent_channels": 128,
        },
        clvp={
            **tiny.clvp,
            "dim_text": 64,
            "dim_speech": 64,
            "dim_latent": 64,
            "text_enc_depth": 2,
            "speech_enc_depth": 2,
            "text_heads": 4,
            "speech_heads": 4,
        },
    )


def spec_of(dims: str) -> ModelSpec:
    return ModelSpec.released() if dims == "released" else reduced_spec()


def stage_work(
    spec: ModelSpec, cases: list[Case], text_tokens: int, batch: int
) -> dict[Case, list[StageWork]]:
    """The bytes and FLOPs of each stage of one render per case, from the models' own
    parameter counts and, where no simple formula holds, torch's FLOP counter over a forward
    pass on fake tensors (shapes only, no arithmetic). Weights count once per forward pass at
    2 bytes; activations are not counted, so each floor is a lower bound."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        ar = build_autoregressive(spec)
        ar.post_init_gpt2_config(kv_cache=True)
        clvp, diffusion = build_clvp(spec), build_diffusion(spec)
        counted: dict[tuple[str, int], float] = {}  # presets at the same codes share them

        def flops(stage: str, codes: int, run: Callable[[], Any]) -> float:
            if (stage, codes) not in counted:
                counted[stage, codes] = _flops(run)
            return counted[stage, codes]

        models = (ar, clvp, diffusion)
        work = {case: _case_work(spec, case, text_tokens, batch, models, flops) for case in cases}
    vocoder = build_vocoder(spec)
    return {
        case: [*stages, _vocoder_work(vocoder, case.mel_frames)] for case, stages in work.items()
    }


def _case_work(
    spec: ModelSpec,
    case: Case,
    text_tokens: int,
    batch: int,
    models: tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module],
    flops: Callable[[str, int, Callable[[], Any]], float],
) -> list[StageWork]:
    ar, clvp, diffusion = models
    step_params = sum(_count(part) for part in (ar.gpt.h, ar.gpt.ln_f, ar.final_norm, ar.mel_head))
    batches = case.candidates // batch
    forwards = case.diffusion_steps * case.diffusion_passes
    clvp_flops = flops(
        "clvp", case.codes, lambda: _clvp_forward(clvp, batch, text_tokens, case.codes)
    )
    step_flops = flops(
        "diffusion", case.codes, lambda: _diffusion_forward(diffusion, spec, case.mel_frames)
    )
    aligned_flops = flops("aligned", case.codes, lambda: _diffusion_aligned(diffusion, spec, case))
    latents_flops = flops(
        "ar_latents", case.codes, lambda: _ar_forward(ar, text_tokens, case.codes)
    )
    return [
        _ar_sampling(spec, step_params, text_tokens, case.codes, batch, batches),
        _ar_sampling(spec, step_params, text_tokens, case.codes, case.candidates, 1, ONE_BATCH),
        StageWork(
            "clvp",
            _count(clvp) * HALF_BYTES * batches,
            clvp_flops * batches,
            f"{batches} batches of {batch} candidates x {case.codes} codes",
        ),
        StageWork(
            "ar_latents",
            _count(ar) * HALF_BYTES,
            latents_flops,
            "one forward over the best candidate",
        ),
        StageWork(
            "diffusion",
            _count(diffusion) * HALF_BYTES * forwards,
            step_flops * forwards + aligned_flops,
            f"{case.diffusion_steps} steps x {case.diffusion_passes} passes over "
            f"{case.mel_frames} frames",
        ),
    ]


def _ar_sampling(
    spec: ModelSpec,
    step_params: int,
    text_tokens: int,
    codes: int,
    batch: int,
    batches: int,
    stage: str = "ar_sampling",
) -> StageWork:
    """Each decoding step reads every transformer weight once for the whole batch, and the KV
    cache of every candidate: layers x (K, V) x context x model_dim values. Fewer, larger
    batches read the weights fewer times; the KV cache is read the same."""
    ar = spec.autoregressive
    layers, width = ar["layers"], ar["model_dim"]
    prefix = text_tokens + 4  # conditioning latent, start and stop text tokens, start mel code
    contexts = np.arange(prefix, prefix + codes, dtype=np.float64)
    kv_values = batch * layers * 2 * width * contexts.sum()
    per_batch_bytes = codes * step_params * HALF_BYTES + kv_values * HALF_BYTES
    per_batch_flops = codes * 2 * step_params * batch + batch * layers * 4 * width * contexts.sum()
    weights_mib = step_params * HALF_BYTES / 2**20
    return StageWork(
        stage,
        per_batch_bytes * batches,
        per_batch_flops * batches,
        f"{batches} batches x {codes} steps; {weights_mib:.0f} MiB of weights per step for the "
        f"batch of {batch}, plus its KV cache",
    )


def _vocoder_work(vocoder: torch.nn.Module, frames: int) -> StageWork:
    """UnivNet is all convolutions, so its FLOPs grow with frames: counted on real tensors at
    a short length and scaled (its forward moves modules with .to(), which fake tensors
    refuse). inference() adds 10 padding frames."""
    probe = 16
    flops = _flops(lambda: vocoder.inference(torch.zeros(1, 100, probe)))
    scaled = flops * (frames + 10) / (probe + 10)
    return StageWork("vocoder", _count(vocoder) * HALF_BYTES, scaled, f"{frames} mel frames")


def _flops(run: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run()
    return float(counter.get_total_flops())


def _count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _ar_forward(ar: torch.nn.Module, text_tokens: int, codes: int) -> None:
    text = torch.zeros(1, text_tokens, dtype=torch.long)
    ar(
        torch.zeros(1, ar.model_dim),
        text,
        torch.tensor([text_tokens]),
        torch.zeros(1, codes, dtype=torch.long),
        torch.tensor([codes * CODE_SAMPLES]),
        return_latent=True,
        clip_inputs=False,
    )


def _clvp_forward(clvp: torch.nn.Module, batch: int, text_tokens: int, codes: int) -> None:
    text = torch.zeros(batch, text_tokens, dtype=torch.long)
    clvp(text, torch.zeros(batch, codes, dtype=torch.long), return_loss=False)


def _diffusion_forward(diffusion: torch.nn.Module, spec: ModelSpec, frames: int) -> None:
    aligned = torch.zeros(1, spec.diffusion["model_channels"], frames)
    diffusion(
        torch.zeros(1, 100, frames), torch.tensor([1]), precomputed_aligned_embeddings=aligned
    )


def _diffusion_aligned(diffusion: torch.nn.Module, spec: ModelSpec, case: Case) -> None:
    latent = spec.diffusion["in_latent_channels"]
    conditioning = torch.zeros(1, spec.diffusion["model_channels"] * 2)
    diffusion.timestep_independent(
        torch.zeros(1, case.codes, latent), conditioning, case.mel_frames, False
    )


# -- the model files -------------------------------------------------------------------------


def write_random_models(spec: ModelSpec, directory: Path, seed: int = SEED) -> None:
    """The four files a diffusion render reads, randomly initialised, in the released formats
    (spec.json only when the dims are not the released ones); the AR can never stop."""
    torch.manual_seed(seed)
    builders: dict[str, Callable[[ModelSpec], dict[str, Any]]] = {
        AUTOREGRESSIVE_FILE: _unstoppable_autoregressive,
        DIFFUSION_FILE: lambda spec: build_diffusion(spec).state_dict(),
        VOCODER_FILE: lambda spec: {VOCODER_KEY: build_vocoder(spec).state_dict()},
        CLVP_FILE: lambda spec: build_clvp(spec).state_dict(),
    }
    for name, build in builders.items():
        save_checkpoint(build(spec), directory / name)  # one model in memory at a time
    if spec != ModelSpec.released():
        spec.write(directory)


def _unstoppable_autoregressive(spec: ModelSpec) -> dict[str, torch.Tensor]:
    model = build_autoregressive(spec)
    with torch.no_grad():
        model.mel_head.bias[model.stop_mel_token] = UNREACHABLE_STOP_BIAS
    return model.state_dict()


# -- timing ----------------------------------------------------------------------------------


class StageClock:
    """Marks the start and end of every call into the methods that do each stage (tortoise's,
    and voicedrop's sampling loop), whichever side makes them. On a GPU the marks are CUDA
    events (no synchronisation inside the render); on a CPU, perf_counter."""

    ENTRY_POINTS = (
        ("ar_sampling", "tortoise.models.autoregressive", "UnifiedVoice", "inference_speech"),
        # voicedrop's own loop: its buffers and CUDA graph are made per render, in __init__
        ("ar_sampling", "daemon.tts.sampler", "CodeSampler", "__init__"),
        ("ar_sampling", "daemon.tts.sampler", "CodeSampler", "sample"),
        ("clvp", "tortoise.models.clvp", "CLVP", "forward"),
        ("ar_latents", "tortoise.models.autoregressive", "UnifiedVoice", "forward"),
        ("diffusion", "tortoise.models.diffusion_decoder", "DiffusionTts", "timestep_independent"),
        ("diffusion", "tortoise.models.diffusion_decoder", "DiffusionTts", "forward"),
        ("vocoder", "tortoise.models.vocoder", "UnivNetGenerator", "inference"),
    )

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: dict[str, list[tuple[Any, Any]]] = {}

    def now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start: Any, end: Any) -> float:
        if not self.cuda:
            return end - start
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While inside, every entry point's calls are marked; afterwards they are restored."""
        import importlib

        originals = []
        for stage, module_name, class_name, method in self.ENTRY_POINTS:
            owner = getattr(importlib.import_module(module_name), class_name)
            originals.append((owner, method, owner.__dict__[method]))
            setattr(owner, method, self._marked(stage, owner.__dict__[method]))
        try:
            yield
        finally:
            for owner, method, original in originals:
                setattr(owner, method, original)

    def _marked(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def marked(*args: Any, **kwargs: Any) -> Any:
            start = self.now()
            result = function(*args, **kwargs)
            self.marks.setdefault(stage, []).append((start, self.now()))
            return result

        return marked

    def spans(self) -> dict[str, float]:
        """Per stage, first start to last end (the sampler's work between diffusion steps and
        the padding between AR batches count to their stage)."""
        return {
            stage: self.seconds(marks[0][0], marks[-1][1]) for stage, marks in self.marks.items()
        }


class PeakMemory:
    """The most memory a render takes above what was in use when it began: CUDA's allocator
    peak on a GPU, the process's peak resident set (VmHWM, reset through clear_refs) on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.before = _status_bytes("VmRSS")

    def extra(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.before
        return _status_bytes("VmHWM") - self.before


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


# -- the sides -------------------------------------------------------------------------------


@dataclass
class Render:
    """One measured render."""

    side: str
    preset: str
    codes: int
    total_seconds: float
    stages: dict[str, float]
    audio_seconds: float
    peak_extra_bytes: int
    resident_bytes: int
    wave: np.ndarray = field(repr=False)

    @property
    def other_seconds(self) -> float:
        return self.total_seconds - sum(self.stages.values())

    @property
    def real_time_factor(self) -> float:
        return self.total_seconds / self.audio_seconds

    def record(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k != "wave"}
        data.update(
            other_seconds=self.other_seconds,
            real_time_factor=self.real_time_factor,
            peak_bytes=self.resident_bytes + self.peak_extra_bytes,
        )
        return data


class Side(Protocol):
    """What renders a case into float32 audio at 24 kHz."""

    name: str
    resident_bytes: int  # this side's weights kept on the device between renders

    def render(self, case: Case) -> np.ndarray: ...

    def warm_up(self) -> None: ...


class VoicedropRunner:
    """voicedrop's Engine with a side's arguments, on the bench's files."""

    def __init__(self, side: VoicedropSide, engine: Engine, latents: Latents) -> None:
        self.name, self.side, self.engine, self.latents = side.name, side, engine, latents
        self.engine.load()
        self.resident_bytes = weight_bytes(self.engine.spec)

    def settings(self, case: Case, **extra: Any) -> GenerationSettings:
        knobs = {"preset": case.preset, "max_mel_tokens": case.codes, "seed": SEED}
        return GenerationSettings(**{**knobs, **self.side.knobs, **extra})

    def render(self, case: Case) -> np.ndarray:
        return self.engine.render(TEXT, self.latents, self.settings(case))

    def warm_up(self) -> None:
        batch = CPU_BATCH if self.engine.device.type == "cpu" else GPU_BATCH
        warm = self.settings(Case("ultra_fast", 8), candidates=batch, diffusion_iterations=2)
        self.engine.render(TEXT, self.latents, warm)


class TortoiseRunner:
    """tortoise-tts 3.0.0's TextToSpeech(kv_cache=True, half=True), reading the bench's files."""

    def __init__(self, models_dir: Path, spec: ModelSpec, device: torch.device, latents: Latents):
        self.name = TORTOISE
        self.device = device
        self.latents = (latents.autoregressive.to(device), latents.diffusion.to(device))
        with plain_files(models_dir, spec):
            from tortoise.api import TextToSpeech

            batch = CPU_BATCH if device.type == "cpu" else None  # None: its own choice on a GPU
            self.tts = TextToSpeech(
                autoregressive_batch_size=batch,
                models_dir=str(models_dir),
                enable_redaction=False,
                kv_cache=True,
                half=True,
            )
        # On a GPU tortoise keeps its models on the CPU and moves each in for its stage, so
        # its peak counts them; on a CPU they stay resident, as the Engine's do.
        self.resident_bytes = weight_bytes(spec) if device.type == "cpu" else 0

    @property
    def batch_size(self) -> int:
        return self.tts.autoregressive_batch_size

    def render(self, case: Case, **overrides: Any) -> np.ndarray:
        with _quiet():  # fix_autoregressive_output prints a line per candidate that never stops
            wave = self.tts.tts_with_preset(
                TEXT,
                preset=case.preset,
                conditioning_latents=self.latents,
                use_deterministic_seed=SEED,
                max_mel_tokens=case.codes,
                verbose=False,
                k=1,
                **overrides,
            )
        return wave.squeeze().float().cpu().numpy()

    def warm_up(self) -> None:
        self.render(
            Case("ultra_fast", 8),
            num_autoregressive_samples=self.batch_size,
            diffusion_iterations=2,
        )


@contextlib.contextmanager
def plain_files(models_dir: Path, spec: ModelSpec) -> Iterator[None]:
    """While TextToSpeech is built: its get_model_path returns the file in `models_dir`
    instead of downloading from the Hugging Face hub, and (at reduced dims only) its
    hard-coded released constructors build the spec's dimensions instead."""
    import tortoise.api as api

    replaced = {"get_model_path": lambda name, models_dir=None: str(Path(models_dir) / name)}
    if spec != ModelSpec.released():
        replaced.update(
            UnifiedVoice=lambda **_: build_autoregressive(spec),
            DiffusionTts=lambda **_: build_diffusion(spec),
            CLVP=lambda **_: build_clvp(spec),
            UnivNetGenerator=lambda **_: build_vocoder(spec),
        )
    originals = {name: getattr(api, name) for name in replaced}
    for name, value in replaced.items():
        setattr(api, name, value)
    try:
        yield
    finally:
        for name, value in originals.items():
            setattr(api, name, value)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.autocast(device_type="cuda") on a CPU warns
        yield


def weight_bytes(spec: ModelSpec) -> int:
    """float32 bytes of the four models a diffusion render keeps (both sides load fp32 weights;
    half=True only autocasts)."""
    with torch.device("meta"):
        models = (build_autoregressive(spec), build_diffusion(spec), build_clvp(spec))
        params = sum(_count(model) for model in models)
    return (params + _count(build_vocoder(spec))) * 4


def synthetic_clip(seconds: float = 8.0) -> np.ndarray:
    """A seeded voice-like signal at 22050 Hz: the latents only need to be the same inputs
    for both sides, not a real voice."""
    rng = np.random.default_rng(SEED)
    t = np.arange(int(seconds * CONDITIONING_RATE)) / CONDITIONING_RATE
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 560), 1))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.2 * tone * envelope + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


# -- running ---------------------------------------------------------------------------------


def measure(side: Side, case: Case, device: torch.device) -> Render:
    clock, memory = StageClock(device), PeakMemory(device)
    memory.start()
    with clock.watching():
        started = clock.now()
        wave = side.render(case)
        ended = clock.now()
    return Render(
        side=side.name,
        preset=case.preset,
        codes=case.codes,
        total_seconds=clock.seconds(started, ended),
        stages=clock.spans(),
        audio_seconds=wave.size / DIFFUSION_RATE,
        peak_extra_bytes=memory.extra(),
        resident_bytes=side.resident_bytes,
        wave=wave,
    )


def median_render(renders: list[Render]) -> Render:
    """The render whose total is the median (its stages are then a real render's)."""
    ordered = sorted(renders, key=lambda render: render.total_seconds)
    return ordered[(len(ordered) - 1) // 2]


def predicted_seconds(case: Case, done: list[tuple[Case, list[Render]]]) -> float:
    """What a case should take, all sides together, scaled from the last measured case: AR
    and CLVP work grows with candidates x codes, diffusion with forwards x frames."""
    if not done:
        return 0.0
    last, renders = done[-1]
    ar = (case.candidates * case.codes) / (last.candidates * last.codes)
    diffusion = (case.diffusion_steps * case.diffusion_passes * case.codes) / (
        last.diffusion_steps * last.diffusion_passes * last.codes
    )
    total = 0.0
    for render in renders:
        sampled = render.stages.get("ar_sampling", 0) + render.stages.get("clvp", 0)
        total += sampled * ar + render.stages.get("diffusion", 0) * diffusion
        total += render.total_seconds - sampled - render.stages.get("diffusion", 0)
    return total


def compared(render: Render, reference: Render) -> dict[str, Any]:
    """How far a side's audio is from tortoise's on the same inputs (0 on a CPU, where both
    sample the same codes; on a GPU float16 rounding may pick other codes)."""
    same_length = render.wave.size == reference.wave.size
    difference = (
        float(np.max(np.abs(render.wave - reference.wave))) if same_length else float("nan")
    )
    return {"same_length": same_length, "max_abs_difference": difference}


def run_cases(
    cases: list[Case],
    sides: list[Side],
    device: torch.device,
    repeats: int,
    budget: float | None,
    started: float,
    save: Callable[[list[dict[str, Any]], list[str]], None],
) -> list[dict[str, Any]]:
    """Every case on every side (each side's median of `repeats`), saved after each case;
    a case predicted to end past `budget` seconds since `started` is skipped."""
    done: list[tuple[Case, list[Render]]] = []
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    for index, case in enumerate(cases):
        elapsed = time.monotonic() - started
        if budget is not None and elapsed + predicted_seconds(case, done) * repeats > budget:
            skipped.append(f"{case.preset}@{case.codes}")
            continue
        runs: dict[str, list[Render]] = {side.name: [] for side in sides}
        for repeat in range(repeats):
            order = sides if (index + repeat) % 2 == 0 else sides[::-1]  # no side always first
            for side in order:
                runs[side.name].append(measure(side, case, device))
        medians = [median_render(runs[side.name]) for side in sides]
        done.append((case, medians))
        reference = next(render for render in medians if render.side == TORTOISE)
        for render in medians:
            record = render.record() | {"repeats": [r.total_seconds for r in runs[render.side]]}
            if render.side != TORTOISE:
                record |= {"ratio": reference.total_seconds / render.total_seconds}
                record |= {"vs_tortoise": compared(render, reference)}
            records.append(record)
        print(
            f"{case.preset}@{case.codes}: "
            + ", ".join(f"{render.side} {render.total_seconds:.2f} s" for render in medians),
            flush=True,
        )
        save(records, skipped)
    save(records, skipped)
    return records


def analytic_rows(
    work: dict[Case, list[StageWork]], figures: DeviceFigures
) -> list[tuple[str, ...]]:
    rows = [("case", "stage", "GB read", "TFLOP", "floor ms", "bound", "what")]
    for case, stages in work.items():
        name = f"{case.preset}@{case.codes}"
        for item in stages:
            floor_ms = f"{item.floor(figures) * 1e3:.2f}"
            rows.append(
                (name, item.stage, f"{item.bytes / 1e9:.2f}", f"{item.flops / 1e12:.3f}",
                 floor_ms, item.bound(figures), item.note)
            )  # fmt: skip
        for label, sampling in (("all", STAGES[0]), ("all, one AR batch", ONE_BATCH)):
            floor = render_floor(stages, figures, sampling)
            rtf = f"real-time factor floor {floor / case.audio_seconds:.4f}"
            rows.append(
                (name, label, "", "", f"{floor * 1e3:.1f}", "",
                 f"{rtf} ({case.audio_seconds:.2f} s of audio)")
            )  # fmt: skip
    return rows


def render_floor(stages: list[StageWork], figures: DeviceFigures, sampling: str) -> float:
    """The whole render's floor, its AR sampling batched as `sampling` names."""
    kept = (sampling, *STAGES[1:])
    return sum(item.floor(figures) for item in stages if item.stage in kept)


def result_rows(records: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = [("case", "side", "total s", "RTF", *STAGES, "other", "peak MiB", "ratio")]
    for record in records:
        rows.append(
            (
                f"{record['preset']}@{record['codes']}",
                record["side"],
                f"{record['total_seconds']:.2f}",
                f"{record['real_time_factor']:.3f}",
                *(f"{record['stages'].get(stage, 0.0):.2f}" for stage in STAGES),
                f"{record['other_seconds']:.2f}",
                f"{record['peak_bytes'] / 2**20:.0f}",
                f"{record['ratio']:.2f}" if "ratio" in record else "",
            )
        )
    return rows


DIFFUSION_BATCHES = (1, 2, 4)  # chunks through the diffusion decoder at once
PADDED_SHARE = 0.75  # the shorter chunk of a padded pair, as a share of the longer's codes


def diffusion_batching(engine: Engine, latents: Latents, codes: int, steps: int) -> dict:
    """Whether chunks of one text should go through the diffusion decoder together: seconds
    per chunk for `steps` dpm++2m steps (guided, two model calls a step) at each batch size,
    on chunks of equal length (the most batching can gain); and how far batching moves a
    chunk's mel (relative L2 against the chunk alone, on the same noise), beside an equal
    one and beside one 4/3 as long, its speech latents zero-padded to that length and its
    mel cut back."""
    from daemon.tts.diffusion import sample_mel

    diffusion = engine._loaded(DIFFUSION_FILE)
    device = engine.device
    conditioning = latents.diffusion.to(device)
    generator = torch.Generator().manual_seed(SEED)
    width = engine.spec.autoregressive["model_dim"]
    speech = torch.randn(1, codes, width, generator=generator).to(device)
    frames = mel_frames(codes)
    noise = torch.randn(1, 100, frames, generator=generator).to(device)

    def mel(batch_speech: torch.Tensor, batch_noise: torch.Tensor) -> torch.Tensor:
        aligned = diffusion.timestep_independent(
            batch_speech, conditioning, batch_noise.shape[-1], False
        )
        return sample_mel(
            "dpm++2m",
            diffusion,
            aligned,
            batch_noise,
            steps=steps,
            cond_free=True,
            cond_free_k=2.0,
            on_step=lambda done: None,
        )

    seconds_per_chunk = {}
    with torch.no_grad():
        for batch in DIFFUSION_BATCHES:
            run = lambda b=batch: mel(speech.repeat(b, 1, 1), noise.repeat(b, 1, 1))  # noqa: E731
            seconds_per_chunk[batch] = _run_seconds(run, device) / batch
        equal = mel(speech.repeat(2, 1, 1), noise.repeat(2, 1, 1))[1:] - mel(speech, noise)
        short_codes = int(codes * PADDED_SHARE)
        short_frames = mel_frames(short_codes)
        alone = mel(speech[:, :short_codes], noise[..., :short_frames])
        padded = torch.zeros_like(speech)
        padded[:, :short_codes] = speech[:, :short_codes]
        together = mel(torch.cat([speech, padded]), noise.repeat(2, 1, 1))[1:, :, :short_frames]
    scale = torch.linalg.vector_norm(alone).item()
    return {
        "codes": codes,
        "frames": frames,
        "steps": steps,
        "seconds_per_chunk": seconds_per_chunk,
        "equal_relative_l2": torch.linalg.vector_norm(equal).item() / scale,
        "padded_relative_l2": torch.linalg.vector_norm(together - alone).item() / scale,
    }


def _run_seconds(action: Callable[[], Any], device: torch.device) -> float:
    """One warm-up, then the median of three timed runs (CUDA events on a GPU)."""
    if device.type == "cuda":
        return _median_seconds(action, warm=1, timed=3)
    action()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_ceilings(device: torch.device) -> dict[str, float]:
    """The two ceilings as this GPU reaches them: a 2 GiB device-to-device copy (bytes read
    plus written) and an 8192^3 bf16 matrix product on random data; medians of 10."""
    if device.type != "cuda":
        return {}
    ceilings = {
        "bytes_per_second": 2 * 2**31 / _copy_seconds(device),
        "flops_per_second": 2 * 8192**3 / _product_seconds(device),
    }
    torch.cuda.empty_cache()
    return ceilings


def _copy_seconds(device: torch.device) -> float:
    source = torch.randn(2**29, device=device)  # 2 GiB of float32
    target = torch.empty_like(source)
    return _median_seconds(lambda: target.copy_(source))


def _product_seconds(device: torch.device) -> float:
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    return _median_seconds(lambda: a @ b)


def _median_seconds(action: Callable[[], Any], warm: int = 3, timed: int = 10) -> float:
    for _ in range(warm):
        action()
    times = []
    for _ in range(timed):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        action()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", choices=("released", "reduced"), help="default: by device")
    parser.add_argument("--presets", default="ultra_fast,fast,standard")
    parser.add_argument("--codes", help="codes per chunk, comma-separated (GPU 250,500; CPU 24)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--budget-s", type=float, help="skip cases predicted to end past this")
    parser.add_argument("--quick", action="store_true", help="CPU check: reduced dims, 12 codes")
    parser.add_argument("--floors-only", action="store_true", help="print the two numbers, stop")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--bandwidth", type=float, help="bytes/s for the floor (default H100 SXM)")
    parser.add_argument("--flops", type=float, help="FLOP/s for the floor (default H100 SXM)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    started = time.monotonic()
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dims = args.dims or ("reduced" if args.quick or device.type == "cpu" else "released")
    default_codes = "12" if args.quick else ("250,500" if device.type == "cuda" else "24")
    codes = [int(value) for value in (args.codes or default_codes).split(",")]
    cases = [Case(preset, n) for n in codes for preset in args.presets.split(",")]
    spec = spec_of(dims)
    figures = H100_SXM
    if args.bandwidth or args.flops:
        figures = DeviceFigures(
            f"given: {args.bandwidth or H100_SXM.bytes_per_second:.3g} B/s, "
            f"{args.flops or H100_SXM.flops_per_second:.3g} FLOP/s",
            args.bandwidth or H100_SXM.bytes_per_second,
            args.flops or H100_SXM.flops_per_second,
        )
    machine = describe_machine(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        torch=torch.__version__,
        dims=dims,
    )
    print(json.dumps(machine), flush=True)
    on_gpu = device.type == "cuda" or (args.floors_only and dims == "released")
    batch = GPU_BATCH if on_gpu else CPU_BATCH  # floors-only at released dims: a GPU's batch
    text_tokens = len(_tokenizer().encode(TEXT)) + 1  # with the pad both sides append
    work = stage_work(spec, cases, text_tokens, batch)
    print(f"\nThe two numbers per stage at {dims} dims; floor at {figures.name}:")
    print(text_table(analytic_rows(work, figures)), flush=True)
    if args.floors_only:
        return
    ceilings = measure_ceilings(device)
    if ceilings:
        print(
            f"measured here: {ceilings['bytes_per_second'] / 1e12:.2f} TB/s copy, "
            f"{ceilings['flops_per_second'] / 1e12:.0f} TFLOP/s bf16 matmul",
            flush=True,
        )

    args.out.mkdir(parents=True, exist_ok=True)
    output = args.out / "gpu_bench.json"
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as folder:
        models_dir = Path(folder)
        setup_started = time.monotonic()
        write_random_models(spec, models_dir)
        written = time.monotonic() - setup_started
        engine_sides, tortoise = build_sides(models_dir, spec, device)
        sides: list[Side] = [tortoise, *engine_sides]
        for side in sides:
            with _quiet():
                side.warm_up()
        setup = {"write_seconds": written, "setup_seconds": time.monotonic() - setup_started}
        print(f"setup: {json.dumps(setup)}; tortoise batch {tortoise.batch_size}", flush=True)
        steps = DIFFUSION_STEPS["fast"]["dpm++2m"] if on_gpu else 2
        batching = diffusion_batching(
            engine_sides[0].engine, engine_sides[0].latents, min(codes), steps
        )
        print(f"diffusion of chunks together: {json.dumps(batching)}", flush=True)

        def save(records: list[dict[str, Any]], skipped: list[str]) -> None:
            report = {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": machine,
                "command": " ".join(["python -m bench.gpu_bench", *(argv or sys.argv[1:])]),
                "text": TEXT,
                "text_tokens": text_tokens,
                "seed": SEED,
                "tortoise_batch": tortoise.batch_size,
                "sides": [dataclasses.asdict(side) for side in VOICEDROP_SIDES],
                "floor_figures": dataclasses.asdict(figures),
                "measured_ceilings": ceilings,
                "analytic": {
                    f"{case.preset}@{case.codes}": [dataclasses.asdict(item) for item in items]
                    for case, items in work.items()
                },
                "setup": setup,
                "diffusion_batching": batching,
                "renders": records,
                "skipped_for_budget": skipped,
            }
            output.write_text(json.dumps(report, indent=2) + "\n")

        records = run_cases(cases, sides, device, args.repeats, args.budget_s, started, save)
    print(f"\nRenders on {machine['device']} ({dims} dims); seconds; ratio = tortoise / side:")
    print(text_table(result_rows(records)))
    print(f"wrote {output}")


def build_sides(
    models_dir: Path, spec: ModelSpec, device: torch.device
) -> tuple[list[VoicedropRunner], TortoiseRunner]:
    """The Engine of the first voicedrop side computes the latents every side is given."""
    engines = [Engine(models_dir, device=str(device), **side.engine) for side in VOICEDROP_SIDES]
    latents = engines[0].conditioning_latents([synthetic_clip()], method="tortoise", seed=SEED)
    runners = [
        VoicedropRunner(side, engine, latents)
        for side, engine in zip(VOICEDROP_SIDES, engines, strict=True)
    ]
    return runners, TortoiseRunner(models_dir, spec, device, latents)


def _tokenizer() -> Any:
    from tortoise.utils.tokenizer import VoiceBpeTokenizer

    return VoiceBpeTokenizer()


if __name__ == "__main__":
    main()
