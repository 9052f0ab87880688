"""daemon.training.trainer's step at tiny dims on the CPU: gradient checkpointing, the split
into micro-batches, bf16 autocast and the optimizer, each against plain fp32 training."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

from daemon.training.precision import Precision, grad_scaler
from daemon.training.trainer import (
    Batch,
    Example,
    OptimizerMissing,
    TrainingOptions,
    build_optimizer,
    collate,
    losses,
    optimizer_step,
    training_spec,
    validate,
)
from daemon.tts.checkpoints import build_autoregressive, load_strict
from daemon.tts.spec import AUTOREGRESSIVE_FILE, ModelSpec

CPU = torch.device("cpu")
WEIGHTS = (0.01, 1.0)  # English: the recipe's text and mel loss weights
# (text tokens, seconds of audio) of each line: unequal, so micro-batches pad differently
LINES = ((12, 1.2), (30, 2.1), (5, 0.7), (22, 1.6))


def tiny_batch(lines: tuple[tuple[int, float], ...] = LINES) -> Batch:
    """Random tokens, audio and codes of the given lengths, collated as training does."""
    return collate(tiny_examples(lines), ModelSpec.tiny(), torch.Generator().manual_seed(0), CPU)


def tiny_examples(lines: tuple[tuple[int, float], ...] = LINES) -> list[Example]:
    generator = torch.Generator().manual_seed(7)
    examples = []
    for tokens, seconds in lines:
        samples = int(seconds * 22050)
        examples.append(
            Example(
                wave=torch.randn(samples, generator=generator) * 0.1,
                text=torch.randint(3, 250, (tokens,), generator=generator),
                codes=torch.randint(0, 8192, (samples // 1024 + 1,), generator=generator),
            )
        )
    return examples


def tiny_model(models: Path, checkpointing: bool = False, layers: int | None = None) -> nn.Module:
    """The tiny AR from its file (or, with `layers`, a deeper one from the same seed)."""
    options = TrainingOptions(checkpointing=checkpointing)
    spec = training_spec(ModelSpec.tiny(), options, CPU)
    if layers is None:
        return load_strict(build_autoregressive(spec), models / AUTOREGRESSIVE_FILE).train()
    deeper = dataclasses.replace(spec, autoregressive={**spec.autoregressive, "layers": layers})
    torch.manual_seed(3)
    return build_autoregressive(deeper).train()


def step_gradients(
    model: nn.Module, batch: Batch, micro_batch: int, precision: Precision = Precision.FP32
) -> tuple[tuple[float, float], dict[str, torch.Tensor]]:
    """One optimizer_step that leaves the weights as they were (lr 0): its losses and the
    clipped gradients it stepped with."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    torch.manual_seed(11)  # the same dropout masks for every model the test compares
    found = optimizer_step(
        model, optimizer, grad_scaler(precision), batch, micro_batch, WEIGHTS, precision
    )
    return found, {name: p.grad.clone() for name, p in model.named_parameters()}


def assert_same_gradients(
    one: dict[str, torch.Tensor], other: dict[str, torch.Tensor], atol: float
) -> None:
    assert one.keys() == other.keys()
    for name in one:
        assert torch.allclose(one[name], other[name], rtol=1e-4, atol=atol), name


@contextmanager
def saved_bytes_inside(module: nn.Module) -> Iterator[list[int]]:
    """The bytes of the distinct storages autograd saves for backward while `module` runs."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)
    before = module.register_forward_pre_hook(lambda *_: hooks.__enter__())
    after = module.register_forward_hook(lambda *_: hooks.__exit__(None, None, None))
    total: list[int] = []
    try:
        yield total
    finally:
        before.remove()
        after.remove()
        total.append(sum(storages.values()))


def test_checkpointing_gives_the_same_loss_and_gradients_and_keeps_fewer_activations(
    tiny_models: Path,
) -> None:
    """Dropout on: the checkpointed blocks recompute with the same masks (the RNG state is
    kept), so one step is the same; what autograd keeps inside the GPT2 blocks shrinks to
    their inputs."""
    plain, checkpointed = tiny_model(tiny_models), tiny_model(tiny_models, checkpointing=True)
    assert checkpointed.gpt.gradient_checkpointing and not checkpointed.gpt.config.use_cache
    assert not plain.gpt.gradient_checkpointing
    batch = tiny_batch()
    with saved_bytes_inside(plain.gpt) as plain_bytes:
        plain_losses, plain_grads = step_gradients(plain, batch, micro_batch=len(batch))
    with saved_bytes_inside(checkpointed.gpt) as checkpointed_bytes:
        losses_, grads = step_gradients(checkpointed, batch, micro_batch=len(batch))
    assert losses_ == pytest.approx(plain_losses, rel=1e-6)
    assert_same_gradients(grads, plain_grads, atol=1e-7)
    # one block: 120 bytes per position and width kept without, its 4-byte input with
    assert checkpointed_bytes[0] * 10 < plain_bytes[0]


def test_the_loss_and_gradients_are_the_same_whatever_the_split_into_micro_batches(
    tiny_models: Path,
) -> None:
    """4 lines of unequal lengths as 4, as 3 + 1 and one at a time: the batch's loss is its lines'
    mean however the micro-batches fall. Dropout is off here: its masks are drawn per tensor,
    so they differ with the tensors' shapes whatever the arithmetic does."""
    model = tiny_model(tiny_models)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    batch = tiny_batch()
    whole_losses, whole_grads = step_gradients(model, batch, micro_batch=4)
    for micro_batch in (3, 1):
        split_losses, split_grads = step_gradients(model, batch, micro_batch)
        assert split_losses == pytest.approx(whole_losses, rel=1e-5), micro_batch
        assert_same_gradients(split_grads, whole_grads, atol=1e-6)


