"""Fine-tuning benchmark (issue 5): the production training loop, `train_voice`, against a bare
PyTorch loop over the same model and batches, side by side in one run, on the tiny model set.

A temp folder gets the tiny models (`write_tiny_models`: the real UnifiedVoice and dVAE at small
dimensions, loaded strictly from disk) and voices whose datasets are espeak-ng phrases, written
as the dataset stage writes them (`audio/<file>.wav|<text>`). Everything runs on the CPU, at
a batch of 4 lines, the CPU's micro-batch, so a step is one forward and backward pass.

1. Step time. Each round is one `train_voice` run, interleaved step by step with the bare loop:
   one of the callbacks train_voice calls every step (`should_stop` before a step in even rounds,
   `on_progress` after it in odd ones) runs the bare loop's step with the same batch, so both
   sides meet the same load on the box. The bare loop is UnifiedVoice built from the same spec
   and checkpoint, the same AdamW (parameter groups, betas, lr) and loss weighting; per step:
   zero_grad, get_conditioning and forward, backward, clip, step, nothing else. Its batches are
   made once, before timing, with train.py's own helpers (codes cache, load_examples,
   epoch_order, collate with the same seeded crop generator), so step k of both sides trains on
   the same tensors. It keeps its own copy of the global RNG, swapped in outside its timer, so
   its dropout masks are production's and the two sides' losses must match.
   A production step runs from the return of the `should_stop()` that opens it to the next
   `should_stop()` call (the last step: to its `on_progress` call), less the time spent in the
   bench's callback. Left out: everything before the first step (spec, dVAE and codes, example
   loading, model load, optimizer) and after the last (final model save, charts, result.json),
   and each round's first WARMUP steps on both sides. Inside production steps, collate,
   wave_to_mel and optimizer_step are timed by wrapping train.py's module functions.
2. Steps/s: 1000 / production ms per step; and metrics.jsonl's own steps_per_s of a run at the
   default cadence (checkpoint and charts every 5 epochs, validation every 5), not interleaved,
   with the cost of each checkpoint, charts and validation pass.

The box may be shared, and with torch's OpenMP threads on every core a busy neighbour slows a
step many times over. So each round first waits (up to QUIET_WAIT s) for other processes to
go quiet, records how many cores they kept busy during it, and is dropped if it runs past
ROUND_LIMIT; no new round starts once the time budget is spent.

    python -m bench.train_bench [--quick]

Prints a table and writes bench/out/train.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from torch import nn

import daemon.training.trainer as train
from bench.common import describe_machine
from daemon.core.jobs import TrainProgress
from daemon.training.trainer import BETAS, GRAD_CLIP, Batch, TrainingOptions, train_voice
from daemon.tts.checkpoints import build_autoregressive, load_strict
from daemon.tts.spec import AUTOREGRESSIVE_FILE, ModelSpec
from daemon.tts.tiny import write_tiny_models
from tests.conftest import espeak

# short enough for the tiny model's 48 mel codes (up to ~2.2 s of audio)
PHRASES = (
    "Hello there.",
    "Good morning.",
    "Thank you very much.",
    "See you soon.",
    "It is cold today.",
    "Open the door.",
    "Come here now.",
    "I like green tea.",
    "The sun is up.",
    "Where is my hat?",
    "Call me later.",
    "We are late again.",
    "Shut the window.",
    "That was fun.",
    "Pass the salt.",
    "Time to go home.",
)
TRAIN_LINES = 12  # 3 steps an epoch at the CPU batch of 4
CPU_BATCH = train.CPU_MICRO_BATCH  # one micro-batch per step: no accumulation to compare
ESPEAK_SPEED = 150
LANGUAGE = "en"
SEED = 0
DEVICE = "cpu"
WARMUP = 3  # steps of each round left out of both sides
CADENCE_EPOCHS = 10  # default cadence: a checkpoint at epoch 5, validation at 5 and 10
TARGET_RATIO = 1.1
QUIET_CORES = 0.2  # a round is quiet when other processes kept fewer cores busy than this
QUIET_WAIT = 30  # seconds a round waits at most for other processes to go quiet
ROUND_LIMIT = 45  # seconds after which a run is stopped and its round dropped (quiet: ~6 s)
OUT_FILE = Path(__file__).with_name("out") / "train.json"
TIMED = ("collate", "optimizer_step")
CADENCE_TIMED = ("Learner.save", "write_charts", "validate")


# -- setup -------------------------------------------------------------------------------------


def make_voice(base: Path, name: str, speech: Path, validation: bool) -> Path:
    """voices/<name>/dataset/ as the dataset stage writes it."""
    voice = base / "voices" / name
    audio = voice / "dataset" / "audio"
    audio.mkdir(parents=True)
    lines = []
    for index, phrase in enumerate(PHRASES):
        piece = f"piece_{index:05d}.wav"
        os.link(speech / piece, audio / piece)
        lines.append(f"audio/{piece}|{phrase}")
    (voice / "dataset" / "train.txt").write_text("\n".join(lines[:TRAIN_LINES]) + "\n")
    if validation:
        (voice / "dataset" / "validation.txt").write_text("\n".join(lines[TRAIN_LINES:]) + "\n")
    return voice


def write_speech(folder: Path) -> float:
    """One espeak-ng piece per phrase; the training lines' seconds of audio."""
    for index, phrase in enumerate(PHRASES):
        espeak(folder / f"piece_{index:05d}.wav", phrase, speed=ESPEAK_SPEED)
    return sum(sf.info(folder / f"piece_{i:05d}.wav").duration for i in range(TRAIN_LINES))


