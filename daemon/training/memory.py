"""How many dataset lines go through the AR at once on a GPU: the largest micro-batch whose
activations fit the free memory, from the model's dimensions, the longest line, the precision
and gradient checkpointing.

Pure arithmetic: the constants are the bytes autograd keeps per line, measured on the
CPU at small dimensions by counting the storages `saved_tensors_hooks` sees (tortoise 3.0.0's
UnifiedVoice, transformers 4.31.0's eager GPT2 attention; `tests/training/test_memory.py`
measures them again). A GPT2 block saves, per line, 120 bytes per position * width, 12 per
head * position^2 and 16 per position in fp32 (64, 6 and 16 under bf16 autocast); with
checkpointing only its 4-byte fp32 input per position * width, plus the block recomputed in
backward (counted twice: its activations and their gradients). The conditioning encoder
(6 attention blocks, 2 crops) is never checkpointed. On CUDA
the figures are estimates until measured there (bench/train_gpu_bench.py); out of memory
still halves the micro-batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from daemon.training.precision import Precision

CONDITIONING_FRAMES = 172  # mel frames of one 44000-sample conditioning crop
CONDITIONING_BLOCKS = 6  # ConditioningEncoder's attention blocks
CONDITIONING_CROPS = 2
MEL_VOCABULARY = 8194  # mel_head outputs: 8192 codes, start and stop
TEXT_VOCABULARY = 256
EXTRA_POSITIONS = 5  # the conditioning latent, start and stop text, start and stop mel
# bytes per line autograd keeps (saved tensors), by precision: per GPT2 block
# (position * width, head * position^2, position), per conditioning block and crop
# (frame * width, head * frame^2) and per mel input value
BLOCK_BYTES = {Precision.FP32: (120, 12, 16), Precision.BF16: (64, 6, 16)}
CONDITIONING_BYTES = {Precision.FP32: (32, 4, 4), Precision.BF16: (18, 6, 2)}
CHECKPOINTED_BLOCK_BYTES = 4  # per position * width: the block's fp32 input
LOGIT_BYTES = 4  # per logit: the fp32 log-softmax cross-entropy keeps
OUTPUT_BYTES = 17  # per position * width: embeddings, final norm, the heads' inputs
# what backward adds at its peak: per logit its gradient and the logits' (fp32), and with
# checkpointing the block being recomputed, its activations and their gradients
BACKWARD_LOGIT_BYTES = 8
RECOMPUTED_BLOCKS = 2
# Training state not yet allocated when the micro-batch is sized (the weights are on the
# device already): gradients, and per parameter the optimizer's state
GRADIENT_BYTES = 4
OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw8bit": 2}
CAST_WEIGHT_BYTES = 2  # autocast's bf16/fp16 copy of every weight, kept for the forward
RESERVED_BYTES = 1 << 30  # CUDA context, cuBLAS workspace, allocator blocks
ACTIVATION_SHARE = 0.8  # of what is left: fragmentation and transients not counted above


@dataclass(frozen=True)
class StepShape:
    """What a training step's memory depends on: the AR's size and the longest line."""

    layers: int
    model_dim: int
    heads: int
    parameters: int
    text_tokens: int  # the longest line's text, in tokens
    mel_codes: int  # the longest line's audio, in codes (samples // 1024)


def bytes_per_line(shape: StepShape, precision: Precision, checkpointing: bool) -> int:
    """Activation bytes one line of a micro-batch costs at the step's peak: what autograd
    keeps, and what backward adds (the logits' gradients, a recomputed block twice over)."""
    extra = BACKWARD_LOGIT_BYTES * logits(shape)
    if checkpointing:
        extra += RECOMPUTED_BLOCKS * block_bytes(shape, precision)
    return kept_bytes_per_line(shape, precision, checkpointing) + extra


def kept_bytes_per_line(shape: StepShape, precision: Precision, checkpointing: bool) -> int:
    """What autograd keeps for backward per line: the measured constants above."""
    width = positions(shape) * shape.model_dim
    per_block = CHECKPOINTED_BLOCK_BYTES * width if checkpointing else block_bytes(shape, precision)
    frame_width, frame_square, mel = CONDITIONING_BYTES[measured_as(precision)]
    frames = CONDITIONING_FRAMES
    conditioning = (
        CONDITIONING_BLOCKS
        * CONDITIONING_CROPS
        * (frame_width * frames * shape.model_dim + frame_square * shape.heads * frames**2)
        + mel * CONDITIONING_CROPS * frames * 80
    )
    kept_logits = LOGIT_BYTES * logits(shape)
    return shape.layers * per_block + conditioning + kept_logits + OUTPUT_BYTES * width


def block_bytes(shape: StepShape, precision: Precision) -> int:
    """One GPT2 block's saved activations for one line, without checkpointing."""
    per_width, per_square, per_position = BLOCK_BYTES[measured_as(precision)]
    count = positions(shape)
    return (
        per_width * count * shape.model_dim
        + per_square * shape.heads * count**2
        + per_position * count
    )


def positions(shape: StepShape) -> int:
    return shape.text_tokens + shape.mel_codes + EXTRA_POSITIONS


def logits(shape: StepShape) -> int:
    """The text and mel heads' outputs for one line."""
    return (shape.mel_codes + 2) * MEL_VOCABULARY + (shape.text_tokens + 2) * TEXT_VOCABULARY


def measured_as(precision: Precision) -> Precision:
    """fp16 autocast keeps what bf16 does (the same ops run in half precision)."""
    return Precision.FP32 if precision is Precision.FP32 else Precision.BF16


def state_bytes(parameters: int, precision: Precision, optimizer: str) -> int:
    """Gradients, optimizer state and autocast's weight copies: allocated by the first step."""
    cast = 0 if precision is Precision.FP32 else CAST_WEIGHT_BYTES
    return parameters * (GRADIENT_BYTES + OPTIMIZER_STATE_BYTES[optimizer] + cast)


def largest_micro_batch(
    free_bytes: int,
    shape: StepShape,
    precision: Precision,
    checkpointing: bool,
    optimizer: str = "adamw",
) -> int:
    """The most lines whose step fits `free_bytes` (free device memory with the weights
    loaded); at least 1, so that a step is tried and out of memory says so."""
    left = free_bytes - RESERVED_BYTES - state_bytes(shape.parameters, precision, optimizer)
    lines = math.floor(left * ACTIVATION_SHARE / bytes_per_line(shape, precision, checkpointing))
    return max(1, lines)
