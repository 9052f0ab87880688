"""Shared fixtures: a temp root, generated speech-like audio, and a real daemon process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from loguru import logger

from daemon.cli import main as cli_main

# Tests never see this machine's models or the internet: no TorToiSe weights are found
# outside the folders a test names, the hub's address is a closed local port, and test roots
# use an empty model store (so no Whisper model either) unless a test configures one.
os.environ.pop("VOICEDROP_MODELS", None)
os.environ["TORTOISE_MODELS_DIR"] = tempfile.mkdtemp(prefix="voicedrop-test-tortoise-")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
EMPTY_STORE = tempfile.mkdtemp(prefix="voicedrop-test-store-")

TEST_SETTINGS = {
    "watch": {"stable_for": 0.5, "rescan_every": 5, "poll_interval": 0.3},
    "jobs": {"max_attempts": 3, "retry_delay": 0.5},
    "logging": {"level": "DEBUG"},
    # Random weights never emit the stop code: every candidate runs to this limit. The daemon
    # goes online only in tests that ask for it (against a local stand-in).
    "tts": {"max_mel_tokens": 46, "fetch": "never"},
    # Tiny random weights babble, so the render check would fail and retry every chunk; the
    # tests of the check (tests/quality/test_render_check.py) turn it on.
    "render": {"check": False},
    # No training window opens while tests run, unless a test asks for one.
    "training": {"schedule": "0 0 1 1 *", "catch_up": 0},
    "models": {"store": EMPTY_STORE},
    # Daemons in tests serve only when a test asks (tests/serve/), on a free port it picks.
    "serve": {"enabled": False, "wyoming_port": None},
}

REPO = Path(__file__).resolve().parents[1]
WHISPER_BASE = REPO / "models" / "whisper-base"  # assembled by `make setup`


def voiced_signal(
    seconds: float, rate: int = 22050, seed: int = 0, pitch: float = 140.0
) -> np.ndarray:
    """A speech-like test signal: a harmonic voice with syllable-rate loudness changes and a
    quiet noise floor, so it passes the import checks (not silent, sensible SNR)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    vibrato = pitch * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(vibrato) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, 6)))
    signal = 0.25 * voice * syllables + 0.002 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


def write_wav(path: Path, seconds: float = 2.0, rate: int = 22050, seed: int = 0, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, voiced_signal(seconds, rate, seed), rate, **kwargs)
    return path


def tortoise_clips(voice: str = "tom") -> list[Path]:
    """Real speech shipped inside the tortoise-tts package."""
    from importlib import resources

    folder = Path(str(resources.files("tortoise") / "voices" / voice))
    return sorted(folder.glob("*.wav"))