def step_options(epochs: int) -> TrainingOptions:
    """Defaults but for the run length: no lr milestone, validation or checkpoint inside it (the
    comparison voice has no validation lines), so every step is a plain training step."""
    return TrainingOptions(
        epochs=epochs,
        batch_size=CPU_BATCH,
        lr_schedule=(),
        validate_every=epochs + 1,
        save_every=epochs + 1,
        device=DEVICE,
        seed=SEED,
    )


def prepared_batches(
    voice: Path, models: Path, options: TrainingOptions, steps: int
) -> list[Batch]:
    """The batches train_voice will train on, step by step, made with its own helpers."""
    device = torch.device(DEVICE)
    spec = ModelSpec.read(models)
    skipped: Counter[str] = Counter()
    cache = train.codes_cache(voice, models, spec, device)
    examples = train.load_examples(voice, "train", spec, cache, skipped)
    assert not skipped and cache.computed == 0, (skipped, cache.computed)
    size = train.optimizer_batch(options, len(examples))
    per_epoch = len(examples) // size
    crops = torch.Generator().manual_seed(options.seed)
    batches = []
    for step in range(steps):
        epoch, position = divmod(step, per_epoch)
        order = train.epoch_order(len(examples), options.seed, epoch)
        picked = order[position * size : (position + 1) * size]
        batches.append(train.collate([examples[i] for i in picked], spec, crops, device))
    return batches


# -- the bare loop ------------------------------------------------------------------------------


class BareLoop:
    """The same model, optimizer and loss weighting as train_voice, stepped with nothing else."""

    def __init__(self, models: Path, options: TrainingOptions, batches: list[Batch]) -> None:
        spec = ModelSpec.read(models)
        model = build_autoregressive(spec)
        self.model = load_strict(model, models / AUTOREGRESSIVE_FILE).to(DEVICE).train()
        self.optimizer = torch.optim.AdamW(
            train.parameter_groups(self.model),
            lr=options.learning_rate,
            betas=BETAS,
            fused=True,  # as train.build_optimizer
        )
        self.weights = (options.text_weight(LANGUAGE), options.mel_lr_weight)
        self.batches = batches
        # train_voice seeds the global RNG (dropout) after loading its model: the same state
        self.rng = torch.Generator().manual_seed(options.seed).get_state()
        self.seconds: list[float] = []
        self.losses: list[tuple[float, float]] = []

    def step(self, index: int) -> None:
        batch = self.batches[index]
        theirs = torch.get_rng_state()
        torch.set_rng_state(self.rng)
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        latent = self.model.get_conditioning(batch.conditioning)
        loss_text, loss_mel, _ = self.model(
            latent, batch.text, batch.text_lengths, batch.codes, batch.wav_lengths
        )
        (self.weights[0] * loss_text + self.weights[1] * loss_mel).backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.optimizer.step()
        self.seconds.append(time.perf_counter() - started)
        self.rng = torch.get_rng_state()
        torch.set_rng_state(theirs)
        self.losses.append((loss_text.item(), loss_mel.item()))


# -- the production loop, timed from its callbacks ---------------------------------------------


