"""Fine-tune a voice's TorToiSe autoregressive model on its dataset, resumably.

What ai-voice-cloning's "Run Training" does through DL-Art-School, as one readable loop:
dataset lines -> text tokens, dVAE codes and conditioning mels -> UnifiedVoice's text and mel
cross-entropy -> AdamW. Everything a run needs to continue after a kill -9 (model, optimizer,
scheduler, step, RNG states) is in one checkpoint written atomically, so a night's window can
end at any step and the next night picks up where it stopped.

    voices/<voice>/training/codes/<stem>.pt      dVAE codes per dataset line (daemon.training.dvae)
    voices/<voice>/training/<run>/run.json       what the run trains on (its fingerprint)
    voices/<voice>/training/<run>/checkpoint.pt  the last resumable state
    voices/<voice>/training/<run>/metrics.jsonl  one record per optimizer step
    voices/<voice>/training/<run>/loss.png, lr.png
    voices/<voice>/training/<run>/result.json    written when the run finished
    voices/<voice>/training/<run>/candidate.pth  the fine-tuned model, until the train stage
                                                 promotes it (daemon.quality.promotion)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
import torch.nn.functional as F
from loguru import logger
from torch import nn

from daemon.core.atomic import atomic_path, write_text
from daemon.core.config import TrainingSettings
from daemon.core.device import resolve_device
from daemon.core.files import cached_sha256
from daemon.core.jobs import TrainProgress
from daemon.dataset.lists import CLIP_RATE, UNKNOWN_TOKEN, tortoise_tokenizer
from daemon.training.dvae import CodesCache, build_dvae, wave_to_mel
from daemon.training.memory import StepShape, largest_micro_batch
from daemon.training.precision import Precision, autocast, grad_scaler, resolve_precision
from daemon.tts.checkpoints import (
    build_autoregressive,
    load_strict,
    read_state_dict,
    save_checkpoint,
)
from daemon.tts.spec import AUTOREGRESSIVE_FILE, DVAE_FILE, ModelSpec, WeightsMissing

MAX_TEXT_TOKENS = 200  # DLAS/ai-voice-cloning skip longer texts
MAX_SAMPLES = 255995  # ... and longer clips (~11.6 s)
MIN_SAMPLES = int(0.6 * CLIP_RATE)  # shorter clips are dropped
CONDITIONING_SAMPLES = 44000  # each of the 2 conditioning crops
CONDITIONING_CROPS = 2
WEIGHT_DECAY = 0.01
BETAS = (0.9, 0.96)
GRAD_CLIP = 4.0
LR_GAMMA = 0.5
DEFAULT_BATCH = 128  # ai-voice-cloning's optimizer batch
CPU_MICRO_BATCH = 4
MEL_COMPRESSION = 1024  # samples per dVAE code (UnifiedVoice's mel_length_compression)
WARN_TAIL = 5  # steps averaged for the end-of-run loss comparison
VAL_RISE = 1.02  # the last validation loss this much above its best means overfitting
# When a run trains and how its model is judged, not what it trains: changing them never
# starts a new run.
UNTRAINED_SETTINGS = (
    "schedule",
    "until",
    "catch_up",
    "promote_max_cer_rise",
    "promote_max_similarity_drop",
    "promote_max_loss_rise",
    "promote_texts",
)
CHECKPOINT = "checkpoint.pt"
CANDIDATE = "candidate.pth"
METRICS = "metrics.jsonl"
RESULT = "result.json"
# transformers 4.31.0 calls torch.utils.checkpoint without use_reentrant, which torch warns
# about at every checkpointed block; the reentrant default it gets is right for this loop
# (inputs that need gradients, backward() rather than autograd.grad).
warnings.filterwarnings(
    "ignore", message="torch.utils.checkpoint: the use_reentrant parameter", category=UserWarning
)


class NoTrainingLines(Exception):
    """No line of the dataset can be learnt from: the voice needs more (or cleaner) clips."""


class OptimizerMissing(Exception):
    """training.optimizer names a package that is not installed: the user must install it."""


@dataclass(frozen=True)
class TrainingOptions(TrainingSettings):
    """What a run uses: a voice's `training.*` settings, the device it runs on and its seed."""

    device: str = "auto"
    seed: int = 0

    @classmethod
    def from_settings(cls, training: TrainingSettings, device: str = "auto") -> TrainingOptions:
        return cls(**dataclasses.asdict(training), device=device)

    def text_weight(self, language: str) -> float:
        """ai-voice-cloning's default: English text is learnt already, another language not."""
        if self.text_lr_weight != "auto":
            return float(self.text_lr_weight)
        return 0.01 if language.lower().startswith("en") else 1.0


