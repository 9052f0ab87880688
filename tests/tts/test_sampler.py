"""daemon.tts.sampler on the tiny model set: the loop's codes against tortoise's own
inference_speech (Hugging Face generate) with the same weights and seed, and the batch
sizing arithmetic."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from daemon.tts.engine import Engine, to_half_weights
from daemon.tts.sampler import (
    CodeSampler,
    Sampling,
    batch_for_memory,
    candidate_bytes,
    even_batch,
    prompt_embeddings,
    prompt_length,
)
from daemon.tts.spec import ModelSpec

TEXT = "The quick brown fox jumps over the lazy dog."
TORTOISE = Sampling(temperature=0.8, top_p=0.8, repetition_penalty=2.0)  # api.py's defaults
STOP = 8193
GiB = 1024**3


@pytest.fixture(scope="module")
def engine(tiny_models: Path) -> Engine:
    engine = Engine(tiny_models, device="cpu")
    engine.load()
    return engine


@pytest.fixture(scope="module")
def model(engine: Engine) -> torch.nn.Module:
    return engine._autoregressive(None)


@pytest.fixture(scope="module")
def tokens(engine: Engine) -> torch.Tensor:
    return engine._text_tokens(TEXT)


@pytest.fixture(scope="module")
def conditioning() -> torch.Tensor:
    """A conditioning latent of the tiny model's width; its values only need to be fixed."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(1, ModelSpec.tiny().autoregressive["model_dim"], generator=generator)