def configure(root: Path, overrides: dict | None = None) -> None:
    settings = json.loads(json.dumps(TEST_SETTINGS))
    for section, values in (overrides or {}).items():
        settings.setdefault(section, {}).update(values)
    (root / "config.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An initialised root with fast test timings."""
    path = tmp_path / "root"
    assert cli_main(["init", str(path)]) == 0
    configure(path)
    return path


def voicedrop_process(
    *args: str, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """`voicedrop ARGS` in a fresh interpreter: only for what needs a process of its own (a
    second daemon beside a running one, what a fresh interpreter imports)."""
    result = subprocess.run(
        [sys.executable, "-m", "daemon", *args], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"voicedrop {args} exited {result.returncode}:\n{result.stderr}")
    return result


@contextlib.contextmanager
def captured_command() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """stdout and stderr of a command run in this process, as a process's would be; the log
    sinks it adds (onto the captured stderr) and the signal handlers it installs are undone."""
    out, err = io.StringIO(), io.StringIO()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        logger.remove()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def voicedrop(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """`voicedrop ARGS` through the CLI's own entry point, in this process: the same argument
    parsing, settings, logging setup and exit codes as the command a user types, without
    paying 2-4 s of imports per call. (`timeout` is kept for the call sites; pytest-timeout
    guards against hangs.)"""
    with captured_command() as (out, err):
        try:
            code = cli_main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except Exception:
            traceback.print_exc()
            code = 1
    result = subprocess.CompletedProcess(["voicedrop", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"voicedrop {args} exited {code}:\n{result.stderr}")
    return result


def run_daemon(root: Path, now: Callable[[], datetime] | None = None) -> str:
    """The daemon of `voicedrop run --until-idle`, in this process, with `now` as its wall
    clock (the training window opens and closes by it); returns what it logged."""
    from daemon.core.clock import now_local
    from daemon.core.config import load_settings
    from daemon.core.logs import setup_logging
    from daemon.core.paths import Root
    from daemon.service.daemon import Daemon

    settings = load_settings(root / "config.yaml")
    with captured_command() as (_, err):
        setup_logging(settings.logging, Root.at(root).log_dir)
        code = Daemon(Root.at(root), settings, now or now_local).run(until_idle=True)
    assert code == 0, err.getvalue()
    return err.getvalue()


class SteppingClock:
    """A wall clock for the training window that moves `step` seconds on every reading, from
    `start`: a window of a minute closes after a known number of readings, not a minute."""

    def __init__(self, start: datetime, step: float = 0.0) -> None:
        self.moment = start
        self.step = timedelta(seconds=step)

    def __call__(self) -> datetime:
        moment = self.moment
        self.moment += self.step
        return moment


def status(root: Path, voice: str | None = None) -> dict:
    """What `voicedrop status --json` prints, read in this process."""
    from daemon.core.paths import Root
    from daemon.report.status import collect

    return json.loads(json.dumps(collect(Root.at(root), voice)))


def run_until_idle(root: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`voicedrop run --until-idle` in this process (see `voicedrop`)."""
    return voicedrop("run", "--until-idle", "--root", str(root), timeout=timeout)


def wait_for(predicate: Callable[[], object], timeout: float = 60, every: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


class DaemonProcess:
    """`voicedrop run` in a child process, as a user or systemd starts it."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, *extra: str, env: dict[str, str] | None = None) -> DaemonProcess:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run", "--root", str(self.root), *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        wait_for(lambda: "voicedrop ready" in self.output() or self.process.poll() is not None)
        return self

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def daemon(root: Path, tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(root, tmp_path / "daemon.log")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.kill()


def imported_clips(root: Path, voice: str) -> list[Path]:
    return sorted((root / "voices" / voice / "clips").glob("*.wav"))


def ffmpeg(*arguments: str) -> None:
    """Run the ffmpeg command quietly (fixtures in mp3, ogg, m4a, video…)."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *arguments], check=True)


def ffmpeg_encode(source: Path, target: Path, *options: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-i", str(source), *options, str(target))
    return target


SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "She sells fresh bread and warm coffee every morning at the small corner shop.",
    "We walked along the quiet beach until the sun went down behind the hills.",
    "My grandfather planted apple trees in the garden many years ago.",
    "Please remember to close the window before you leave the house tonight.",
    "The children laughed as the little boat drifted slowly across the lake.",
)


def espeak(path: Path, text: str, voice: str = "en-us", speed: int = 160) -> Path:
    """Speech with a known transcript, from espeak-ng (22050 Hz mono)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def normalised_words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c in " '" else " " for c in text.lower()).split()


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Word-level edit distance over all pairs, divided by the reference word count."""
    errors = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = normalised_words(reference), normalised_words(hypothesis)
        row = list(range(len(hyp) + 1))
        for i, ref_word in enumerate(ref, 1):
            previous, row[0] = row[:], i
            for j, hyp_word in enumerate(hyp, 1):
                row[j] = min(
                    previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)
                )
        errors += row[-1]
        words += len(ref)
    return errors / words


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TorToiSe's model classes at tiny dims with random weights, written once per session
    (`voicedrop models tiny`); treat the folder as read-only, tests share it."""
    from daemon.tts.tiny import write_tiny_models

    directory = tmp_path_factory.mktemp("tiny-models")
    write_tiny_models(directory)
    return directory


@pytest.fixture(scope="session")
def espeak_voice_template(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Path:
    """A root whose voice `eve` of espeak-ng clips is imported (analysed, transcribed by
    Whisper, its speaker heard): made once per session, since that import is most of a
    rendering test's setup; tests take a copy (tests/quality/speech.py, espeak_voice_root)."""
    from tests.quality.speech import configure_espeak_root, drop_espeak_voice

    path = tmp_path_factory.mktemp("espeak-voice") / "root"
    assert cli_main(["init", str(path)]) == 0
    configure_espeak_root(path, tiny_models)
    drop_espeak_voice(path / "inbox" / "eve")
    run_until_idle(path)
    return path


class HubStandIn:
    """A stand-in for the Hugging Face Hub on 127.0.0.1 (the real one cannot be reached from
    tests): `resolve` URLs answer HEAD like the hub (X-Repo-Commit, the LFS sha256 as
    X-Linked-Etag, X-Linked-Size) and redirect to a CDN-like address that serves the bytes
    with Range support. Faults on demand: `cut_after[name]` sends that many bytes once, then
    drops the connection; `corrupt` serves wrong bytes of the right length; `rate` throttles
    (bytes per second). `gets` logs (name, range start) of every download request."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, files: dict[tuple[str, str, str], Path]) -> None:
        import hashlib
        import threading
        from http.server import ThreadingHTTPServer

        self.files = {key: Path(path) for key, path in files.items()}
        self.blobs: dict[str, tuple[str, Path]] = {}
        self.meta: dict[tuple[str, str, str], tuple[str, int]] = {}
        for key, path in self.files.items():
            sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
            self.meta[key] = (sha256, path.stat().st_size)
            self.blobs[sha256] = (Path(key[2]).name, path)
        self.cut_after: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.rate: float | None = None
        self.gets: list[tuple[str, int]] = []
        self.heads: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handler(self):
        from http.server import BaseHTTPRequestHandler
        from urllib.parse import unquote

        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def resolve(self) -> tuple[str, int, str] | None:
                """(sha256, size, commit) of the file a resolve URL names."""
                parts = unquote(self.path).lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                found = hub.meta.get(("/".join(parts[:2]), parts[3], "/".join(parts[4:])))
                commit = parts[3] if len(parts[3]) == 40 else hub.COMMIT
                return None if found is None else (*found, commit)

            def do_HEAD(self) -> None:
                hub.heads.append(self.path)
                self.redirect(send_body=False)

            def do_GET(self) -> None:
                if self.path.startswith("/cdn/"):
                    self.serve_blob(self.path.removeprefix("/cdn/"))
                else:
                    self.redirect(send_body=True)

            def redirect(self, send_body: bool) -> None:
                found = self.resolve()
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                sha256, size, commit = found
                self.send_response(302)
                self.send_header("Location", f"{hub.url}/cdn/{sha256}")
                self.send_header("X-Repo-Commit", commit)
                self.send_header("X-Linked-Etag", f'"{sha256}"')
                self.send_header("X-Linked-Size", str(size))
                self.send_header("ETag", '"0000"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def serve_blob(self, sha256: str) -> None:
                name, path = hub.blobs[sha256]
                size = path.stat().st_size
                start = 0
                ranged = self.headers.get("Range")
                if ranged:
                    start = int(ranged.removeprefix("bytes=").split("-")[0])
                hub.gets.append((name, start))
                self.send_response(206 if ranged else 200)
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Content-Length", str(size - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.send_body(name, path, start, size)

            def send_body(self, name: str, path: Path, start: int, size: int) -> None:
                cut = hub.cut_after.pop(name, None)
                if name in hub.corrupt or cut is not None or hub.rate:
                    data = path.read_bytes()[start:]
                    if name in hub.corrupt:
                        data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
                    if cut is not None:
                        data = data[: max(cut - start, 0)]
                    step = 65536
                    for offset in range(0, len(data), step):
                        self.wfile.write(data[offset : offset + step])
                        if hub.rate:
                            time.sleep(step / hub.rate)
                    if cut is not None:
                        self.close_connection = True
                        self.connection.shutdown(2)
                    return
                with open(path, "rb") as handle:
                    self.connection.sendfile(handle, start, size - start)

        return Handler


def tiny_hub_files(tiny_models: Path) -> dict[tuple[str, str, str], Path]:
    """The tiny set under the released names, where the real files are on the hub."""
    from daemon.weights.fetch import RELEASES

    return {(r.repo, r.revision, r.path): tiny_models / r.name for r in RELEASES}


# Voice `tom` on the tiny model set: what render and speech tests start from.
FAST = "---\ncandidates: 2\ndiffusion_iterations: 4\n---\n"  # a render in ~1 s


def import_tom(root: Path, tiny_models: Path) -> Path:
    """Voice `tom` with two imported clips, rendering with the tiny set."""
    configure(root, {"tts": {"models_dir": str(tiny_models)}})
    (root / "inbox" / "tom").mkdir()
    for clip in tortoise_clips("tom")[:2]:
        shutil.copy(clip, root / "inbox" / "tom" / clip.name)
    run_until_idle(root)
    (root / "outbox" / "tom").mkdir()
    return root


@pytest.fixture(scope="module")
def tom_latents(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> list[Path]:
    """tom's cached latents, from one render in a root of their own (computing them from 26 s
    of speech is most of a render's time, so each test does not pay for it again)."""
    root = tmp_path_factory.mktemp("tom-latents") / "root"
    assert cli_main(["init", str(root)]) == 0
    import_tom(root, tiny_models)
    (root / "outbox" / "tom" / "warm.txt").write_text(FAST + "Warm up.")
    run_until_idle(root)
    cached = sorted((root / "voices" / "tom" / "latents").glob("*.pth"))
    assert len(cached) == 1
    return cached


@pytest.fixture
def tts_root(root: Path, tiny_models: Path, tom_latents: list[Path]) -> Path:
    """A root whose voice `tom` has imported clips and whose models are the tiny set; its
    latents cache holds what the same clips and models give (a render still checks the key)."""
    import_tom(root, tiny_models)
    latents = root / "voices" / "tom" / "latents"
    latents.mkdir(parents=True, exist_ok=True)
    for path in tom_latents:
        shutil.copy(path, latents / path.name)
    return root


@pytest.fixture
def cold_tts_root(root: Path, tiny_models: Path) -> Path:
    """`tts_root` with nothing in the latents cache."""
    return import_tom(root, tiny_models)