@dataclass
class Clock:
    """Callback timestamps of one train_voice run; the bare step (if any) runs inside one."""

    bare: BareLoop | None = None
    bare_before: bool = False  # bare step k inside should_stop k, else inside on_progress k
    limit: float = ROUND_LIMIT
    called: float = 0.0
    stops: list[tuple[float, float]] = field(default_factory=list)  # (entered, left)
    progress: list[tuple[float, float]] = field(default_factory=list)
    returned: float = 0.0

    def should_stop(self) -> bool:
        entered = time.perf_counter()
        if entered - self.called > self.limit:
            return True  # the box is too busy: the round is dropped
        if self.bare and self.bare_before:
            self.bare.step(len(self.stops))
        self.stops.append((entered, time.perf_counter()))
        return False

    def on_progress(self, record: TrainProgress) -> None:
        entered = time.perf_counter()
        if self.bare and not self.bare_before:
            self.bare.step(record.step - 1)
        self.progress.append((entered, time.perf_counter()))

    def step_seconds(self) -> list[float]:
        """Each step from the return of its should_stop to the next call, less the callback."""
        steps = []
        for k, (_, started) in enumerate(self.stops):
            if k + 1 < len(self.stops):
                callback = self.progress[k][1] - self.progress[k][0]
                steps.append(self.stops[k + 1][0] - started - callback)
            else:
                steps.append(self.progress[k][0] - started)
        return steps

    def setup_seconds(self) -> float:
        return self.stops[0][0] - self.called

    def end_seconds(self) -> float:
        return self.returned - self.progress[-1][1]


@contextlib.contextmanager
def timed_calls(names: tuple[str, ...]) -> Iterator[dict[str, list[float]]]:
    """Wrap train.py's module functions (or `Class.method`s) to time every call."""
    spent: dict[str, list[float]] = {name: [] for name in names}
    patched = []
    for name in names:
        owner: Any = train
        *path, attribute = name.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, attribute)
        setattr(owner, attribute, stopwatch(original, spent[name]))
        patched.append((owner, attribute, original))
    try:
        yield spent
    finally:
        for owner, attribute, original in patched:
            setattr(owner, attribute, original)


def stopwatch(function: Callable[..., Any], into: list[float]) -> Callable[..., Any]:
    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - started)

    return timed


class CutShort(Exception):
    """A run stopped at ROUND_LIMIT; its run folder is removed so no later round resumes it."""


def run_production(
    voice: Path, models: Path, options: TrainingOptions, clock: Clock, names: tuple[str, ...]
) -> tuple[train.TrainResult, dict[str, list[float]]]:
    with timed_calls(names) as spent:
        clock.called = time.perf_counter()
        result = train_voice(voice, models, options, LANGUAGE, clock.should_stop, clock.on_progress)
        clock.returned = time.perf_counter()
    if not result.finished:
        shutil.rmtree(result.run_dir)
        raise CutShort(f"{voice.name}: stopped after {result.step} steps")
    assert not result.skipped, result.skipped
    # the train stage would promote or reject the candidate; without it, a run whose candidate
    # is still there counts as undecided and would be handed back to the next round
    result.model_path.unlink()
    return result, spent


def metrics(result: train.TrainResult) -> list[dict[str, Any]]:
    lines = (result.run_dir / train.METRICS).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


# -- measurements -------------------------------------------------------------------------------


def first_run(voice: Path, models: Path) -> dict[str, Any]:
    """One epoch on a fresh voice: the one-time costs (tokenizer load, every line's dVAE codes,
    the first steps of the process)."""
    clock = Clock(limit=math.inf)
    result, _ = run_production(voice, models, step_options(1), clock, ())
    return {
        "setup_seconds": clock.setup_seconds(),
        "codes_computed": result.codes_computed,
        "step_seconds": clock.step_seconds(),
        "end_seconds": clock.end_seconds(),
    }


