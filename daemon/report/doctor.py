"""`voicedrop doctor`: everything a user should check before blaming the daemon."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from daemon.core.config import ServeSettings, Settings
from daemon.core.paths import Root
from daemon.tts.spec import (
    AUTOREGRESSIVE_FILE,
    CLVP_FILE,
    DIFFUSION_FILE,
    DVAE_FILE,
    HIFIGAN_FILE,
    VOCODER_FILE,
    missing_weights,
)

RENDER_FILES = (AUTOREGRESSIVE_FILE, DIFFUSION_FILE, CLVP_FILE, VOCODER_FILE, HIFIGAN_FILE)

PACKAGES = (
    "torch",
    "torchaudio",
    "tortoise-tts",
    "transformers",
    "faster-whisper",
    "ctranslate2",
    "resemblyzer",
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
        vad_check(),
        store_check(root, settings),
        whisper_check(root, settings),
        tts_check(root, settings),
        *model_file_checks(root, settings),
        dvae_check(root, settings),
        device_check(),
        disk_check(root),
        ledger_check(root),
        *permission_checks(root),
        *serve_checks(root, settings),
    ]


def package_checks() -> list[Check]:
    checks = []
    for name in PACKAGES:
        try:
            checks.append(Check("ok", name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            checks.append(Check("fail", name, "not installed; run `make setup`"))
    return checks


def vad_check() -> Check:
    """Resemblyzer's voice activity detector: PyPI's webrtcvad imports pkg_resources, which
    setuptools 81 and later lack; `make setup` puts webrtcvad-wheels' module in its place."""
    try:
        import webrtcvad
    except ImportError as exc:
        return Check("fail", "speaker check", f"webrtcvad does not load ({exc}); run `make setup`")
    return Check("ok", "speaker check", f"webrtcvad {getattr(webrtcvad, '__version__', '?')}")


def decoder_check() -> Check:
    import av

    missing = [codec for codec in DECODERS if codec not in av.codecs_available]
    ffmpeg = shutil.which("ffmpeg") or "no ffmpeg command (not needed by the daemon)"
    if missing:
        return Check("warn", "audio decoders", f"PyAV lacks {', '.join(missing)}; {ffmpeg}")
    return Check("ok", "audio decoders", f"PyAV {av.__version__}: {', '.join(DECODERS)}; {ffmpeg}")


def whisper_check(root: Root, settings: Settings) -> Check:
    from daemon.weights.store import ModelMissing, whisper_model

    try:
        model = whisper_model(root, settings)
    except ModelMissing as exc:
        return Check("fail", "whisper model", str(exc))
    if Path(model).is_dir():
        return Check("ok", "whisper model", model)
    return Check(
        "warn", "whisper model", f"{model!r} will be downloaded on first use (needs internet)"
    )


def store_check(root: Root, settings: Settings) -> Check:
    from daemon.weights.store import STORE_ENV, store_dir

    store = store_dir(root, settings)
    how = (
        f"${STORE_ENV}"
        if os.environ.get(STORE_ENV)
        else "models.store"
        if settings.models.store
        else "default"
    )
    return Check("ok", "model store", f"{store} ({how})")


def tts_check(root: Root, settings: Settings) -> Check:
    from daemon.weights.store import tortoise_models

    tts = settings.tts
    found = tortoise_models(root, settings, tts.models_dir, tts.decoder)
    where = f"{found.folder} ({found.source.value})"
    missing = missing_weights(found.folder, tts.decoder)
    if missing:
        daemon = " (or let the daemon fetch them: tts.fetch is auto)" if tts.fetch == "auto" else ""
        return Check(
            "warn",
            "tts models",
            f"missing {', '.join(missing)} in {where}; texts wait until they are there: run "
            f"`voicedrop models fetch`{daemon}",
        )
    return Check("ok", "tts models", where)


def model_file_checks(root: Root, settings: Settings) -> list[Check]:
    """Each TorToiSe file the renders and fine-tuning would load, with its sha256 status."""
    from daemon.weights.store import FileState, dvae_file, file_status, tortoise_models

    tts = settings.tts
    folder = tortoise_models(root, settings, tts.models_dir, tts.decoder).folder
    paths = [folder / name for name in RENDER_FILES]
    paths.append(dvae_file(root, settings, tts.models_dir))
    levels = {
        FileState.VERIFIED: "ok",
        FileState.UNVERIFIED: "warn",
        FileState.MISMATCH: "fail",
        FileState.MISSING: "warn",
    }
    checks = []
    for path in paths:
        status = file_status(path)
        checks.append(
            Check(levels[status.state], path.name, f"{status.state.value}: {status.detail}")
        )
    return checks


