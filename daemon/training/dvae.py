"""TorToiSe's discrete VAE: turns a clip's mel spectrogram into the autoregressive model's codes.

tortoise-tts does not ship it; this is DL-Art-School's `lucidrains_dvae` as TorToiSe was trained
with it (no transposed convs, EMA codebook), with the same module layout so the released
dvae.pth loads strictly. Only the encoder and codebook run here: fine-tuning needs the codes,
never a decoded mel. Codes are cached per dataset line, keyed by the audio's and the dVAE's
sha256, because a long dataset takes minutes to encode and changes rarely.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from daemon.tts.checkpoints import read_state_dict, save_checkpoint
from daemon.tts.spec import ModelSpec

MEL_FRAMES_PER_CODE = 4  # two stride-2 convs
MEL_HOP = 256
# DL-Art-School encodes training batches zero-padded to its max_wav_length, so the last codes
# of a clip see zeros after it, not the mel's reflected edge; codes here are made the same way.
TRAINING_SAMPLES = 255995
CODES_METHOD = "zero-padded to 255995 samples"  # cached codes made otherwise are recomputed


class ResBlock(nn.Module):
    """conv3 ReLU conv3 ReLU conv1, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + x


class UpsampledConv(nn.Module):
    """Nearest-neighbour upsampling then a conv: DLAS's stand-in for a transposed conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.stride, mode="nearest"))


class Codebook(nn.Module):
    """The EMA vector quantiser's state: columns of `embed` are the code vectors."""

    def __init__(self, dim: int, num_tokens: int) -> None:
        super().__init__()
        embed = torch.randn(dim, num_tokens)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.zeros(num_tokens))
        self.register_buffer("embed_avg", embed.clone())

    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """Index of the closest column (squared distance) for each row of `vectors`."""
        distance = (
            vectors.pow(2).sum(1, keepdim=True)
            - 2 * vectors @ self.embed
            + self.embed.pow(2).sum(0, keepdim=True)
        )
        return distance.argmin(1)


class DiscreteVAE(nn.Module):
    """DLAS's DiscreteVAE with positional_dims 1 and ReLU; names match the released dvae.pth."""

    def __init__(
        self,
        channels: int,
        codebook_dim: int,
        hidden_dim: int,
        kernel_size: int,
        num_layers: int,
        num_resnet_blocks: int,
        num_tokens: int,
        stride: int,
    ) -> None:
        super().__init__()
        widths = [hidden_dim * 2**i for i in range(num_layers)]
        innermost = widths[-1]
        padding = (kernel_size - 1) // 2

        encoder: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise([channels, *widths]):
            conv = nn.Conv1d(width_in, width_out, kernel_size, stride=stride, padding=padding)
            encoder.append(nn.Sequential(conv, nn.ReLU()))
        encoder += [ResBlock(innermost) for _ in range(num_resnet_blocks)]
        encoder.append(nn.Conv1d(innermost, codebook_dim, 1))
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = [nn.Conv1d(codebook_dim, innermost, 1)]
        decoder += [ResBlock(innermost) for _ in range(num_resnet_blocks)]
        for width_in, width_out in itertools.pairwise([innermost, *reversed(widths)]):
            upsample = UpsampledConv(width_in, width_out, kernel_size, stride)
            decoder.append(nn.Sequential(upsample, nn.ReLU()))
        decoder.append(nn.Conv1d(widths[0], channels, 1))
        self.decoder = nn.Sequential(*decoder)

        self.codebook = Codebook(codebook_dim, num_tokens)

    @torch.no_grad()
    def codes(self, mel: torch.Tensor) -> torch.Tensor:
        """(b, 80, frames) normalised mel -> (b, ceil(frames / 4)) code indices."""
        encoded = self.encoder(mel).permute(0, 2, 1)
        flat = encoded.reshape(-1, encoded.shape[-1]).float()
        return self.codebook.nearest(flat).reshape(encoded.shape[:2])


def build_dvae(spec: ModelSpec) -> nn.Module:
    return DiscreteVAE(**spec.dvae)


@functools.cache
def mel_spectrogram() -> nn.Module:
    """tortoise's TorchMelSpectrogram: the mel both the dVAE and conditioning encoder read."""
    from tortoise.models.arch_util import TorchMelSpectrogram

    return TorchMelSpectrogram()


def wave_to_mel(wave: torch.Tensor) -> torch.Tensor:
    """(b, samples) at 22050 Hz -> (b, 80, samples // 256 + 1) normalised log mel."""
    return mel_spectrogram().to(wave.device)(wave)


class CodesCache:
    """voices/<voice>/training/codes/<audio stem>.pt: one clip's codes, valid while neither
    its audio nor the dVAE changes."""

    def __init__(self, directory: Path, dvae: DiscreteVAE, dvae_sha256: str) -> None:
        self.directory = Path(directory)
        self.dvae = dvae
        self.dvae_sha256 = dvae_sha256
        self.computed = 0

    def codes(self, audio_path: Path, wave: torch.Tensor) -> torch.Tensor:
        """The clip's codes, (n,) int64: from the cache, or computed once and stored."""
        audio_sha256 = hashlib.sha256(Path(audio_path).read_bytes()).hexdigest()
        path = self.directory / f"{Path(audio_path).stem}.pt"
        if path.exists():
            cached = read_state_dict(path)
            key = (cached.get("audio_sha256"), cached.get("dvae_sha256"), cached.get("method"))
            if key == (audio_sha256, self.dvae_sha256, CODES_METHOD):
                return cached["codes"]
        codes = training_codes(self.dvae, wave)
        save_checkpoint(
            {
                "codes": codes,
                "audio_sha256": audio_sha256,
                "dvae_sha256": self.dvae_sha256,
                "method": CODES_METHOD,
            },
            path,
        )
        self.computed += 1
        return codes


def code_count(samples: int) -> int:
    """Codes of a clip on its own: one per 4 mel frames of samples // 256 + 1."""
    return math.ceil((samples // MEL_HOP + 1) / MEL_FRAMES_PER_CODE)


def training_codes(dvae: DiscreteVAE, wave: torch.Tensor) -> torch.Tensor:
    """A clip's codes as DL-Art-School computes them for training: the clip zero-padded to
    TRAINING_SAMPLES, encoded, and cut to the clip's own length. (n,) int64 on the CPU."""
    device = next(dvae.parameters()).device
    padded = F.pad(wave, (0, max(0, TRAINING_SAMPLES - wave.numel())))
    codes = dvae.codes(wave_to_mel(padded.unsqueeze(0).to(device)))[0]
    return codes[: code_count(wave.numel())].cpu()