def tortoise_codes(model, conditioning, tokens, count, length, sampling, seed) -> torch.Tensor:
    """tortoise's inference_speech as the engine called it before this loop existed."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.inference_speech(
            conditioning,
            tokens,
            do_sample=True,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            temperature=sampling.temperature,
            num_return_sequences=count,
            repetition_penalty=sampling.repetition_penalty,
            max_generate_length=length,
        )


def loop_codes(model, conditioning, tokens, count, length, sampling, seed) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        prompt = prompt_embeddings(model, conditioning, tokens)
        return CodeSampler(model, count, prompt.shape[1], length, sampling).sample(prompt)


def stop_position(row: torch.Tensor) -> int | None:
    stops = (row == STOP).nonzero()
    return int(stops[0]) if len(stops) else None


@contextlib.contextmanager
def stop_logit_raised_by(model: torch.nn.Module, amount: float) -> Iterator[None]:
    """Random tiny weights almost never emit the stop code: this raises its logit (the mel
    head's bias) for the block, standing in for trained weights that end their speech."""
    original = model.mel_head.bias[STOP].item()
    with torch.no_grad():
        model.mel_head.bias[STOP] = original + amount
    try:
        yield
    finally:
        with torch.no_grad():
            model.mel_head.bias[STOP] = original


@pytest.mark.parametrize(
    ("count", "sampling"),
    [
        (1, TORTOISE),
        (3, TORTOISE),
        (8, TORTOISE),  # CPU_BATCH: what a CPU render samples at once
        (4, Sampling(temperature=1.0, top_p=1.0, repetition_penalty=1.0)),  # top-k 50 alone
        (4, Sampling(temperature=0.5, top_p=0.9, repetition_penalty=1.5, top_k=0)),  # no top-k
        (2, Sampling(temperature=1.2, top_p=0.95, repetition_penalty=2.0, top_k=5)),
    ],
)
def test_codes_equal_inference_speech_with_the_same_seed(
    model, conditioning, tokens, count: int, sampling: Sampling
) -> None:
    length = 40
    expected = tortoise_codes(model, conditioning, tokens, count, length, sampling, seed=7)
    after_tortoise = torch.rand(4)
    codes = loop_codes(model, conditioning, tokens, count, length, sampling, seed=7)
    assert torch.rand(4).equal(after_tortoise)  # the same random numbers drawn, no more
    assert codes.shape == (count, length)  # nobody stopped: the length limit ends it
    assert codes.equal(expected)
    if count > 1:
        assert len({tuple(row.tolist()) for row in codes}) == count  # candidates differ


def test_rows_that_stop_early_are_padded_and_the_rest_run_to_the_limit(
    model, conditioning, tokens
) -> None:
    length = 40
    with stop_logit_raised_by(model, 1.5):
        expected = tortoise_codes(model, conditioning, tokens, 6, length, TORTOISE, seed=0)
        codes = loop_codes(model, conditioning, tokens, 6, length, TORTOISE, seed=0)
    stops = [stop_position(row) for row in codes]
    assert None in stops and any(stop is not None for stop in stops), stops
    assert codes.shape == (6, length)
    for row, stop in zip(codes, stops, strict=True):
        if stop is not None:
            assert (row[stop:] == STOP).all()  # after its stop a row only gets the stop code
    assert codes.equal(expected)


def test_sampling_ends_when_every_row_has_stopped(model, conditioning, tokens) -> None:
    length = 40
    with stop_logit_raised_by(model, 2.0):
        expected = tortoise_codes(model, conditioning, tokens, 6, length, TORTOISE, seed=0)
        after_tortoise = torch.rand(2)
        codes = loop_codes(model, conditioning, tokens, 6, length, TORTOISE, seed=0)
        assert torch.rand(2).equal(after_tortoise)
    stops = [stop_position(row) for row in codes]
    assert all(stop is not None for stop in stops), stops
    assert codes.shape[1] == max(stops) + 1 < length
    assert codes.equal(expected)


def test_length_penalty_does_not_change_what_inference_speech_samples(
    model, conditioning, tokens
) -> None:
    """Why the loop has no length penalty: generate applies it in beam search only."""
    drawn = []
    for length_penalty in (1.0, 5.0):
        torch.manual_seed(3)
        with torch.no_grad():
            drawn.append(
                model.inference_speech(
                    conditioning,
                    tokens,
                    do_sample=True,
                    top_p=0.8,
                    temperature=0.8,
                    num_return_sequences=2,
                    length_penalty=length_penalty,
                    repetition_penalty=2.0,
                    max_generate_length=20,
                )
            )
    assert drawn[0].equal(drawn[1])


def test_the_step_writes_into_its_buffers_and_allocates_none(model, conditioning, tokens) -> None:
    with torch.no_grad():
        prompt = prompt_embeddings(model, conditioning, tokens)
        sampler = CodeSampler(model, 3, prompt.shape[1], 30, TORTOISE)
        names = ("keys", "values", "mask", "ids", "token", "count", "logits", "noise")
        before = {name: getattr(sampler, name).data_ptr() for name in names}
        first = sampler.sample(prompt)
        second = sampler.sample(prompt)  # the same buffers serve the next batch
    assert {name: getattr(sampler, name).data_ptr() for name in names} == before
    assert sampler.keys.shape == (1, 3, 2, prompt.shape[1] + 30, 32)  # layers, batch, heads
    assert not first.equal(second)  # the next batch draws on, from the same generator
    assert first.data_ptr() != sampler.ids.data_ptr()  # what it hands back is the caller's


def test_float16_weights_sample_in_float16(model, conditioning, tokens) -> None:
    """What tts.half loads on CUDA, run here on the CPU: the cache, mask and logits follow
    the weights, the draw stays float32, and the first codes are float32's."""
    half = copy.deepcopy(model)
    to_half_weights(half)
    assert half.conditioning_encoder.init.weight.dtype == torch.float32
    torch.manual_seed(0)
    with torch.no_grad():
        prompt = prompt_embeddings(half, conditioning, tokens)
        sampler = CodeSampler(half, 3, prompt.shape[1], 12, TORTOISE)
        codes = sampler.sample(prompt)
    assert prompt.dtype == sampler.keys.dtype == sampler.logits.dtype == torch.float16
    assert codes.shape == (3, 12)
    full = loop_codes(model, conditioning, tokens, 3, 12, TORTOISE, seed=0)
    assert codes[:, :5].equal(full[:, :5])


def test_the_prompt_is_inference_speechs(model, conditioning, tokens) -> None:
    """The conditioning latent, start text token, the text and its two stop tokens (the
    engine's and inference_speech's), the start mel token."""
    prompt = prompt_embeddings(model, conditioning, tokens)
    assert prompt.shape == (1, tokens.shape[1] + 4, model.model_dim)
    assert prompt.shape[1] == prompt_length(tokens)
    assert prompt[0, 0].equal(conditioning[0])


def test_a_prompt_of_another_length_is_refused(model, conditioning, tokens) -> None:
    prompt = prompt_embeddings(model, conditioning, tokens)
    sampler = CodeSampler(model, 1, prompt.shape[1] + 1, 10, TORTOISE)
    with pytest.raises(ValueError, match="positions"):
        sampler.sample(prompt)


# -- batching by free memory (pure arithmetic) ---------------------------------------------


def released_candidate_bytes(length: int, element_bytes: int = 2) -> int:
    released = ModelSpec.released().autoregressive
    return candidate_bytes(
        layers=released["layers"],
        model_dim=released["model_dim"],
        heads=released["heads"],
        length=length,
        vocabulary=8194,
        element_bytes=element_bytes,
    )


def test_a_candidates_memory_is_mostly_its_kv_cache() -> None:
    per_candidate = released_candidate_bytes(length=600)
    cache = 2 * 30 * 600 * 1024 * 2  # keys and values, every layer and position, fp16
    assert cache < per_candidate < 1.05 * cache
    assert released_candidate_bytes(length=600, element_bytes=4) > 1.9 * per_candidate
    assert released_candidate_bytes(length=300) < 0.55 * per_candidate


def test_the_batch_grows_with_the_free_memory_not_past_the_candidates() -> None:
    per_candidate = released_candidate_bytes(length=600)
    small, large = (batch_for_memory(free, per_candidate, 256) for free in (4 * GiB, 12 * GiB))
    assert 1 < small < large < 256
    assert large * per_candidate <= 12 * GiB * 0.9
    assert batch_for_memory(200 * GiB, per_candidate, 96) == 96
    assert batch_for_memory(0, per_candidate, 96) == 1  # it still tries one


def test_candidates_are_split_into_even_batches() -> None:
    assert even_batch(96, 40) == 32  # 32 + 32 + 32, not 40 + 40 + 16
    assert even_batch(100, 40) == 34  # 34 + 34 + 32
    assert even_batch(16, 64) == 16
    assert even_batch(5, 1) == 1
