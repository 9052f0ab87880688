"""The number format training computes in: `training.precision` resolved for the device.

bf16 autocast keeps fp32 weights and optimizer state and needs no loss scaling (its exponent
is fp32's); fp16 needs a GradScaler. `auto` is bf16 on a CUDA device that supports it
(Ampere and later) and fp32 elsewhere. The CPU trains in bf16 only when asked: whether it
pays depends on the CPU having bf16 units (AVX512-BF16, AMX), which torch does not report
(on the team's AMX box, at reduced dims, runs disagreed on which was faster:
bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import enum

import torch
from loguru import logger


class Precision(enum.Enum):
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}.get(self)


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """What `training.precision` means on `device`; what cannot run there falls back to fp32
    with a warning rather than failing a night's training."""
    cuda = device.type == "cuda"
    bf16_ok = not cuda or torch.cuda.is_bf16_supported()
    if setting == "auto":
        return Precision.BF16 if cuda and bf16_ok else Precision.FP32
    wanted = Precision(setting)
    if wanted is Precision.BF16 and not bf16_ok:
        logger.warning("training.precision is bf16 but this GPU has no bf16: training in fp32")
        return Precision.FP32
    if wanted is Precision.FP16 and not cuda:
        logger.warning("training.precision is fp16, which needs CUDA: training in fp32")
        return Precision.FP32
    return wanted


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to the precision's dtype on the device; nothing for fp32."""
    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.autocast_dtype)


def grad_scaler(precision: Precision) -> torch.amp.GradScaler:
    """Loss scaling for fp16 only (its gradients underflow); a no-op otherwise."""
    return torch.amp.GradScaler("cuda", enabled=precision is Precision.FP16)
