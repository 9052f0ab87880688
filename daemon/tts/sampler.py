"""TorToiSe's autoregressive code sampling without Hugging Face `generate`.

`UnifiedVoice.inference_speech` runs its GPT-2 through transformers' `generate`, which
spends tens of milliseconds of Python per step and grows its KV cache by concatenation. This
loop runs the very same loaded weights (the model's own modules, no copy) with a KV cache
preallocated for the whole batch and generation length and written in place, attention by
`scaled_dot_product_attention`, and on CUDA the whole step (forward, logits processing,
draw) captured once in a CUDA graph. The maths is generate's sampling path as
inference_speech configures it (docs/TORTOISE.md, "Autoregressive sampling"), in the same
order and drawing the same random numbers, so on a CPU the codes equal inference_speech's
for the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    import torch

HF_TOP_K = 50  # transformers' GenerationConfig default: generate applies it unless told 0
PROMPT_TOKEN = 1  # inference_speech's stand-in prompt ids (the repetition penalty sees them)
STEP_WIDTHS = 16  # activations of one decode step per layer and candidate, in model widths
LOGIT_BUFFERS = 16  # float32 vocabulary-wide buffers the logits processing holds per candidate
FREE_SHARE = 0.9  # of the free memory the candidates may take; the rest for the allocator
RESERVE_BYTES = 512 * 1024**2  # the prefill, CUDA's workspaces, the graph's own pool


@dataclass(frozen=True)
class Sampling:
    """What one candidate is drawn with: generate's sampling knobs as inference_speech passes
    them (length_penalty is absent: generate uses it for beam search only)."""

    temperature: float
    top_p: float
    repetition_penalty: float
    top_k: int = HF_TOP_K


def candidate_bytes(
    layers: int, model_dim: int, heads: int, length: int, vocabulary: int, element_bytes: int
) -> int:
    """Device memory one candidate holds while sampling `length` positions: its KV cache
    (keys and values, every layer and position), one step's activations and the
    vocabulary-wide logits processing."""
    cache = 2 * layers * length * model_dim * element_bytes
    step = layers * (STEP_WIDTHS * model_dim * element_bytes + heads * length * 4)
    return cache + step + LOGIT_BUFFERS * vocabulary * 4


def batch_for_memory(free_bytes: int, per_candidate: int, candidates: int) -> int:
    """The most candidates (at least 1, at most `candidates`) whose buffers fit the free
    memory, keeping a share and a fixed reserve for what does not grow with the batch."""
    usable = int(free_bytes * FREE_SHARE) - RESERVE_BYTES
    return max(1, min(candidates, usable // per_candidate))


def even_batch(candidates: int, most: int) -> int:
    """The batch size that splits `candidates` into as few batches of at most `most` as
    possible, all of one size but the last: no second, smaller set of buffers for a rest."""
    batches = math.ceil(candidates / most)
    return math.ceil(candidates / batches)


def prompt_length(text_tokens: torch.Tensor) -> int:
    """Positions of prompt_embeddings(text_tokens): the conditioning latent, the text between
    its start and stop tokens, the start mel token."""
    return text_tokens.shape[-1] + 4


def prompt_embeddings(
    model: torch.nn.Module, conditioning: torch.Tensor, text_tokens: torch.Tensor
) -> torch.Tensor:
    """inference_speech's prompt, (1, positions, dim): the conditioning latent, the text
    between its start and stop tokens with text positions, then the start mel token at mel
    position 0 (what generate's first forward appends)."""
    import torch
    import torch.nn.functional as F

    text = F.pad(text_tokens, (0, 1), value=model.stop_text_token)
    text = F.pad(text, (1, 0), value=model.start_text_token)
    text_emb = model.text_embedding(text) + model.text_pos_embedding(text)
    start = torch.full((1, 1), model.start_mel_token, dtype=torch.long, device=text.device)
    start_emb = model.mel_embedding(start) + model.mel_pos_embedding(start)
    conds = conditioning.unsqueeze(1).to(text_emb.dtype)
    return torch.cat([conds, text_emb, start_emb], dim=1)


class CodeSampler:
    """Static buffers for one batch shape over a loaded UnifiedVoice: `sample()` prefills
    a prompt of `prompt_length` positions and draws up to `max_codes` codes per candidate.

    Every buffer the step reads or writes is allocated here and updated in place, so a
    CUDA graph of the step can be replayed for every step of every batch of this shape.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        batch: int,
        prompt_length: int,
        max_codes: int,
        sampling: Sampling,
    ) -> None:
        import torch

        self.model = model
        self.sampling = sampling
        self.batch, self.prompt_length, self.max_codes = batch, prompt_length, max_codes
        weight = model.mel_head.weight
        device, dtype = weight.device, weight.dtype
        self.heads = model.heads
        self.head_dim = model.model_dim // model.heads
        self.length = prompt_length + max_codes  # every id; the cache uses one slot less
        self.stop = model.stop_mel_token
        vocabulary = weight.shape[0]
        cache = (model.layers, batch, self.heads, self.length, self.head_dim)
        self.keys = torch.zeros(cache, device=device, dtype=dtype)
        self.values = torch.zeros(cache, device=device, dtype=dtype)
        # additive: 0 where a slot is written, -inf ahead (a boolean mask would be converted
        # to this in every layer of every step)
        self.mask = torch.full((1, 1, 1, self.length), -math.inf, device=device, dtype=dtype)
        # generate's input_ids: the prompt's stand-in ids, then the drawn codes; positions
        # not drawn yet hold a stand-in id too, which the penalty has already seen
        self.ids = torch.full((batch, self.length), PROMPT_TOKEN, device=device, dtype=torch.long)
        self.token = torch.zeros(batch, device=device, dtype=torch.long)
        self.count = torch.zeros(1, device=device, dtype=torch.long)  # codes drawn so far
        self.unfinished = torch.ones(batch, device=device, dtype=torch.long)
        self.logits = torch.zeros((batch, vocabulary), device=device, dtype=dtype)
        self.noise = torch.zeros((batch, vocabulary), device=device, dtype=torch.float32)
        self.graph: torch.cuda.CUDAGraph | None = None
        if device.type == "cuda" and max_codes > 1:  # one code is drawn without a step
            self.graph = self._capture()

    # -- the loop ----------------------------------------------------------------------

    def sample(self, prompt: torch.Tensor) -> torch.Tensor:
        """Codes for every candidate, (batch, n): n is max_codes, or fewer when every
        candidate drew the stop code (a finished one is padded with it, as generate does)."""
        if prompt.shape[1] != self.prompt_length:
            raise ValueError(f"a prompt of {prompt.shape[1]} positions, not {self.prompt_length}")
        self._reset()
        self._prefill(prompt)
        drawn = 0
        while drawn < self.max_codes:
            if drawn == 0:
                self._choose()
            elif self.graph is not None:
                self.graph.replay()
            else:
                self._step()
            drawn += 1
            if not bool(self.unfinished.any()):
                break
        return self.ids[:, self.prompt_length : self.prompt_length + drawn].clone()

    def _reset(self) -> None:
        """Back to no codes drawn: the ids are the prompt's stand-ins and start mel token."""
        self.count.zero_()
        self.unfinished.fill_(1)
        self.ids.fill_(PROMPT_TOKEN)
        self.ids[:, self.prompt_length - 1] = self.model.start_mel_token
        self.mask.fill_(-math.inf)
        self.mask[..., : self.prompt_length] = 0

    def _step(self) -> None:
        """Feed the last drawn code, draw the next: what the CUDA graph replays."""
        self._forward()
        self._choose()

    # -- the transformer ---------------------------------------------------------------

    def _prefill(self, prompt: torch.Tensor) -> None:
        """The prompt once, for one candidate (every candidate shares it): its keys and values
        go into every candidate's cache, its last position's logits into every row."""
        import torch.nn.functional as F

        hidden = prompt.to(self.keys.dtype)
        positions = self.prompt_length
        for layer, block in enumerate(self.model.gpt.h):
            query, key, value = self._heads(block, hidden)
            self.keys[layer, :, :, :positions].copy_(key.expand(self.batch, -1, -1, -1))
            self.values[layer, :, :, :positions].copy_(value.expand(self.batch, -1, -1, -1))
            attended = F.scaled_dot_product_attention(query, key, value, is_causal=True)
            hidden = self._finish_block(block, hidden, attended)
        self.logits.copy_(self._logits(hidden[:, -1]).expand(self.batch, -1))

    def _forward(self) -> None:
        """One position for every candidate: the last code at its cache slot and mel
        position, attending to every slot written so far."""
        import torch.nn.functional as F

        slot = self.count + (self.prompt_length - 1)
        # inference_speech's mel position for the n-th drawn code is n + 1 (its prompt ids
        # count the conditioning twice); the start token sat at 0
        position = self.model.mel_pos_embedding.emb.weight.index_select(0, self.count + 1)
        hidden = self.model.mel_embedding(self.token).unsqueeze(1) + position
        self.mask.index_fill_(-1, slot, 0)
        for layer, block in enumerate(self.model.gpt.h):
            query, key, value = self._heads(block, hidden)
            self.keys[layer].index_copy_(2, slot, key)
            self.values[layer].index_copy_(2, slot, value)
            attended = F.scaled_dot_product_attention(
                query, self.keys[layer], self.values[layer], attn_mask=self.mask
            )
            hidden = self._finish_block(block, hidden, attended)
        self.logits.copy_(self._logits(hidden).squeeze(1))

    def _heads(
        self, block: torch.nn.Module, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """GPT2Attention's query, key and value, (batch, heads, positions, head_dim)."""
        rows, positions, width = hidden.shape
        mixed = block.attn.c_attn(block.ln_1(hidden))
        return tuple(
            part.view(rows, positions, self.heads, self.head_dim).transpose(1, 2)
            for part in mixed.split(width, dim=2)
        )

    def _finish_block(
        self, block: torch.nn.Module, hidden: torch.Tensor, attended: torch.Tensor
    ) -> torch.Tensor:
        """The rest of a GPT2Block: heads merged, projected and added, then the MLP."""
        rows, positions, width = hidden.shape
        merged = attended.transpose(1, 2).reshape(rows, positions, width)
        hidden = block.attn.c_proj(merged) + hidden
        return hidden + block.mlp(block.ln_2(hidden))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """GPT2Model's ln_f, then inference_speech's lm_head (final_norm, mel_head)."""
        return self.model.mel_head(self.model.final_norm(self.model.gpt.ln_f(hidden)))

    # -- logits processing and the draw --------------------------------------------------

    def _choose(self) -> None:
        """Draw each candidate's next code from the logits, as generate's sample() does:
        repetition penalty, temperature, top-k, top-p, softmax, one multinomial draw; a
        finished candidate gets the stop code."""
        import torch

        scores = self._processed(self.logits.float())
        probs = torch.softmax(scores, dim=-1)
        # torch.multinomial(probs, 1) is exactly this (its one-sample path, the same random
        # numbers), but without the host check that keeps it out of a CUDA graph
        drawn = probs.div(self.noise.exponential_(1)).argmax(dim=-1)
        drawn = drawn * self.unfinished + self.stop * (1 - self.unfinished)
        self.ids.index_copy_(1, self.count + self.prompt_length, drawn.unsqueeze(1))
        self.token.copy_(drawn)
        self.unfinished.mul_(drawn.ne(self.stop))
        self.count.add_(1)

    def _processed(self, scores: torch.Tensor) -> torch.Tensor:
        """transformers 4.31's RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
        TopKLogitsWarper and TopPLogitsWarper in generate's order, each only where generate
        adds it. The penalty gathers and scatters over every id as generate does; the
        stand-ins beyond the drawn codes repeat an id already there, which changes nothing."""
        import torch

        sampling = self.sampling
        if sampling.repetition_penalty != 1.0:
            penalty = sampling.repetition_penalty
            score = torch.gather(scores, 1, self.ids)
            score = torch.where(score < 0, score * penalty, score / penalty)
            scores = scores.scatter(1, self.ids, score)
        if sampling.temperature != 1.0:
            scores = scores / sampling.temperature
        if sampling.top_k != 0:
            top_k = min(max(sampling.top_k, 1), scores.size(-1))
            threshold = torch.topk(scores, top_k)[0][..., -1, None]
            scores = scores.masked_fill(scores < threshold, -math.inf)
        if sampling.top_p < 1.0:
            sorted_logits, sorted_indices = torch.sort(scores, descending=False)
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= (1 - float(sampling.top_p))
            remove[..., -1:] = 0
            scores = scores.masked_fill(remove.scatter(1, sorted_indices, remove), -math.inf)
        return scores

    # -- CUDA ----------------------------------------------------------------------------

    def _capture(self) -> torch.cuda.CUDAGraph | None:
        """The step as a CUDA graph over this sampler's buffers (warmed up on a side stream
        first, as CUDA graphs need); None, and plain steps, where capture fails."""
        import torch

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self._reset()  # each at the first slot: never past the buffers' ends
                    self._step()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            self._reset()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._step()
        except RuntimeError as error:
            logger.warning("sampling without a CUDA graph: capture failed ({})", error)
            return None
        return graph