def test_the_validation_loss_is_the_same_whatever_the_micro_batch(tiny_models: Path) -> None:
    """Hold-out losses of two models compare even when free memory sized them differently."""
    model = tiny_model(tiny_models)
    examples = tiny_examples()
    options = TrainingOptions()
    spec = ModelSpec.tiny()
    whole = validate(model, examples, spec, 4, WEIGHTS, Precision.FP32, options)
    one_by_one = validate(model, examples, spec, 1, WEIGHTS, Precision.FP32, options)
    assert one_by_one == pytest.approx(whole, rel=1e-5)


def test_a_micro_batch_keeps_the_batch_length_so_padding_weighs_the_same(
    tiny_models: Path,
) -> None:
    """The short lines alone make a shorter forward unless the batch's length is kept."""
    model = tiny_model(tiny_models).eval()
    batch = tiny_batch()
    short = next(batch.split(1))  # 12 tokens, 1.2 s: shorter than the batch's longest
    with torch.no_grad():
        kept = losses(model, short)
        cut = model(
            model.get_conditioning(short.conditioning),
            short.text,
            short.text_lengths,
            short.codes,
            short.wav_lengths,
        )[:2]
    assert kept[1].item() != pytest.approx(cut[1].item(), rel=1e-3)


def test_bf16_on_the_cpu_trains_with_a_loss_close_to_fp32(tiny_models: Path) -> None:
    """bf16 keeps 8 bits of mantissa: the step's losses stay within 2 % of fp32's and its
    gradients point the same way."""
    batch = tiny_batch()
    fp32_losses, fp32_grads = step_gradients(tiny_model(tiny_models), batch, len(batch))
    bf16_losses, bf16_grads = step_gradients(
        tiny_model(tiny_models), batch, len(batch), Precision.BF16
    )
    assert all(torch.isfinite(torch.tensor(bf16_losses)))
    assert bf16_losses == pytest.approx(fp32_losses, rel=0.02)
    flat32 = torch.cat([g.flatten() for g in fp32_grads.values()])
    flat16 = torch.cat([g.flatten() for g in bf16_grads.values()])
    assert torch.nn.functional.cosine_similarity(flat32, flat16, dim=0) > 0.99


def test_adamw_is_fused_with_the_recipes_groups(tiny_models: Path) -> None:
    optimizer = build_optimizer(tiny_model(tiny_models), TrainingOptions())
    assert optimizer.defaults["fused"] is True
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert optimizer.defaults["betas"] == (0.9, 0.96)


def test_adamw8bit_steps_with_8_bit_state(tiny_models: Path) -> None:
    pytest.importorskip("bitsandbytes")  # pyproject's train-8bit extra
    model = tiny_model(tiny_models)
    options = TrainingOptions(optimizer="adamw8bit", learning_rate=1e-3)
    optimizer = build_optimizer(model, options)
    batch, scaler = tiny_batch(), grad_scaler(Precision.FP32)
    before = model.text_head.weight.detach().clone()
    first = optimizer_step(model, optimizer, scaler, batch, 4, WEIGHTS, Precision.FP32)
    assert not torch.equal(model.text_head.weight, before)
    assert optimizer.state[model.text_head.weight]["state1"].dtype == torch.uint8
    second = optimizer_step(model, optimizer, scaler, batch, 4, WEIGHTS, Precision.FP32)
    assert sum(second) < sum(first)


def test_adamw8bit_without_bitsandbytes_says_what_to_install(
    tiny_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if not installed
    with pytest.raises(OptimizerMissing, match=r"pip install 'voicedrop\[train-8bit\]'"):
        build_optimizer(tiny_model(tiny_models), TrainingOptions(optimizer="adamw8bit"))
