"""daemon.training.precision: what training.precision means on each device."""

from __future__ import annotations

import pytest
import torch
from loguru import logger

from daemon.training.precision import Precision, autocast, grad_scaler, resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def warnings_logged() -> list[str]:
    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    yield messages
    logger.remove(sink)


def gpu_with_bf16(monkeypatch: pytest.MonkeyPatch, supported: bool) -> None:
    """Stands in for a GPU's answer (there is none here): Ampere and later have bf16."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: supported)


def test_auto_is_bf16_on_a_gpu_that_has_it_and_fp32_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_precision("auto", CPU) is Precision.FP32
    gpu_with_bf16(monkeypatch, True)
    assert resolve_precision("auto", CUDA) is Precision.BF16
    gpu_with_bf16(monkeypatch, False)
    assert resolve_precision("auto", CUDA) is Precision.FP32


def test_what_the_device_cannot_do_trains_in_fp32_and_says_so(
    monkeypatch: pytest.MonkeyPatch, warnings_logged: list[str]
) -> None:
    assert resolve_precision("fp16", CPU) is Precision.FP32
    gpu_with_bf16(monkeypatch, False)
    assert resolve_precision("bf16", CUDA) is Precision.FP32
    assert resolve_precision("fp16", CUDA) is Precision.FP16
    assert len(warnings_logged) == 2 and "fp16, which needs CUDA" in warnings_logged[0]
    assert "no bf16" in warnings_logged[1]


def test_bf16_is_honoured_on_the_cpu_and_fp32_autocasts_nothing() -> None:
    assert resolve_precision("bf16", CPU) is Precision.BF16
    assert resolve_precision("fp32", CPU) is Precision.FP32
    weight = torch.randn(8, 8)
    with autocast(Precision.BF16, CPU):
        assert (weight @ weight).dtype == torch.bfloat16
    with autocast(Precision.FP32, CPU):
        assert (weight @ weight).dtype == torch.float32


def test_bf16_and_fp32_do_not_scale_the_loss() -> None:
    """(fp16's scaler needs CUDA: without it torch disables the scaler itself.)"""
    assert not grad_scaler(Precision.BF16).is_enabled()
    assert not grad_scaler(Precision.FP32).is_enabled()
