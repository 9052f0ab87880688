"""TorToiSe inference built from plain model files: conditioning latents and rendering.

tortoise's own TextToSpeech looks weights up in the Hugging Face cache and loads the
autoregressive model non-strictly, so this module wires the same model classes itself: every
file is loaded strictly from `tts.models_dir` (hifidecoder.pth only as tolerantly as tortoise's
api_fast.py loads it), a voice's fine-tuned autoregressive model can stand in for the released
one, and rendering is seeded so the same inputs give the same audio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from daemon.core.atomic import atomic_path
from daemon.core.device import resolve_device
from daemon.core.files import file_signature
from daemon.core.model_loads import LoadedModel, record_load
from daemon.tts.checkpoints import (
    VOCODER_KEY,
    build_autoregressive,
    build_clvp,
    build_diffusion,
    build_hifigan,
    build_vocoder,
    load_strict,
    load_tolerant,
    read_state_dict,
)
from daemon.tts.diffusion import sample_mel
from daemon.tts.generation import GenerationSettings
from daemon.tts.sampler import (
    CodeSampler,
    Sampling,
    batch_for_memory,
    candidate_bytes,
    even_batch,
    prompt_embeddings,
    prompt_length,
)
from daemon.tts.spec import (
    AUTOREGRESSIVE_FILE,
    CLVP_FILE,
    DIFFUSION_FILE,
    HIFIGAN_FILE,
    VOCODER_FILE,
    BadCheckpoint,
    ModelSpec,
    WeightsMissing,
    needed_files,
)

if TYPE_CHECKING:
    import torch

Progress = Callable[[str, float], None]

CONDITIONING_RATE = 22050  # what the clips, the AR and its mel codes work at
AR_WINDOW = 132300  # tortoise's conditioning clip length for the AR (6 s at 22050 Hz)
DIFFUSION_WINDOW = 102400  # the diffusion model's conditioning length (at 24000 Hz)
UNIVNET_FFT, UNIVNET_HOP = 1024, 256  # the diffusion model's and UnivNet's mel frames
CALM_TOKEN = 83  # mel code for silence that fix_autoregressive_output writes after the stop
CALM_RUN = 8  # more calm codes than this in a row end the speech (tortoise api.py)
TEXT_MARGIN = 4  # api.py allows < 400 tokens (with its pad) for max_text_tokens 402
MEL_MARGIN = 2  # the start and stop mel tokens the AR adds around the generated codes
CPU_BATCH = 8  # candidates sampled at once on a CPU; fixed, as it changes the random draws
FAST_TOP_K = 50  # api_fast.py samples its one candidate with top_k=50
LATENT_METHODS = ("voicedrop", "tortoise")
SAMPLERS = ("voicedrop", "tortoise")  # daemon.tts.sampler's loop, or inference_speech


@dataclass(frozen=True)
class Latents:
    """A voice's conditioning latents, on the CPU so they can be cached on disk; the hifigan
    decoder needs no diffusion latent (tortoise api_fast.py computes none)."""

    autoregressive: torch.Tensor
    diffusion: torch.Tensor | None = None

    def save(self, path: Path) -> None:
        import torch

        state = {"autoregressive": self.autoregressive}
        if self.diffusion is not None:
            state["diffusion"] = self.diffusion
        with atomic_path(Path(path)) as tmp:
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: Path) -> Latents:
        import torch

        state = read_state_dict(Path(path))
        if set(state) - {"diffusion"} != {"autoregressive"} or not all(
            isinstance(value, torch.Tensor) for value in state.values()
        ):
            raise BadCheckpoint(f"{path} is not a voicedrop latents file")
        return cls(state["autoregressive"], state.get("diffusion"))


class Engine:
    """Loads TorToiSe's models on first use and keeps them until release()."""

    SAMPLE_RATE: ClassVar[int] = 24000

    def __init__(
        self,
        models_dir: Path,
        device: str = "auto",
        half: bool = False,
        sampler: str = "voicedrop",
    ) -> None:
        import torch

        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}: use {' or '.join(SAMPLERS)}")
        self.models_dir = Path(models_dir)
        self.device = torch.device(resolve_device(device))
        self.half = half
        self.sampler = sampler
        self._spec: ModelSpec | None = None
        self._models: dict[str, tuple[tuple[str, int, int], torch.nn.Module]] = {}
        self._tokenizer: Any = None
        self._conditioning_mel: torch.nn.Module | None = None
        self._univnet_filters: torch.Tensor | None = None

    # -- loading -------------------------------------------------------------------------

    def load(self, autoregressive: Path | None = None, decoder: str = "diffusion") -> None:
        """Load (once) what rendering with `decoder` needs; `autoregressive` is a fine-tune
        that stands in for the released autoregressive.pth."""
        self._load_files(needed_files(decoder), autoregressive)

    def model_files(
        self, autoregressive: Path | None = None, decoder: str = "diffusion"
    ) -> dict[str, Path]:
        """File name -> the file a render with these arguments uses."""
        files = {name: self.models_dir / name for name in needed_files(decoder)}
        if autoregressive is not None:
            files[AUTOREGRESSIVE_FILE] = Path(autoregressive)
        return files

    def release(self) -> None:
        """Drop every model (idle unload) so training or other programs get the memory."""
        self._models.clear()
        self._conditioning_mel = None
        self._univnet_filters = None
        gc.collect()
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    @property
    def loaded(self) -> bool:
        return bool(self._models)

    @property
    def spec(self) -> ModelSpec:
        if self._spec is None:
            self._spec = ModelSpec.read(self.models_dir)
        return self._spec

    @property
    def max_text_tokens(self) -> int:
        """The most text tokens one render takes (tortoise's margin below the model's limit)."""
        return self.spec.autoregressive["max_text_tokens"] - TEXT_MARGIN

    def text_token_count(self, text: str) -> int:
        return len(self._encode(text))

    def _load_files(self, names: tuple[str, ...], autoregressive: Path | None) -> None:
        absent = [name for name in names if not (self.models_dir / name).is_file()]
        if absent:
            raise WeightsMissing(self.models_dir, absent)
        if autoregressive is not None and not Path(autoregressive).is_file():
            raise FileNotFoundError(f"fine-tuned model {autoregressive} does not exist")
        spec = ModelSpec.read(self.models_dir)
        if spec != self._spec:
            self.release()
            self._spec = spec
        held, started = self.signatures(), time.perf_counter()
        for name in names:
            if name != AUTOREGRESSIVE_FILE or autoregressive is None:
                self._model(name, self.models_dir / name)
        if autoregressive is not None:
            self._model(OVERRIDE, Path(autoregressive))
        if self.signatures() != held:  # something was (re)loaded, not only found loaded
            record_load(LoadedModel.TORTOISE, started)

    def signatures(self) -> dict[str, tuple[str, int, int]]:
        return {key: signature for key, (signature, _) in self._models.items()}

    def _model(self, key: str, path: Path) -> torch.nn.Module:
        """The module for `key` loaded from `path`, reloaded when the file changed."""
        signature = file_signature(path)
        held = self._models.get(key)
        if held is not None and held[0] == signature:
            return held[1]
        self._models.pop(key, None)  # free the old one before building its replacement
        module = self._build(key, path)
        self._models[key] = (signature, module)
        return module

    def _build(self, key: str, path: Path) -> torch.nn.Module:
        builder, state_key = BUILDERS[OVERRIDE_OF.get(key, key)]
        if key == HIFIGAN_FILE:
            module = load_tolerant(builder(self.spec), path)
        else:
            module = load_strict(builder(self.spec), path, state_key)
        module.to(self.device)
        module.eval()  # UnivNetGenerator.eval returns None, so no chaining
        if key in (AUTOREGRESSIVE_FILE, OVERRIDE):
            if self._half_weights:
                to_half_weights(module)
            module.post_init_gpt2_config(kv_cache=True, half=self.half)
        if key == VOCODER_FILE:
            module.eval(inference=True)  # folds weight norm away, as tortoise does
        return module

    @property
    def _half_weights(self) -> bool:
        """Whether the AR's weights are float16: half on CUDA with voicedrop's sampler
        (tortoise's inference_speech runs float32 weights under autocast, as upstream)."""
        return self.half and self.device.type == "cuda" and self.sampler == "voicedrop"

    def _loaded(self, key: str) -> torch.nn.Module:
        return self._models[key][1]

    def _autoregressive(self, autoregressive: Path | None) -> torch.nn.Module:
        return self._loaded(AUTOREGRESSIVE_FILE if autoregressive is None else OVERRIDE)

    # -- conditioning latents ------------------------------------------------------------

    def conditioning_latents(
        self,
        clips: list[np.ndarray],
        autoregressive: Path | None = None,
        *,
        diffusion: bool = True,
        method: str = "voicedrop",
        seed: int = 0,
    ) -> Latents:
        """A voice's latents from its clips (22050 Hz mono float32), clamped to [-1, 1] as
        tortoise's load_audio does. method voicedrop uses every second of every clip (longer
        clips are cut into pieces); tortoise follows api.py's get_conditioning_latents: one
        random 6 s crop per clip (drawn with `seed`) for the AR, the first 102400 samples at
        24 kHz of each clip for diffusion. `diffusion` False skips the diffusion latent."""
        import torch

        if not clips:
            raise ValueError("no clips to compute conditioning latents from")
        if method not in LATENT_METHODS:
            raise ValueError(
                f"unknown latents method {method!r}: use {' or '.join(LATENT_METHODS)}"
            )
        needed = (AUTOREGRESSIVE_FILE, DIFFUSION_FILE) if diffusion else (AUTOREGRESSIVE_FILE,)
        self._load_files(needed, autoregressive)
        waves = [self._wave(clip) for clip in clips]
        with torch.no_grad():
            model = self._autoregressive(autoregressive)
            if method == "tortoise":
                auto = self._tortoise_autoregressive_latent(model, waves, random.Random(seed))
            else:
                auto = self._autoregressive_latent(model, waves)
            latent = None
            if diffusion:
                window = DIFFUSION_WINDOW if method == "voicedrop" else None
                latent = _to_cpu(
                    self._diffusion_latent(self._loaded(DIFFUSION_FILE), waves, window)
                )
        return Latents(_to_cpu(auto), latent)

    def _wave(self, clip: np.ndarray) -> torch.Tensor:
        import torch

        samples = np.asarray(clip, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError(f"a clip must be mono samples, got shape {samples.shape}")
        return torch.from_numpy(np.clip(samples, -1.0, 1.0)).to(self.device)

    def _tortoise_autoregressive_latent(
        self, model: torch.nn.Module, waves: list[torch.Tensor], draw: random.Random
    ) -> torch.Tensor:
        """api.py's format_conditioning per clip: a random AR_WINDOW crop of a longer clip,
        a short one zero-padded; then get_conditioning over all clips at once."""
        import torch
        import torch.nn.functional as F

        mels = []
        for wave in waves:
            gap = wave.shape[-1] - AR_WINDOW
            if gap > 0:
                start = draw.randint(0, gap)
                wave = wave[start : start + AR_WINDOW]
            mels.append(self._mel(F.pad(wave, (0, max(0, -gap)))))
        return model.get_conditioning(torch.stack(mels).unsqueeze(0))

    def _autoregressive_latent(
        self, model: torch.nn.Module, waves: list[torch.Tensor]
    ) -> torch.Tensor:
        """Mean of the AR conditioning encoder over every piece, in groups the model accepts."""
        import torch

        mels = torch.stack(
            [self._mel(piece) for wave in waves for piece in _pieces(wave, AR_WINDOW)]
        )
        group = model.max_conditioning_inputs
        total = sum(
            model.get_conditioning(mels[start : start + group].unsqueeze(0))
            * len(mels[start : start + group])
            for start in range(0, len(mels), group)
        )
        return total / len(mels)

    def _mel(self, piece: torch.Tensor) -> torch.Tensor:
        """tortoise's format_conditioning mel of one piece, (80, frames)."""
        if self._conditioning_mel is None:
            from tortoise.models.arch_util import TorchMelSpectrogram

            self._conditioning_mel = TorchMelSpectrogram().to(self.device)
        return self._conditioning_mel(piece.unsqueeze(0)).squeeze(0)

    def _diffusion_latent(
        self, model: torch.nn.Module, waves: list[torch.Tensor], window: int | None
    ) -> torch.Tensor:
        """The diffusion model's conditioning over univnet mels at 24 kHz: of every piece of
        `window` samples, or (None) of each clip's first DIFFUSION_WINDOW samples, as api.py."""
        import torch
        import torchaudio

        resampled = [
            torchaudio.functional.resample(wave, CONDITIONING_RATE, self.SAMPLE_RATE)
            for wave in waves
        ]
        if window is None:
            pieces = [_pad_or_truncate(wave, DIFFUSION_WINDOW) for wave in resampled]
        else:
            pieces = [piece for wave in resampled for piece in _pieces(wave, window)]
        mels = [self._univnet_mel(piece) for piece in pieces]
        return model.get_conditioning(torch.stack(mels).unsqueeze(0))

    def _univnet_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """tortoise's wav_to_univnet_mel, (100, frames), with torch.stft: its TacotronSTFT
        spends seconds on an inverse basis this never uses."""
        import torch

        if self._univnet_filters is None:
            import librosa

            filters = librosa.filters.mel(
                sr=self.SAMPLE_RATE, n_fft=UNIVNET_FFT, n_mels=100, fmin=0, fmax=12000
            )
            self._univnet_filters = torch.from_numpy(filters).float().to(self.device)
        spectrum = torch.stft(
            wave.clamp(-1, 1),
            n_fft=UNIVNET_FFT,
            hop_length=UNIVNET_HOP,
            window=torch.hann_window(UNIVNET_FFT, device=wave.device),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        ).abs()
        return torch.log(torch.clamp(self._univnet_filters @ spectrum, min=1e-5))

    # -- rendering -----------------------------------------------------------------------

    def render(
        self,
        text: str,
        latents: Latents,
        settings: GenerationSettings,
        autoregressive: Path | None = None,
        *,
        on_progress: Progress | None = None,
    ) -> np.ndarray:
        """One chunk of text -> float32 mono audio at 24000 Hz; the same text, latents,
        settings and model give bit-identical audio on a CPU."""
        import torch

        if settings.candidates < 1:
            raise ValueError("settings.candidates must be at least 1")
        tokens = self._text_tokens(text)
        self.load(autoregressive, settings.decoder)
        progress = on_progress or _silent
        torch.manual_seed(settings.seed)
        random.seed(settings.seed)
        model = self._autoregressive(autoregressive)
        conditioning = latents.autoregressive.to(self.device)
        with torch.no_grad():
            if settings.decoder == "hifigan":
                wave = self._fast(model, conditioning, tokens, settings, progress)
            else:
                if latents.diffusion is None:
                    raise ValueError("the diffusion decoder needs latents with a diffusion part")
                codes = self._sample(model, conditioning, tokens, settings, progress)
                best = self._rank(codes, tokens, progress)
                speech = self._speech_latents(model, conditioning, tokens, best)
                speech = speech[:, : _speech_end(best[0].tolist())]
                wave = self._diffuse(speech, latents.diffusion.to(self.device), settings, progress)
        progress("done", 1.0)
        return wave.squeeze().float().cpu().numpy()

    def _encode(self, text: str) -> list[int]:
        if self._tokenizer is None:
            from tortoise.utils.tokenizer import VoiceBpeTokenizer

            self._tokenizer = VoiceBpeTokenizer()
        return self._tokenizer.encode(text)

    def generation_length(self, settings: GenerationSettings) -> int:
        """Codes generated per chunk: the setting, capped by what the model's position
        embeddings hold (its max_mel_tokens less the start and stop tokens)."""
        if settings.max_mel_tokens < 1:
            raise ValueError("settings.max_mel_tokens must be at least 1")
        return min(settings.max_mel_tokens, self.spec.autoregressive["max_mel_tokens"] - MEL_MARGIN)

    def _text_tokens(self, text: str) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        ids = self._encode(text)
        if not ids:
            raise ValueError("the text has nothing to say")
        if len(ids) > self.max_text_tokens:
            raise ValueError(
                f"the text is {len(ids)} tokens long; the model takes at most "
                f"{self.max_text_tokens}: split it into shorter chunks"
            )
        tokens = torch.IntTensor(ids).unsqueeze(0).to(self.device)
        return F.pad(tokens, (0, 1))  # a trailing stop token, exactly as api.py feeds the AR

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.half and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _batch_size(self) -> int:
        """Candidates per CLVP pass (and AR pass with tortoise's sampler): tortoise's memory
        table on CUDA (by total memory, so it does not change between renders), a fixed size
        on the CPU."""
        import torch

        if self.device.type != "cuda":
            return CPU_BATCH
        gigabytes = torch.cuda.get_device_properties(self.device).total_memory / 1024**3
        return next((size for limit, size in ((14, 16), (10, 8), (7, 4)) if gigabytes > limit), 1)

    def _sample(
        self,
        model: torch.nn.Module,
        conditioning: torch.Tensor,
        tokens: torch.Tensor,
        settings: GenerationSettings,
        progress: Progress,
    ) -> torch.Tensor:
        """`settings.candidates` code sequences of at most the generation length, padded with
        the stop code to exactly that length and fixed as api.py tts() does before CLVP."""
        length = self.generation_length(settings)
        sampling = _sampling(settings)
        size = self._sampler_batch(model, tokens, length, settings.candidates)
        counts = [count for _, count in _batches(settings.candidates, size)]
        batches = []
        for codes in self._draw(model, conditioning, tokens, sampling, length, counts):
            batches.append(codes)
            progress("autoregressive", sum(batch.shape[0] for batch in batches) / sum(counts))
        return pad_and_fix(batches, length, model.stop_mel_token)

    def _draw(
        self,
        model: torch.nn.Module,
        conditioning: torch.Tensor,
        tokens: torch.Tensor,
        sampling: Sampling,
        length: int,
        counts: list[int],
    ) -> Iterator[torch.Tensor]:
        """Each batch's codes, (count, at most length), by the configured sampler; the
        random draws follow the global generator either way."""
        if self.sampler == "tortoise":
            for count in counts:
                with self._autocast():
                    codes = model.inference_speech(
                        conditioning,
                        tokens,
                        do_sample=True,
                        num_beams=1,
                        top_k=sampling.top_k,
                        top_p=sampling.top_p,
                        temperature=sampling.temperature,
                        num_return_sequences=count,
                        repetition_penalty=sampling.repetition_penalty,
                        max_generate_length=length,
                    )
                yield codes
            return
        prompt = prompt_embeddings(model, conditioning, tokens)
        sampler: CodeSampler | None = None
        for count in counts:
            if sampler is None or sampler.batch != count:
                sampler = None  # the old buffers go before the new ones are allocated
                sampler = CodeSampler(model, count, prompt.shape[1], length, sampling)
            yield sampler.sample(prompt)

    def _sampler_batch(
        self, model: torch.nn.Module, tokens: torch.Tensor, length: int, candidates: int
    ) -> int:
        """Candidates per AR pass. On CUDA with voicedrop's sampler the most whose KV cache
        and buffers fit the free memory now (what the allocator holds unused counts as
        free), split evenly; otherwise _batch_size() (fixed on the CPU, as the split
        changes the random draws)."""
        import torch

        if self.device.type != "cuda" or self.sampler == "tortoise":
            return self._batch_size()
        free, _ = torch.cuda.mem_get_info(self.device)
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        per_candidate = candidate_bytes(
            layers=model.layers,
            model_dim=model.model_dim,
            heads=model.heads,
            length=prompt_length(tokens) + length,
            vocabulary=model.number_mel_codes,
            element_bytes=model.mel_head.weight.element_size(),
        )
        return even_batch(candidates, batch_for_memory(free, per_candidate, candidates))

    def _rank(self, codes: torch.Tensor, tokens: torch.Tensor, progress: Progress) -> torch.Tensor:
        """The candidate CLVP thinks matches the text best, (1, length)."""
        import torch

        clvp = self._loaded(CLVP_FILE)
        scores = []
        for start, count in _batches(codes.shape[0], self._batch_size()):
            with self._autocast():
                batch = codes[start : start + count]
                scores.append(clvp(tokens.repeat(count, 1), batch, return_loss=False).float())
            progress("clvp", (start + count) / codes.shape[0])
        best = int(torch.cat(scores).argmax())
        return codes[best : best + 1]

    def _speech_latents(
        self,
        model: torch.nn.Module,
        conditioning: torch.Tensor,
        tokens: torch.Tensor,
        codes: torch.Tensor,
    ) -> torch.Tensor:
        """The AR's last hidden states for `codes`, (1, codes, dim)."""
        import torch

        with self._autocast():
            latents = model(
                conditioning,
                tokens,
                torch.tensor([tokens.shape[-1]], device=self.device),
                codes,
                torch.tensor([codes.shape[-1] * model.mel_length_compression], device=self.device),
                return_latent=True,
                clip_inputs=False,
            )
        return latents.float()

    def _diffuse(
        self,
        speech: torch.Tensor,
        conditioning: torch.Tensor,
        settings: GenerationSettings,
        progress: Progress,
    ) -> torch.Tensor:
        """Diffusion decoder -> mel at 24 kHz -> UnivNet, as api.py's do_spectrogram_diffusion,
        with the sampler the settings name (daemon/tts/diffusion.py)."""
        import torch
        from tortoise.utils.audio import denormalize_tacotron_mel

        diffusion = self._loaded(DIFFUSION_FILE)
        frames = speech.shape[1] * 4 * self.SAMPLE_RATE // CONDITIONING_RATE
        aligned = diffusion.timestep_independent(speech, conditioning, frames, False)
        noise = torch.randn((speech.shape[0], 100, frames), device=self.device)
        steps = settings.diffusion_iterations
        mel = sample_mel(
            settings.diffusion_sampler,
            diffusion,
            aligned,
            noise * settings.diffusion_temperature,
            steps=steps,
            cond_free=settings.cond_free,
            cond_free_k=settings.cond_free_k,
            on_step=lambda done: progress("diffusion", done / steps),
        )
        mel = denormalize_tacotron_mel(mel)[:, :, :frames]
        return self._loaded(VOCODER_FILE).inference(mel)

    def _fast(
        self,
        model: torch.nn.Module,
        conditioning: torch.Tensor,
        tokens: torch.Tensor,
        settings: GenerationSettings,
        progress: Progress,
    ) -> torch.Tensor:
        """tortoise api_fast.py tts(): one candidate sampled with top_k=50, no CLVP ranking,
        the AR's latents of all its codes decoded by HiFi-GAN."""
        sampling = dataclasses.replace(_sampling(settings), top_k=FAST_TOP_K)
        length = self.generation_length(settings)
        [codes] = self._draw(model, conditioning, tokens, sampling, length, [1])
        progress("autoregressive", 1.0)
        speech = self._speech_latents(model, conditioning, tokens, codes)
        return self._hifigan(speech, conditioning)

    def _hifigan(self, speech: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        """HifiganGenerator.inference from api_fast.py, minus its hard-coded .to("cuda")."""
        import torch.nn.functional as F

        frames = F.interpolate(speech.transpose(1, 2), scale_factor=[1024 / 256], mode="linear")
        frames = F.interpolate(
            frames, scale_factor=[self.SAMPLE_RATE / CONDITIONING_RATE], mode="linear"
        )
        return self._loaded(HIFIGAN_FILE)(frames, conditioning.unsqueeze(0).transpose(1, 2))


OVERRIDE = "override:" + AUTOREGRESSIVE_FILE  # the slot of a voice's fine-tuned AR
OVERRIDE_OF = {OVERRIDE: AUTOREGRESSIVE_FILE}
BUILDERS: dict[str, tuple[Callable[[ModelSpec], Any], str | None]] = {
    AUTOREGRESSIVE_FILE: (build_autoregressive, None),
    DIFFUSION_FILE: (build_diffusion, None),
    VOCODER_FILE: (build_vocoder, VOCODER_KEY),
    CLVP_FILE: (build_clvp, None),
    HIFIGAN_FILE: (build_hifigan, None),
}


def to_half_weights(model: torch.nn.Module) -> None:
    """The AR in float16 for voicedrop's sampler, which runs the weights as they are (a CUDA
    graph cannot keep autocast's casts); the conditioning encoder stays float32, so a
    voice's latents do not change."""
    model.half()
    model.conditioning_encoder.float()


def _sampling(settings: GenerationSettings) -> Sampling:
    """The AR sampling knobs of `settings`, as floats (transformers refuses an int);
    length_penalty is left out: generate uses it in beam search only, never in sampling."""
    return Sampling(
        temperature=float(settings.temperature),
        top_p=float(settings.top_p),
        repetition_penalty=float(settings.repetition_penalty),
    )


def _pieces(wave: torch.Tensor, window: int) -> Iterator[torch.Tensor]:
    """Equal pieces of at most `window` samples, each zero-padded to `window` as tortoise
    pads a short conditioning clip."""
    import torch.nn.functional as F

    count = max(1, math.ceil(wave.shape[-1] / window))
    for piece in wave.tensor_split(count):
        yield F.pad(piece, (0, window - piece.shape[-1]))


def pad_and_fix(batches: list[torch.Tensor], length: int, stop: int) -> torch.Tensor:
    """api.py tts() before CLVP: every batch padded with the stop code to exactly the
    generation length (CLVP averages over every position, so the length changes the scores),
    then fix_autoregressive_output on each candidate."""
    import torch
    import torch.nn.functional as F
    from tortoise.api import fix_autoregressive_output

    codes = torch.cat([F.pad(batch, (0, length - batch.shape[1]), value=stop) for batch in batches])
    for row in range(codes.shape[0]):
        codes[row] = fix_autoregressive_output(codes[row], stop, complain=False)
    return codes


def _pad_or_truncate(wave: torch.Tensor, length: int) -> torch.Tensor:
    """tortoise api.py pad_or_truncate for one mono wave."""
    import torch.nn.functional as F

    return F.pad(wave, (0, length - wave.shape[-1])) if wave.shape[-1] < length else wave[:length]


def _batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(size, total - start)


def _speech_end(codes: list[int]) -> int:
    """Where api.py cuts the latents: after more than CALM_RUN calm codes in a row."""
    run = 0
    for index, code in enumerate(codes):
        run = run + 1 if code == CALM_TOKEN else 0
        if run > CALM_RUN:
            return index
    return len(codes)


def _to_cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().float().cpu().contiguous()


def _silent(stage: str, fraction: float) -> None:
    """The progress callback when the caller gives none."""