def dvae_check(root: Root, settings: Settings) -> Check:
    from daemon.weights.store import dvae_file

    path = dvae_file(root, settings, settings.tts.models_dir)
    if path.is_file():
        return Check("ok", "fine-tuning", str(path))
    message = (
        f"no {DVAE_FILE} in {path.parent}; voices cannot be fine-tuned (`voicedrop models fetch`)"
    )
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


def ledger_check(root: Root) -> Check:
    """A damaged ledger stops `status` (and stopped the daemon before it set such ones aside)."""
    from daemon.core.ledger import LedgerDamaged, ledger_problem

    path = root.ledger_file
    problem = ledger_problem(path)
    if problem is not None:
        return Check("fail", "job ledger", str(LedgerDamaged(path, problem)))
    if not path.exists():
        return Check("ok", "job ledger", f"{path} not created yet; the daemon builds it")
    return Check("ok", "job ledger", f"{path} sound")


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


SERVE_TIMEOUT = 5.0  # s a running daemon's endpoints have to answer
SERVE_PATHS = ("/api/status", "/v1/models", "/v1/audio/voices", "/metrics")


def serve_checks(root: Root, settings: Settings) -> list[Check]:
    """The endpoints of the daemon running on this root, asked as a client would (with the
    key when one is set): a port held by another program, or a daemon of another root,
    shows here rather than in a client's confusing error."""
    serve = settings.serve
    if not serve.enabled:
        return [Check("ok", "serve", "serve.enabled is false: nothing is served")]
    host = "127.0.0.1" if serve.host in ("0.0.0.0", "::", "") else serve.host
    url = f"http://{f'[{host}]' if ':' in host else host}:{serve.port}"
    return [*http_checks(root, serve, url), wyoming_check(host, serve.wyoming_port)]


def http_checks(root: Root, serve: ServeSettings, url: str) -> list[Check]:
    checks = []
    for path in SERVE_PATHS:
        problem, answer = ask(f"{url}{path}", serve.api_key)
        if problem is not None:
            checks.append(Check("warn" if problem.startswith("nothing") else "fail", path, problem))
            if problem.startswith("nothing"):
                return checks  # the others say the same
            continue
        if path == "/api/status" and answer.get("root") != str(root.path):
            checks.append(Check("fail", path, f"{url} serves another root: {answer.get('root')}"))
            continue
        checks.append(Check("ok", path, f"{url}{path} answers"))
    return checks


def wyoming_check(host: str, port: int | None) -> Check:
    """`describe`, asked as Home Assistant asks it."""
    if port is None:
        return Check("ok", "wyoming", "serve.wyoming_port is null: no Wyoming server")
    import asyncio

    address = f"tcp://{host}:{port}"
    try:
        voices = asyncio.run(wyoming_voices(host, port))
    except (OSError, TimeoutError) as exc:
        return Check("warn", "wyoming", f"nothing answers on {address} ({exc})")
    if voices is None:
        return Check("fail", "wyoming", f"{address} answers, but not as voicedrop's Wyoming server")
    return Check("ok", "wyoming", f"{address} answers describe: {len(voices)} voices")


async def wyoming_voices(host: str, port: int) -> list[str] | None:
    """The voices voicedrop's TTS program lists there; None: something else answers."""
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    client = AsyncTcpClient(host, port, connect_timeout=SERVE_TIMEOUT, read_timeout=SERVE_TIMEOUT)
    async with client:
        await client.write_event(Describe().event())
        event = await client.read_event()
    if event is None or not Info.is_type(event.type):
        return None
    programs = [program for program in Info.from_event(event).tts if program.name == "voicedrop"]
    return [voice.name for voice in programs[0].voices] if programs else None


def ask(url: str, api_key: str | None) -> tuple[str | None, dict]:
    """(a problem in words, or None; the JSON answer when it is JSON)."""
    import json
    import urllib.error
    import urllib.request

    headers = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=SERVE_TIMEOUT) as response:
            body = response.read(1 << 20)
            is_json = response.headers.get_content_type() == "application/json"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code} {exc.reason}", {}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"nothing answers on {url} ({reason}): is `voicedrop run` running?", {}
    return None, json.loads(body) if is_json else {}