@dataclass(frozen=True)
class TrainResult:
    finished: bool  # False: should_stop() ended it; the next call resumes
    run_dir: Path
    step: int
    total_steps: int
    epoch: int  # epochs completed
    model_path: Path | None  # <run>/candidate.pth once finished, until promoted or rejected
    model_sha256: str | None
    losses: dict[str, float]  # the last step's loss_text, loss_mel, loss_total
    text_weight: float
    skipped: dict[str, int]  # dataset lines left out, by reason
    codes_computed: int  # lines whose dVAE codes were not in the cache
    warnings: list[str]


@dataclass
class Example:
    """One usable dataset line."""

    wave: torch.Tensor  # float32 samples at 22050 Hz
    text: torch.Tensor  # int64 token ids
    codes: torch.Tensor  # int64 dVAE codes
    padded_mel: torch.Tensor | None = None  # a clip shorter than a crop: its one mel, once


@dataclass
class Batch:
    text: torch.Tensor
    text_lengths: torch.Tensor
    codes: torch.Tensor
    wav_lengths: torch.Tensor  # in samples: UnifiedVoice divides by 1024 itself
    conditioning: torch.Tensor  # (b, 2, 80, frames) mels

    def __len__(self) -> int:
        return self.text.shape[0]

    def split(self, size: int) -> Iterator[Batch]:
        for start in range(0, len(self), size):
            yield Batch(*(getattr(self, f.name)[start : start + size] for f in _BATCH_FIELDS))


_BATCH_FIELDS = dataclasses.fields(Batch)