def interleaved_round(
    voice: Path,
    models: Path,
    options: TrainingOptions,
    batches: list[Batch],
    bare_before: bool,
    limit: float,
) -> dict[str, Any]:
    bare = BareLoop(models, options, batches)
    clock = Clock(bare=bare, bare_before=bare_before, limit=limit)
    result, spent = run_production(voice, models, options, clock, TIMED)
    production = clock.step_seconds()
    assert len(production) == len(bare.seconds) == len(batches) == result.total_steps
    assert all(len(spent[name]) == len(batches) for name in TIMED), spent
    records = metrics(result)
    differences = [
        abs(record[key] - loss)
        for record, pair in zip(records, bare.losses, strict=True)
        for key, loss in zip(("loss_text", "loss_mel"), pair, strict=True)
    ]
    steady = slice(WARMUP, None)
    rest = [
        step - collate - optimize
        for step, collate, optimize in zip(
            production, spent["collate"], spent["optimizer_step"], strict=True
        )
    ]
    paired = [p / b for p, b in zip(production[steady], bare.seconds[steady], strict=True)]
    production_ms = ms(statistics.median(production[steady]))
    bare_ms = ms(statistics.median(bare.seconds[steady]))
    return {
        "bare_before": bare_before,
        "steps": len(production),
        "production_ms": production_ms,
        "bare_ms": bare_ms,
        "ratio": production_ms / bare_ms,
        "paired_ratios": paired,
        "paired_ratio_median": statistics.median(paired),
        "production_mean_ms": ms(statistics.fmean(production[steady])),
        "bare_mean_ms": ms(statistics.fmean(bare.seconds[steady])),
        "collate_ms": ms(statistics.median(spent["collate"][steady])),
        "optimizer_step_ms": ms(statistics.median(spent["optimizer_step"][steady])),
        "rest_ms": ms(statistics.median(rest[steady])),
        "max_loss_difference": max(differences),
        "setup_seconds": clock.setup_seconds(),
        "end_seconds": clock.end_seconds(),
        "production_step_ms": [ms(s) for s in production],
        "bare_step_ms": [ms(s) for s in bare.seconds],
        "collate_step_ms": [ms(s) for s in spent["collate"]],
        "optimizer_step_step_ms": [ms(s) for s in spent["optimizer_step"]],
    }


def cadence_round(voice: Path, models: Path, limit: float) -> dict[str, Any]:
    """Default options (save and validate every 5 epochs) for CADENCE_EPOCHS, not interleaved."""
    options = TrainingOptions(epochs=CADENCE_EPOCHS, batch_size=CPU_BATCH, device=DEVICE, seed=SEED)
    clock = Clock(limit=limit)
    result, spent = run_production(voice, models, options, clock, CADENCE_TIMED)
    records = metrics(result)
    loop = clock.progress[-1][1] - clock.stops[0][1]
    return {
        "steps": result.total_steps,
        "metrics_steps_per_s": records[-1]["steps_per_s"],
        "loop_seconds": loop,
        "loop_steps_per_s": result.total_steps / loop,
        "median_step_ms": ms(statistics.median(clock.step_seconds())),
        "checkpoint_saves": len(spent["Learner.save"]),
        "checkpoint_save_ms": [ms(s) for s in spent["Learner.save"]],
        # the last write_charts call is the end-of-run one, outside the loop
        "charts_ms": [ms(s) for s in spent["write_charts"]],
        "validation_ms": [ms(s) for s in spent["validate"]],
        "validation_lines": len(PHRASES) - TRAIN_LINES,
        "setup_seconds": clock.setup_seconds(),
        "end_seconds": clock.end_seconds(),
    }


@contextlib.contextmanager
def others_busy() -> Iterator[dict[str, float]]:
    """How many cores other processes kept busy meanwhile, on average (from /proc/stat)."""
    load: dict[str, float] = {}
    machine_before, own_before, started = busy_ticks()
    yield load
    machine_after, own_after, ended = busy_ticks()
    ticks = (machine_after - machine_before) - (own_after - own_before)
    load["cores"] = ticks / os.sysconf("SC_CLK_TCK") / (ended - started)


def wait_for_quiet(at_most: float) -> float:
    """Wait (up to at_most s) until other processes keep fewer than QUIET_CORES cores busy over
    a second; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < at_most:
        with others_busy() as load:
            time.sleep(1)
        if load["cores"] < QUIET_CORES:
            break
    return time.monotonic() - started


def busy_ticks() -> tuple[int, int, float]:
    """Busy clock ticks of the whole machine and of this process, and the time."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    machine_busy = user + nice + system + irq + softirq + steal
    return machine_busy, int(own[11]) + int(own[12]), time.monotonic()


def ms(seconds: float) -> float:
    return 1000 * seconds


