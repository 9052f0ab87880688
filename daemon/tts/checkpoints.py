"""TorToiSe checkpoints: building the model classes from a `ModelSpec` and loading plain
checkpoint files strictly, so a wrong file in `tts.models_dir` is reported by name instead of
rendering noise.
torch and tortoise are imported inside functions: the daemon imports this module without them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.core.atomic import atomic_path
from daemon.tts.spec import (
    BadCheckpoint,
    ModelSpec,
)

if TYPE_CHECKING:
    import torch

VOCODER_KEY = "model_g"  # the released vocoder.pth nests the generator's weights under this key

# Buffers older transformers versions saved with GPT-2 (the released autoregressive.pth has
# them); transformers 4.31 rebuilds them, so they are dropped instead of failing the load.
LEGACY_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# Aliases UnifiedVoice.post_init_gpt2_config adds for the same tensors; a model saved after it
# carries them twice.
ALIAS_PREFIXES = ("inference_model.", "gpt.wte.")
REPORTED_KEYS = 5


def build_autoregressive(spec: ModelSpec) -> torch.nn.Module:
    from tortoise.models.autoregressive import UnifiedVoice

    return UnifiedVoice(**spec.autoregressive)


def build_diffusion(spec: ModelSpec) -> torch.nn.Module:
    from tortoise.models.diffusion_decoder import DiffusionTts

    return DiffusionTts(**spec.diffusion)


def build_clvp(spec: ModelSpec) -> torch.nn.Module:
    from tortoise.models.clvp import CLVP

    return CLVP(**spec.clvp)


def build_vocoder(spec: ModelSpec) -> torch.nn.Module:
    from tortoise.models.vocoder import UnivNetGenerator

    with _old_weight_norm():
        return UnivNetGenerator(**spec.vocoder)


def build_hifigan(spec: ModelSpec) -> torch.nn.Module:
    from tortoise.models.hifigan_decoder import HifiganGenerator

    with _old_weight_norm():
        return HifiganGenerator(**spec.hifigan)


@contextlib.contextmanager
def _old_weight_norm() -> Iterator[None]:
    """Silence torch's deprecation warning for the weight_norm tortoise's vocoders use: the
    released checkpoints are stored in its format (weight_g / weight_v)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*weight_norm.*deprecated", FutureWarning)
        yield


def load_strict(module: torch.nn.Module, path: Path, key: str | None = None) -> torch.nn.Module:
    """Load `path` into `module`, every key and shape matching, or raise BadCheckpoint."""
    state = read_model_file(Path(path), key)
    expected = module.state_dict()
    state = {name: value for name, value in state.items() if not _ignorable(name, expected)}
    return _load_checked(module, path, state)


def load_tolerant(module: torch.nn.Module, path: Path) -> torch.nn.Module:
    """Load hifidecoder.pth, which tortoise's api_fast.py loads with strict=False: the released
    file may carry extra keys or non-tensor entries, which are logged and skipped; a missing
    key or a wrong shape still refuses the file."""
    from loguru import logger

    state = read_model_file(Path(path))
    expected = module.state_dict()
    extra = sorted(
        str(name) for name, value in state.items() if name not in expected or not _tensor(value)
    )
    if extra:
        logger.warning("{}: ignoring {}", path, _listing("entries the decoder does not use", extra))
    kept = {name: value for name, value in state.items() if name in expected and _tensor(value)}
    return _load_checked(module, path, kept)


def _load_checked(module: torch.nn.Module, path: Path, state: Mapping[str, Any]) -> torch.nn.Module:
    """Load `state` into `module` if every key and shape matches, else BadCheckpoint."""
    problems = _mismatches(module.state_dict(), state)
    if problems:
        raise BadCheckpoint(
            f"{path} does not fit {type(module).__name__} "
            f"(is it the right file, with the dimensions in spec.json?): " + "; ".join(problems)
        )
    module.load_state_dict(state, strict=True)
    return module


def _tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def read_model_file(path: Path, key: str | None = None) -> Mapping[str, Any]:
    """A model file's state dict, refused before torch reads it when it no longer matches the
    sha256 recorded when it was fetched (see daemon.weights.store)."""
    from daemon.weights.store import check_before_loading

    check_before_loading(path)
    return read_state_dict(path, key)


def read_state_dict(path: Path, key: str | None = None) -> Mapping[str, Any]:
    """The tensors in a checkpoint (under `key` if given), or BadCheckpoint."""
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise BadCheckpoint(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    if key is not None:
        if not isinstance(data, Mapping) or key not in data:
            raise BadCheckpoint(f"{path} has no '{key}' entry holding the model's weights")
        data = data[key]
    if not isinstance(data, Mapping):
        raise BadCheckpoint(f"{path} holds a {type(data).__name__}, not a state dict")
    return data


def _ignorable(name: str, expected: Mapping[str, Any]) -> bool:
    if name in expected:
        return False
    return name.endswith(LEGACY_SUFFIXES) or name.startswith(ALIAS_PREFIXES)


def _mismatches(expected: Mapping[str, Any], state: Mapping[str, Any]) -> list[str]:
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    shapes = [
        f"{name} is {tuple(state[name].shape)}, expected {tuple(value.shape)}"
        for name, value in expected.items()
        if name in state and hasattr(state[name], "shape") and state[name].shape != value.shape
    ]
    return [
        text
        for text in (
            _listing("missing keys", missing),
            _listing("unexpected keys", unexpected),
            _listing("shape mismatches", shapes),
        )
        if text
    ]


def _listing(label: str, items: list[str]) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:REPORTED_KEYS])
    more = f", … {len(items) - REPORTED_KEYS} more" if len(items) > REPORTED_KEYS else ""
    return f"{len(items)} {label}: {shown}{more}"


def save_checkpoint(data: Mapping[str, Any], path: Path) -> Path:
    """torch.save through a temp file, so a crash never leaves a truncated checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(dict(data), tmp)
    return Path(path)