def train_voice(
    voice_dir: Path,
    models_dir: Path,
    options: TrainingOptions,
    language: str,
    should_stop: Callable[[], bool],
    on_progress: Callable[[TrainProgress], None],
    dvae: Path | None = None,
) -> TrainResult:
    """Train (or resume training) the voice's autoregressive model until the run finishes or
    should_stop() turns true; either way the state is checkpointed before returning.
    `dvae` is dvae.pth when it is not in `models_dir` (see daemon.weights.store.dvae_file)."""
    voice_dir, models_dir = Path(voice_dir), Path(models_dir)
    device = torch.device(resolve_device(options.device))
    spec = ModelSpec.read(models_dir)
    text_weight = options.text_weight(language)
    base = models_dir / AUTOREGRESSIVE_FILE
    if not base.is_file():
        raise WeightsMissing(models_dir, [AUTOREGRESSIVE_FILE])

    # data: every line's tokens and codes, computed once and cached
    skipped: Counter[str] = Counter()
    cache = codes_cache(voice_dir, models_dir, spec, device, dvae)
    train = load_examples(voice_dir, "train", spec, cache, skipped)
    validation = load_examples(voice_dir, "validation", spec, cache, skipped)
    del cache.dvae
    if not train:
        raise NoTrainingLines(f"{voice_dir.name} has no usable training lines ({dict(skipped)})")

    # model, optimizer, schedule; then the last checkpoint of this run on top
    run_dir = open_run(voice_dir / "training", run_fingerprint(voice_dir, base, options, language))
    if (run_dir / RESULT).exists():  # trained already; its candidate awaits the decision
        return read_result(run_dir)
    saved = read_state_dict(run_dir / CHECKPOINT) if (run_dir / CHECKPOINT).exists() else None
    model = load_strict(build_autoregressive(training_spec(spec, options, device)), base)
    model = model.to(device).train()
    precision = resolve_precision(options.precision, device)
    batch_size = saved["batch_size"] if saved else optimizer_batch(options, len(train))
    fits = memory_cap(device, step_shape(model, train), precision, options)
    micro_batch = saved["micro_batch"] if saved else pick_micro_batch(options, batch_size, fits)
    steps_per_epoch = len(train) // batch_size  # the partial last batch is dropped, as DLAS does
    total_steps = options.epochs * steps_per_epoch
    optimizer = build_optimizer(model, options)
    milestones = [epoch * steps_per_epoch for epoch in options.lr_schedule]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=LR_GAMMA)
    scaler = grad_scaler(precision)
    crops = torch.Generator().manual_seed(options.seed)
    torch.manual_seed(options.seed)  # dropout; a resumed run gets the saved state instead
    learner = Learner(model, optimizer, scheduler, scaler, crops)
    step = learner.restore(saved) if saved else 0
    metrics = Metrics(run_dir / METRICS, keep_through=step)

    # the loop: one optimizer step per batch, checkpoints at epoch ends and when asked to stop
    weights = (text_weight, options.mel_lr_weight)
    started, start_step = time.monotonic(), step
    while step < total_steps:
        if should_stop():
            break
        epoch, position = divmod(step, steps_per_epoch)
        order = epoch_order(len(train), options.seed, epoch)
        picked = order[position * batch_size : (position + 1) * batch_size]
        batch = collate([train[i] for i in picked], spec, crops, device)
        while True:
            try:
                loss_text, loss_mel = optimizer_step(
                    model, optimizer, scaler, batch, micro_batch, weights, precision
                )
                break
            except torch.OutOfMemoryError:
                if micro_batch == 1:
                    raise
                micro_batch //= 2  # recover instead of dying; kept for the rest of the run
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        step += 1

        elapsed = time.monotonic() - started
        steps_per_s = (step - start_step) / elapsed if elapsed > 0 else 0.0
        epoch_done = step % steps_per_epoch == 0
        record = {
            "step": step,
            "epoch": step / steps_per_epoch,
            "loss_text": loss_text,
            "loss_mel": loss_mel,
            "loss_total": weights[0] * loss_text + weights[1] * loss_mel,
            "lr": lr,
            "steps_per_s": steps_per_s,
            "batch_size": batch_size,
            "micro_batch": micro_batch,
        }
        last = step == total_steps
        if validation and epoch_done and ((epoch + 1) % options.validate_every == 0 or last):
            record.update(
                validate(model, validation, spec, micro_batch, weights, precision, options)
            )
        metrics.append(record)
        eta = (total_steps - step) / steps_per_s if steps_per_s else None
        on_progress(
            TrainProgress(**record, total_steps=total_steps, epochs=options.epochs, eta_s=eta)
        )
        if epoch_done and (epoch + 1) % options.save_every == 0 and not last:
            learner.save(run_dir / CHECKPOINT, step, batch_size, micro_batch)
            write_charts(run_dir, metrics.records)

    finished = step >= total_steps
    model_path = model_sha256 = None
    if finished:
        model_path = save_checkpoint(
            {name: value.detach().cpu() for name, value in model.state_dict().items()},
            run_dir / CANDIDATE,
        )
        model_sha256 = cached_sha256(model_path)
    else:
        learner.save(run_dir / CHECKPOINT, step, batch_size, micro_batch)
    write_charts(run_dir, metrics.records)
    result = TrainResult(
        finished=finished,
        run_dir=run_dir,
        step=step,
        total_steps=total_steps,
        epoch=step // steps_per_epoch,
        model_path=model_path,
        model_sha256=model_sha256,
        losses={k: metrics.records[-1][k] for k in LOSSES} if metrics.records else {},
        text_weight=text_weight,
        skipped=dict(skipped),
        codes_computed=cache.computed,
        warnings=training_warnings(metrics.records, skipped),
    )
    if finished:
        write_text(run_dir / RESULT, json.dumps(result_json(result), indent=1) + "\n")
        (run_dir / CHECKPOINT).unlink(missing_ok=True)  # the size of three models, no longer needed
    return result


LOSSES = ("loss_text", "loss_mel", "loss_total")


# -- data --------------------------------------------------------------------------------------


def codes_cache(
    voice_dir: Path,
    models_dir: Path,
    spec: ModelSpec,
    device: torch.device,
    dvae_path: Path | None = None,
) -> CodesCache:
    """The dVAE (`dvae_path`, else dvae.pth in `models_dir`), strictly loaded, behind the
    per-line codes cache."""
    path = Path(dvae_path) if dvae_path is not None else models_dir / DVAE_FILE
    if not path.is_file():
        raise WeightsMissing(path.parent, [DVAE_FILE])
    dvae = load_strict(build_dvae(spec), path).to(device).eval()
    return CodesCache(voice_dir / "training" / "codes", dvae, cached_sha256(path))