def summarise(rounds: list[dict[str, Any]], cadence: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str, of: list[dict[str, Any]] = rounds) -> float:
        return statistics.median(r[key] for r in of)

    production, bare = median("production_ms"), median("bare_ms")
    in_loop_charts = [r["charts_ms"][0] for r in cadence if len(r["charts_ms"]) > 1]
    quiet = [r for r in rounds if r["other_processes_cores"] < QUIET_CORES]
    return {
        "production_ms": production,
        "bare_ms": bare,
        "ratio": median("ratio"),
        "ratio_of_medians": production / bare,
        "ratio_per_round": [r["ratio"] for r in rounds],
        "paired_ratio_median": statistics.median(q for r in rounds for q in r["paired_ratios"]),
        "other_processes_cores": [r["other_processes_cores"] for r in rounds],
        "quiet_rounds": len(quiet),
        "quiet_production_ms": median("production_ms", quiet) if quiet else None,
        "quiet_bare_ms": median("bare_ms", quiet) if quiet else None,
        "quiet_ratio": median("ratio", quiet) if quiet else None,
        "production_steps_per_s": 1000 / production,
        "bare_steps_per_s": 1000 / bare,
        "collate_ms": median("collate_ms"),
        "optimizer_step_ms": median("optimizer_step_ms"),
        "rest_ms": median("rest_ms"),
        "max_loss_difference": max(r["max_loss_difference"] for r in rounds),
        "setup_seconds_cached": median("setup_seconds"),
        "end_seconds": median("end_seconds"),
        "cadence_rounds": len(cadence),
        "cadence_metrics_steps_per_s": middle(r["metrics_steps_per_s"] for r in cadence),
        "cadence_loop_steps_per_s": middle(r["loop_steps_per_s"] for r in cadence),
        "cadence_median_step_ms": middle(r["median_step_ms"] for r in cadence),
        "checkpoint_save_ms": middle(s for r in cadence for s in r["checkpoint_save_ms"]),
        "charts_ms": middle(in_loop_charts),
        "validation_ms": middle(s for r in cadence for s in r["validation_ms"]),
    }


def middle(values: Iterable[float]) -> float | None:
    """The median, or None when there is nothing (every default-cadence run was cut short)."""
    values = list(values)
    return statistics.median(values) if values else None


def measure(base: Path, rounds: int, epochs: int, deadline: float) -> dict[str, Any]:
    models = base / "models"
    write_tiny_models(models)
    speech = base / "speech"
    audio_seconds = write_speech(speech)
    voice = make_voice(base, "bench", speech, validation=False)
    cadence_voice = make_voice(base, "cadence", speech, validation=True)

    one_time = first_run(voice, models)
    options = step_options(epochs)
    batch_size = train.optimizer_batch(options, TRAIN_LINES)
    steps = epochs * (TRAIN_LINES // batch_size)
    batches = prepared_batches(voice, models, options, steps)
    results: list[dict[str, Any]] = []
    cadence: list[dict[str, Any]] = []
    dropped = []

    def limit() -> float:
        """ROUND_LIMIT; less once the budget is nearly spent and a round has been measured."""
        return min(ROUND_LIMIT, deadline - time.monotonic()) if results else ROUND_LIMIT

    while len(results) < rounds and time.monotonic() < deadline:
        waited = wait_for_quiet(min(QUIET_WAIT, limit()))
        number = len(results) + len(dropped)
        try:
            with others_busy() as load:
                result = interleaved_round(
                    voice, models, options, batches, number % 2 == 0, limit()
                )
        except CutShort as error:
            dropped.append(str(error))
            print(f"round dropped: {error} (time limit)", flush=True)
            continue
        result.update(other_processes_cores=load["cores"], waited_for_quiet=waited)
        try:
            with others_busy() as load:
                cadence.append(cadence_round(cadence_voice, models, limit()))
            cadence[-1]["other_processes_cores"] = load["cores"]
        except CutShort as error:
            dropped.append(str(error))
        results.append(result)
        print(
            f"round {len(results)}/{rounds}: production {result['production_ms']:.1f} ms/step, "
            f"bare {result['bare_ms']:.1f}, ratio {result['ratio']:.3f} "
            f"(collate {result['collate_ms']:.1f}, "
            f"optimizer_step {result['optimizer_step_ms']:.1f}); "
            f"other processes used {result['other_processes_cores']:.2f} cores",
            flush=True,
        )
    if not results:
        raise SystemExit(f"no round finished within the time budget: {dropped}")
    return {
        "dataset": {
            "train_lines": TRAIN_LINES,
            "validation_lines_cadence_voice": len(PHRASES) - TRAIN_LINES,
            "train_audio_seconds": audio_seconds,
            "espeak_speed": ESPEAK_SPEED,
            "batch_size": batch_size,
            "steps_per_epoch": steps // epochs,
            "conditioning_shape": list(batches[0].conditioning.shape),
        },
        "options": {"epochs": epochs, "steps": steps, "warmup_steps_left_out": WARMUP},
        "summary": summarise(results, cadence),
        "dropped_rounds": dropped,
        "one_time": one_time,
        "rounds": results,
        "cadence": cadence,
    }


# -- report -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return describe_machine(
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        gpu=torch.cuda.is_available(),
    )


