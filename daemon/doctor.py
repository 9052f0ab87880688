"""`voicedrop doctor`: everything a user should check before blaming the daemon."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata

from daemon.config import Settings
from daemon.paths import Root

PACKAGES = (
    "torch",
    "torchaudio",
    "tortoise-tts",
    "transformers",
    "faster-whisper",
    "ctranslate2",
    "av",
    "soundfile",
    "soxr",
    "watchdog",
    "apscheduler",
    "loguru",
    "numpy",
)
DECODERS = ("pcm_s16le", "flac", "mp3", "aac", "vorbis", "opus")
MIN_FREE_BYTES = 5 * 1024**3


@dataclass(frozen=True)
class Check:
    level: str  # ok | warn | fail
    name: str
    detail: str

    def __str__(self) -> str:
        return f"{self.level:<4}  {self.name}: {self.detail}"


def run_checks(root: Root, settings: Settings) -> list[Check]:
    return [
        Check("ok", "python", sys.version.split()[0]),
        *package_checks(),
        decoder_check(),
        whisper_check(root, settings),
        tts_check(root, settings),
        dvae_check(root, settings),
        device_check(),
        disk_check(root),
        *permission_checks(root),
    ]


def package_checks() -> list[Check]:
    checks = []
    for name in PACKAGES:
        try:
            checks.append(Check("ok", name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            checks.append(Check("fail", name, "not installed; run `make setup`"))
    return checks


def decoder_check() -> Check:
    import av

    missing = [codec for codec in DECODERS if codec not in av.codecs_available]
    ffmpeg = shutil.which("ffmpeg") or "no ffmpeg command (not needed by the daemon)"
    if missing:
        return Check("warn", "audio decoders", f"PyAV lacks {', '.join(missing)}; {ffmpeg}")
    return Check("ok", "audio decoders", f"PyAV {av.__version__}: {', '.join(DECODERS)}; {ffmpeg}")


def whisper_check(root: Root, settings: Settings) -> Check:
    model = settings.whisper.model
    path = root.resolve_setting_path(model)
    if path.is_dir():
        if (path / "model.bin").is_file():
            return Check("ok", "whisper model", str(path))
        return Check("fail", "whisper model", f"{path} has no model.bin; run `make setup`")
    if "/" in model:
        return Check("fail", "whisper model", f"{path} does not exist; run `make setup`")
    return Check(
        "warn", "whisper model", f"{model!r} will be downloaded on first use (needs internet)"
    )


def tts_check(root: Root, settings: Settings) -> Check:
    from daemon.models import missing_weights

    folder = root.resolve_setting_path(settings.tts.models_dir)
    missing = missing_weights(folder, settings.tts.decoder)
    if missing:
        return Check(
            "warn",
            "tts models",
            f"missing {', '.join(missing)} in {folder}; texts will wait until they are there "
            "(`voicedrop models tiny DIR` writes a tiny set for trying things out)",
        )
    return Check("ok", "tts models", str(folder))


def dvae_check(root: Root, settings: Settings) -> Check:
    from daemon.models import DVAE_FILE

    path = root.resolve_setting_path(settings.tts.models_dir) / DVAE_FILE
    if path.is_file():
        return Check("ok", "fine-tuning", str(path))
    message = f"no {DVAE_FILE} in {path.parent}; voices cannot be fine-tuned"
    return Check("warn", "fine-tuning", message)


def device_check() -> Check:
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        free, total = torch.cuda.mem_get_info(0)
        return Check(
            "ok", "device", f"cuda: {name}, {free / 1024**3:.1f} of {total / 1024**3:.1f} GiB free"
        )
    return Check("ok", "device", f"cpu ({os.cpu_count()} cores; no CUDA device found)")


def disk_check(root: Root) -> Check:
    free = shutil.disk_usage(root.path).free
    level = "ok" if free >= MIN_FREE_BYTES else "warn"
    return Check(level, "free disk", f"{free / 1024**3:.1f} GiB free at {root.path}")


def permission_checks(root: Root) -> list[Check]:
    checks = []
    for folder in (root.inbox, root.outbox, root.voices, root.state):
        if not folder.exists():
            checks.append(Check("warn", "folder", f"{folder} does not exist (`voicedrop init`)"))
        elif not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
            checks.append(Check("fail", "folder", f"{folder} is not readable and writable"))
        else:
            checks.append(Check("ok", "folder", f"{folder} writable"))
    return checks