def load_examples(
    voice_dir: Path, split: str, spec: ModelSpec, cache: CodesCache, skipped: Counter[str]
) -> list[Example]:
    """The usable lines of `split`.txt; the others are counted in `skipped` by reason."""
    listing = voice_dir / "dataset" / f"{split}.txt"
    if not listing.exists():
        return []
    ar = spec.autoregressive
    max_tokens = min(MAX_TEXT_TOKENS, ar["max_text_tokens"])
    # the mel position embedding holds max_mel_tokens codes plus start, stop and one spare
    max_samples = min(MAX_SAMPLES, (ar["max_mel_tokens"] - 1) * 1024 - 1)
    examples = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        audio_name, _, text = line.partition("|")
        audio = voice_dir / "dataset" / audio_name
        tokens = tortoise_tokenizer().encode(text.strip())
        reason = line_problem(audio, tokens, max_tokens)
        wave = read_wave(audio) if not reason else None
        if wave is not None and not MIN_SAMPLES <= wave.numel() <= max_samples:
            reason = "audio too short" if wave.numel() < MIN_SAMPLES else "audio too long"
        if reason:
            skipped[reason] += 1
            continue
        codes = cache.codes(audio, wave)
        examples.append(Example(wave, torch.tensor(tokens, dtype=torch.long), codes))
    return examples


def line_problem(audio: Path, tokens: list[int], max_tokens: int) -> str:
    if not audio.is_file():
        return "audio missing"
    if not tokens:
        return "no text"
    if UNKNOWN_TOKEN in tokens:
        return "untokenisable"  # DLAS drops these silently
    if len(tokens) > max_tokens:
        return "text too long"
    return ""