def report(measured: dict[str, Any]) -> str:
    s, data, one = measured["summary"], measured["dataset"], measured["one_time"]
    rounds = len(measured["rounds"])
    quiet = (
        f"{s['quiet_rounds']} quiet round(s) (others < {QUIET_CORES} cores): production "
        f"{s['quiet_production_ms']:.1f} ms, bare {s['quiet_bare_ms']:.1f} ms, "
        f"ratio {s['quiet_ratio']:.3f}"
        if s["quiet_rounds"]
        else f"no quiet round (others < {QUIET_CORES} cores)"
    )
    ok = "ok" if s["ratio"] <= TARGET_RATIO else "MISSED"
    rows = [
        ("", "production", "bare", "target"),
        ("ms per step (median)", f"{s['production_ms']:.1f}", f"{s['bare_ms']:.1f}", ""),
        (
            "steps/s",
            f"{s['production_steps_per_s']:.2f}",
            f"{s['bare_steps_per_s']:.2f}",
            "",
        ),
        ("production / bare", f"{s['ratio']:.3f}", "", f"≤ {TARGET_RATIO} {ok}"),
    ]
    lines = [
        f"Fine-tuning, tiny models on the CPU ({torch.get_num_threads()} threads): "
        f"batch {data['batch_size']}, {data['train_lines']} lines, {rounds} rounds of "
        f"{measured['options']['steps']} steps (first {WARMUP} of each left out)",
        *(f"{a:<24}{b:>12}{c:>10}   {d}" for a, b, c, d in rows),
        f"ratio per round {'/'.join(f'{r:.3f}' for r in s['ratio_per_round'])}; "
        f"median of paired step ratios {s['paired_ratio_median']:.3f}",
        f"cores other processes used, per round "
        f"{'/'.join(f'{c:.2f}' for c in s['other_processes_cores'])}; {quiet}",
        f"inside a production step (median ms): collate {s['collate_ms']:.1f}, "
        f"optimizer_step {s['optimizer_step_ms']:.1f}, "
        f"rest {s['rest_ms']:.1f}",
        f"losses of the two sides: max |difference| {s['max_loss_difference']:.3g}",
        cadence_line(s),
        f"left out: first setup {one['setup_seconds']:.2f} s ({one['codes_computed']} codes), "
        f"later setups {s['setup_seconds_cached']:.2f} s, end of run {s['end_seconds']:.2f} s",
    ]
    return "\n".join(lines)


def cadence_line(s: dict[str, Any]) -> str:
    if not s["cadence_rounds"]:
        return "default cadence: every run was cut short"
    charts = f"{s['charts_ms']:.0f}" if s["charts_ms"] is not None else "-"
    return (
        f"default cadence ({CADENCE_EPOCHS} epochs, {s['cadence_rounds']} runs): metrics.jsonl "
        f"{s['cadence_metrics_steps_per_s']:.2f} steps/s; "
        f"checkpoint save {s['checkpoint_save_ms']:.0f} ms, charts {charts} ms, "
        f"validation ({len(PHRASES) - TRAIN_LINES} lines) {s['validation_ms']:.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 24 steps, not 8 of 48")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds after which no new round starts (default 120, or 270 without --quick)",
    )
    args = parser.parse_args(argv)
    rounds, epochs = (3, 8) if args.quick else (8, 16)
    budget = args.budget if args.budget is not None else 120 if args.quick else 270
    started = time.monotonic()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="voicedrop-train-bench-") as tmp:
        measured = measure(Path(tmp), rounds, epochs, started + budget)
    info["load_average_after"] = os.getloadavg()
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench.train_bench" + (" --quick" if args.quick else ""),
        "machine": info,
        "round_count": len(measured["rounds"]),
        "targets": {"ratio_production_over_bare": TARGET_RATIO},
        "released_dims": "not measured: steps/s, memory and the batch-size picker at TorToiSe's "
        "released dimensions need a GPU machine",
        "wall_seconds": time.monotonic() - started,
        **measured,
    }
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(report(measured))
    print(f"wrote {OUT_FILE} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