def read_wave(path: Path) -> torch.Tensor:
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != CLIP_RATE:
        raise ValueError(f"{path} is {rate} Hz; dataset pieces are {CLIP_RATE} Hz")
    return torch.from_numpy(samples.mean(axis=1))


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    """The epoch's shuffle, a function of (seed, epoch) so a resumed run sees the same one."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(count, generator=generator).tolist()


def collate(
    examples: list[Example], spec: ModelSpec, crops: torch.Generator, device: torch.device
) -> Batch:
    """Pad to one length and take the conditioning crops (2 of the same clip, DLAS's default).
    The codes are cut where UnifiedVoice cuts a batch (its longest clip // 1024), here for the
    whole batch, so that every micro-batch keeps the batch's length (see `losses`)."""
    stop_mel = 8193
    text = nn.utils.rnn.pad_sequence([e.text for e in examples], batch_first=True)
    codes = nn.utils.rnn.pad_sequence(
        [e.codes for e in examples], batch_first=True, padding_value=stop_mel
    )
    wav_lengths = [e.wave.numel() for e in examples]
    codes = codes[:, : max(wav_lengths) // MEL_COMPRESSION]
    mels = torch.stack([mel for e in examples for mel in conditioning_mels(e, crops, device)])
    return Batch(
        text=text.to(device),
        text_lengths=torch.tensor([len(e.text) for e in examples], device=device),
        codes=codes.to(device),
        wav_lengths=torch.tensor(wav_lengths, device=device),
        conditioning=mels.view(len(examples), CONDITIONING_CROPS, *mels.shape[1:]),
    )


def conditioning_mels(
    example: Example, crops: torch.Generator, device: torch.device
) -> list[torch.Tensor]:
    """The mels of the example's crops. A clip no longer than a crop is always the same
    zero-padded window, so its mel is computed once per run instead of every step."""
    if example.wave.numel() > CONDITIONING_SAMPLES:
        pieces = [crop(example.wave, crops) for _ in range(CONDITIONING_CROPS)]
        return list(wave_to_mel(torch.stack(pieces).to(device)))
    if example.padded_mel is None or example.padded_mel.device != device:
        padded = crop(example.wave, crops).unsqueeze(0).to(device)
        example.padded_mel = wave_to_mel(padded)[0]
    return [example.padded_mel] * CONDITIONING_CROPS


def crop(wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random CONDITIONING_SAMPLES window; a short clip is zero-padded instead."""
    if wave.numel() <= CONDITIONING_SAMPLES:
        return F.pad(wave, (0, CONDITIONING_SAMPLES - wave.numel()))
    start = int(torch.randint(wave.numel() - CONDITIONING_SAMPLES + 1, (1,), generator=generator))
    return wave[start : start + CONDITIONING_SAMPLES]


# -- one step ----------------------------------------------------------------------------------


def losses(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """UnifiedVoice's text and mel cross-entropy, the conditioning encoder inside the graph.
    Its mean runs over every padded position, so a micro-batch cut to its own longest line
    (UnifiedVoice's clip_inputs) would weigh padding differently from the whole batch: the
    batch comes cut once (`collate`) and is not cut again, so the batch's loss is the
    line-weighted mean of its micro-batches' whatever the split."""
    latent = model.get_conditioning(batch.conditioning)
    loss_text, loss_mel, _ = model(
        latent, batch.text, batch.text_lengths, batch.codes, batch.wav_lengths, clip_inputs=False
    )
    return loss_text, loss_mel


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: Batch,
    micro_batch: int,
    weights: tuple[float, float],
    precision: Precision,
) -> tuple[float, float]:
    """Accumulate gradients over micro-batches, clip, step; the batch's mean losses."""
    optimizer.zero_grad(set_to_none=True)
    totals = [0.0, 0.0]
    for part in batch.split(micro_batch):
        share = len(part) / len(batch)
        with autocast(precision, part.text.device):
            loss_text, loss_mel = losses(model, part)
            loss = (weights[0] * loss_text + weights[1] * loss_mel) * share
        scaler.scale(loss).backward()
        totals[0] += loss_text.item() * share
        totals[1] += loss_mel.item() * share
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    scaler.step(optimizer)
    scaler.update()
    return totals[0], totals[1]


@torch.no_grad()
def validate(
    model: nn.Module,
    examples: list[Example],
    spec: ModelSpec,
    micro_batch: int,
    weights: tuple[float, float],
    precision: Precision,
    options: TrainingOptions,
) -> dict[str, float]:
    """Mean losses over the validation lines, with the same crops every time and padded to
    one length (as a training batch is), so they compare whatever the micro-batch."""
    model.eval()
    device = next(model.parameters()).device
    crops = torch.Generator().manual_seed(options.seed)
    sums = [0.0, 0.0]
    for part in collate(examples, spec, crops, device).split(micro_batch):
        with autocast(precision, device):
            loss_text, loss_mel = losses(model, part)
        sums[0] += loss_text.item() * len(part)
        sums[1] += loss_mel.item() * len(part)
    model.train()
    text, mel = sums[0] / len(examples), sums[1] / len(examples)
    return {
        "val_loss_text": text,
        "val_loss_mel": mel,
        "val_loss_total": weights[0] * text + weights[1] * mel,
    }


def parameter_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and conv kernels only: not biases, norms, embeddings."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, rest = [], []
    for parameter in model.parameters():
        wanted = parameter.ndim >= 2 and id(parameter) not in embeddings
        (decay if wanted else rest).append(parameter)
    return [
        {"params": decay, "weight_decay": WEIGHT_DECAY},
        {"params": rest, "weight_decay": 0.0},
    ]


def optimizer_batch(options: TrainingOptions, lines: int) -> int:
    """Lines per optimizer step, as ai-voice-cloning means it: 128 unless configured, never
    more than the lines there are (so an epoch always has a whole batch)."""
    size = DEFAULT_BATCH if options.batch_size == "auto" else int(options.batch_size)
    return max(1, min(size, lines))


def pick_micro_batch(options: TrainingOptions, batch: int, cap: int) -> int:
    """Lines per forward pass: the configured size, or the fewest accumulation steps
    (ai-voice-cloning's mega_batch_factor) whose micro-batch fits under `cap`."""
    if options.micro_batch != "auto":
        return min(int(options.micro_batch), batch)
    accumulation = math.ceil(batch / cap)
    return math.ceil(batch / accumulation)


def memory_cap(
    device: torch.device, shape: StepShape, precision: Precision, options: TrainingOptions
) -> int:
    """The largest micro-batch the device's free memory takes (a fixed small one on CPU)."""
    if device.type != "cuda":
        return CPU_MICRO_BATCH
    free = torch.cuda.mem_get_info(device)[0]
    checkpointing = checkpointing_on(options, device)
    return largest_micro_batch(free, shape, precision, checkpointing, options.optimizer)


def step_shape(model: nn.Module, examples: list[Example]) -> StepShape:
    """The model's size and the longest line, which every micro-batch may be padded to."""
    return StepShape(
        layers=len(model.gpt.h),
        model_dim=model.model_dim,
        heads=model.heads,
        parameters=sum(p.numel() for p in model.parameters()),
        text_tokens=max(len(e.text) for e in examples),
        mel_codes=max(e.wave.numel() for e in examples) // MEL_COMPRESSION,
    )


def build_optimizer(model: nn.Module, options: TrainingOptions) -> torch.optim.Optimizer:
    """AdamW with the recipe's groups and betas: torch's fused kernels, on CUDA (a launch for
    all tensors) and on the CPU alike (there 3.4-4.4x faster than foreach, bench/RESULTS.md); or
    bitsandbytes' 8-bit AdamW when configured."""
    groups = parameter_groups(model)
    if options.optimizer == "adamw8bit":
        try:
            import bitsandbytes
        except ImportError as exc:
            raise OptimizerMissing(
                "training.optimizer is adamw8bit, which needs bitsandbytes: "
                "pip install 'voicedrop[train-8bit]' (or set training.optimizer: adamw)"
            ) from exc
        return bitsandbytes.optim.AdamW8bit(groups, lr=options.learning_rate, betas=BETAS)
    return torch.optim.AdamW(groups, lr=options.learning_rate, betas=BETAS, fused=True)


def checkpointing_on(options: TrainingOptions, device: torch.device) -> bool:
    """Gradient checkpointing as configured (auto: on CUDA, where memory is short)."""
    if options.checkpointing == "auto":
        return device.type == "cuda"
    return bool(options.checkpointing)


def training_spec(spec: ModelSpec, options: TrainingOptions, device: torch.device) -> ModelSpec:
    """The spec with gradient checkpointing of the GPT2 blocks as configured (tortoise passes
    it to GPT2Config, which turns it on and use_cache off); it changes memory and speed, never
    the weights or the file."""
    enabled = checkpointing_on(options, device)
    return dataclasses.replace(
        spec, autoregressive={**spec.autoregressive, "checkpointing": enabled}
    )


# -- runs, checkpoints, metrics ----------------------------------------------------------------


def run_fingerprint(voice_dir: Path, base: Path, options: TrainingOptions, language: str) -> str:
    """What a run trains on: a checkpoint resumes only into the same lists, model and options."""
    digest = hashlib.sha256()
    for split in ("train", "validation"):
        listing = voice_dir / "dataset" / f"{split}.txt"
        digest.update(listing.read_bytes() if listing.exists() else b"")
    trained = {k: v for k, v in dataclasses.asdict(options).items() if k not in UNTRAINED_SETTINGS}
    settings = {**trained, "language": language, "base": cached_sha256(base)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def open_run(training_dir: Path, fingerprint: str) -> Path:
    """The unfinished run with this fingerprint (or its finished one whose candidate is not
    yet decided on), or a new run folder named by its start time. A run whose settings changed
    (an older version's too) is not resumed: it is named in the log, since its checkpoint is
    left on disk."""
    runs = sorted(p for p in training_dir.glob("*/run.json"))
    for marker in reversed(runs):
        run_dir = marker.parent
        if json.loads(marker.read_text())["fingerprint"] == fingerprint:
            if not (run_dir / RESULT).exists() or (run_dir / CANDIDATE).exists():
                return run_dir
            break
    for marker in runs:
        stale = marker.parent / CHECKPOINT
        if stale.exists():
            logger.warning(
                "{}: starting a new training run: the unfinished run {} was made from other "
                "dataset lines, base model or training settings, so it cannot go on; its "
                "checkpoint ({:.1f} MB) stays in {} until you delete that folder",
                training_dir.parent.name,
                marker.parent.name,
                stale.stat().st_size / 1e6,
                marker.parent,
            )
    name = time.strftime("%Y%m%d-%H%M%S")
    run_dir = training_dir / name
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = training_dir / f"{name}-{suffix}"
    write_text(run_dir / "run.json", json.dumps({"fingerprint": fingerprint}) + "\n")
    return run_dir


@dataclass
class Learner:
    """Everything a checkpoint must carry for a resumed run to continue exactly."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    crops: torch.Generator

    def save(self, path: Path, step: int, batch_size: int, micro_batch: int) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": step,
            "batch_size": batch_size,
            "micro_batch": micro_batch,
            "rng_crops": self.crops.get_state(),
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        save_checkpoint(state, path)

    def restore(self, saved: Mapping[str, Any]) -> int:
        """Put a checkpoint's state back; the step it was taken at."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        self.crops.set_state(saved["rng_crops"])
        torch.set_rng_state(saved["rng_torch"])
        if saved["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["rng_cuda"])
        return int(saved["step"])


class Metrics:
    """metrics.jsonl: records past the checkpoint a run resumes from are dropped, since those
    steps are trained again."""

    def __init__(self, path: Path, keep_through: int) -> None:
        self.path = path
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        self.records = [json.loads(line) for line in lines if line.strip()]
        self.records = [r for r in self.records if r["step"] <= keep_through]
        write_text(path, "".join(json.dumps(r) + "\n" for r in self.records))

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def write_charts(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """loss.png and lr.png, with the Agg canvas only (no pyplot state in a daemon)."""
    from matplotlib.figure import Figure

    steps = [r["step"] for r in records]
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    for key in LOSSES:
        axes.plot(steps, [r[key] for r in records], label=key, linewidth=1)
    validated = [r for r in records if "val_loss_total" in r]
    for key in ("val_loss_text", "val_loss_mel", "val_loss_total"):
        if validated:
            axes.plot([r["step"] for r in validated], [r[key] for r in validated], "o-", label=key)
    axes.set(xlabel="step", ylabel="loss", title="training loss")
    axes.legend()
    save_figure(figure, run_dir / "loss.png")

    figure = Figure(figsize=(8, 3))
    axes = figure.subplots()
    axes.plot(steps, [r["lr"] for r in records])
    axes.set(xlabel="step", ylabel="learning rate", yscale="log", title="learning rate")
    save_figure(figure, run_dir / "lr.png")


def save_figure(figure: Any, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)


def training_warnings(records: list[dict[str, Any]], skipped: Counter[str]) -> list[str]:
    """The known signs of a bad fine-tune, in words for `status`."""
    found = []
    tail = records[-WARN_TAIL:]
    if tail:
        text = sum(r["loss_text"] for r in tail) / len(tail)
        mel = sum(r["loss_mel"] for r in tail) / len(tail)
        if mel > text:
            found.append(
                f"mel loss ({mel:.3f}) ended above text loss ({text:.3f}): expect poor speech; "
                "train longer or add clean clips"
            )
    validation = [r["val_loss_total"] for r in records if "val_loss_total" in r]
    if len(validation) >= 2 and validation[-1] > min(validation) * VAL_RISE:
        found.append(
            f"validation loss rose from {min(validation):.3f} to {validation[-1]:.3f}: "
            "the model is overfitting; fewer epochs would do better"
        )
    if skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
        found.append(f"{sum(skipped.values())} dataset lines skipped ({reasons})")
    return found


def result_json(result: TrainResult) -> dict[str, Any]:
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in dataclasses.asdict(result).items()
    }


def read_result(run_dir: Path) -> TrainResult:
    """A finished run's result.json (other keys, such as the promotion's, are not its own)."""
    saved = json.loads((run_dir / RESULT).read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(TrainResult)}
    result = TrainResult(**{key: value for key, value in saved.items() if key in fields})
    model = result.model_path and Path(result.model_path)
    return dataclasses.replace(result, run_dir=Path(result.run_dir), model_path=model)


def holdout_loss(
    voice_dir: Path,
    models_dir: Path,
    model: Path | None,
    options: TrainingOptions,
    language: str,
    dvae: Path | None = None,
) -> float | None:
    """`model`'s (None: the base model's) validation loss over the voice's hold-out lines,
    computed exactly as training validates, so two models compare on the same crops."""
    device = torch.device(resolve_device(options.device))
    spec = ModelSpec.read(models_dir)
    cache = codes_cache(voice_dir, models_dir, spec, device, dvae)
    examples = load_examples(voice_dir, "validation", spec, cache, Counter())
    del cache.dvae
    if not examples:
        return None
    path = model if model is not None else models_dir / AUTOREGRESSIVE_FILE
    network = load_strict(build_autoregressive(training_spec(spec, options, device)), path)
    network = network.to(device)
    precision = resolve_precision(options.precision, device)
    fits = memory_cap(device, step_shape(network, examples), precision, options)
    micro_batch = pick_micro_batch(options, len(examples), fits)
    weights = (options.text_weight(language), options.mel_lr_weight)
    return validate(network, examples, spec, micro_batch, weights, precision, options)[
        "val_loss_total"
    ]
