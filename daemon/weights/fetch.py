"""`voicedrop models fetch`: TorToiSe's released weights from the Hugging Face Hub into the
model store, resumable, checked against the sha256 the hub publishes before they are moved
into place, and recorded in the store's manifest.

The metadata request and the download are plain HTTP through huggingface_hub's session (so
HF_ENDPOINT, proxies and its user agent apply); the loop is ours so that a partial file is
kept for an HTTP Range resume, progress is logged, and nothing is moved into place unchecked.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin

from loguru import logger

from daemon.core.files import sha256_of
from daemon.weights.store import (
    DVAE_REPO,
    TORTOISE_REPO,
    read_manifest,
    write_manifest,
)

PARTIAL_DIR = ".incomplete"
LOCK_FILE = ".fetch.lock"
CHUNK = 1 << 20
TIMEOUT = (10.0, 60.0)  # seconds to connect, seconds without a byte
RETRIES = 3  # connection drops within one run, each resumed where it stopped
PROGRESS_EVERY = 2.0
MAX_REDIRECTS = 5
# dvae.pth's sha256 as DL-Art-School's and ai-voice-cloning's instructions pin it; a test
# swaps this for the tiny stand-in's hash.
PINNED_SHA256 = {"dvae.pth": "a990825371506c16bcf0e8167bf24ccf82f65bb6a1dbcbfcf058d76f9b197e35"}


@dataclass(frozen=True)
class Release:
    """One released file: its name in the store and where the hub keeps it."""

    name: str
    repo: str
    path: str
    revision: str


RELEASES = (
    *(
        Release(name, TORTOISE_REPO, name, "main")
        for name in (
            "autoregressive.pth",
            "diffusion_decoder.pth",
            "clvp2.pth",
            "vocoder.pth",
            "hifidecoder.pth",
        )
    ),
    # ai-voice-cloning's src/utils.py: the one commit of tortoise-tts-v2 that still has it.
    Release("dvae.pth", DVAE_REPO, ".models/dvae.pth", "3704aea61678e7e468a06d8eea121dba368a798e"),
)
RELEASE_NAMES = tuple(release.name for release in RELEASES)


class FetchError(Exception):
    """A fetch that did not complete; the message says why and what to do."""


class Offline(FetchError):
    """The hub cannot be reached at all."""


@dataclass(frozen=True)
class Remote:
    url: str
    size: int
    sha256: str
    commit: str | None


# -- the hub ---------------------------------------------------------------------------------


def endpoint() -> str:
    """HF_ENDPOINT as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def remote_file(release: Release) -> Remote:
    """Size, sha256 (the LFS ETag) and download address, from one HEAD request."""
    import requests
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(release.repo, release.path, revision=release.revision, endpoint=endpoint())
    headers = {**build_hf_headers(), "Accept-Encoding": "identity"}
    try:
        for _ in range(MAX_REDIRECTS):
            response = get_session().head(
                url, headers=headers, allow_redirects=False, timeout=TIMEOUT
            )
            location = response.headers.get("Location")
            if not (300 <= response.status_code < 400 and location and location.startswith("/")):
                break
            url = urljoin(url, location)  # a renamed repository: same host
        hf_raise_for_status(response)
    except requests.ConnectionError as error:
        raise Offline(f"cannot reach {endpoint()} ({type(error).__name__})") from error
    except requests.Timeout as error:
        raise Offline(f"{endpoint()} did not answer within {TIMEOUT[0]:.0f} s") from error
    except requests.HTTPError as error:
        raise FetchError(f"{release.repo}/{release.path}: {error}") from error
    etag = response.headers.get(constants.HUGGINGFACE_HEADER_X_LINKED_ETAG) or response.headers.get(
        "ETag", ""
    )
    sha256 = etag.removeprefix("W/").strip('"')
    size = response.headers.get(constants.HUGGINGFACE_HEADER_X_LINKED_SIZE) or response.headers.get(
        "Content-Length"
    )
    if len(sha256) != 64 or not size or not size.isdigit():
        raise FetchError(
            f"{release.repo}/{release.path}: the hub published no sha256 and size for it "
            f"(ETag {etag!r}), so it cannot be checked; not fetched"
        )
    return Remote(
        url=response.headers.get("Location") or url,
        size=int(size),
        sha256=sha256.lower(),
        commit=response.headers.get(constants.HUGGINGFACE_HEADER_X_REPO_COMMIT),
    )


# -- one file --------------------------------------------------------------------------------


class Progress:
    """Log lines with bytes, rate and ETA every few seconds (journald-friendly, no bars)."""

    def __init__(self, name: str, size: int, start: int) -> None:
        self.name, self.size, self.start = name, size, start
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        rate = (done - self.start) / max(now - self.started, 1e-6)
        eta = (self.size - done) / rate if rate > 0 else float("inf")
        logger.info(
            "fetching {}: {:.1f}/{:.1f} MB ({:.0%}), {:.1f} MB/s, ETA {:.0f} s",
            self.name,
            done / 1e6,
            self.size / 1e6,
            done / max(self.size, 1),
            rate / 1e6,
            eta,
        )


def partial_path(folder: Path, release: Release, remote: Remote) -> Path:
    """Keyed by the expected sha256, so bytes of an older upstream file are never resumed."""
    return folder / PARTIAL_DIR / f"{release.name}.{remote.sha256[:16]}.part"


def hash_existing(path: Path) -> tuple[hashlib._Hash, int]:
    """The digest of what a partial download holds so far, and its size."""
    return sha256_of(path), path.stat().st_size


def download(
    remote: Remote, partial: Path, name: str, stop: threading.Event | None
) -> hashlib._Hash:
    """Append the missing bytes of `remote` to `partial` (resuming with a Range request) and
    return the sha256 of the whole file."""
    import requests

    dropped = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
    partial.parent.mkdir(parents=True, exist_ok=True)
    if partial.exists() and partial.stat().st_size > remote.size:
        partial.unlink()
    if partial.exists():
        digest, have = hash_existing(partial)
        logger.info("fetching {}: resuming at {:.1f} MB", name, have / 1e6)
    else:
        digest, have = hashlib.sha256(), 0
    progress = Progress(name, remote.size, have)
    for attempt in range(1, RETRIES + 1):
        if have >= remote.size:
            break
        try:
            digest, have = fetch_range(remote, partial, digest, have, progress, stop)
        except dropped as error:
            have = partial.stat().st_size if partial.exists() else 0
            if attempt == RETRIES:
                raise Offline(
                    f"{name}: the connection dropped {RETRIES} times ({type(error).__name__}); "
                    f"{have / 1e6:.1f} of {remote.size / 1e6:.1f} MB are kept and the next "
                    "fetch resumes there"
                ) from error
            logger.warning(
                "fetching {}: connection dropped at {:.1f} MB, resuming", name, have / 1e6
            )
            digest, have = hash_existing(partial)
    progress(have, final=True)
    return digest


def fetch_range(
    remote: Remote,
    partial: Path,
    digest: hashlib._Hash,
    have: int,
    progress: Progress,
    stop: threading.Event | None,
) -> tuple[hashlib._Hash, int]:
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    headers = {**build_hf_headers(), "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with get_session().get(remote.url, headers=headers, stream=True, timeout=TIMEOUT) as response:
        hf_raise_for_status(response)
        if have and response.status_code != 206:  # the server ignored the range: start over
            digest, have = hashlib.sha256(), 0
        hasher = BackgroundHash(digest)
        try:
            with open(partial, "ab" if have else "wb", buffering=0) as out:
                writeback = EarlyWriteback(out.fileno(), have)
                for block in response.iter_content(CHUNK):
                    if stop is not None and stop.is_set():
                        raise FetchError("stopped; the next fetch resumes where it stopped")
                    if have + len(block) > remote.size:
                        raise FetchError(f"the server sent more than the {remote.size} bytes")
                    out.write(block)
                    hasher.update(block)
                    have += len(block)
                    writeback.written(have)
                    progress(have)
                out.flush()
                os.fsync(out.fileno())
        finally:
            digest = hasher.finish()
    return digest, have


class EarlyWriteback:
    """Start writing the file back to disk while it downloads (Linux sync_file_range, which
    does not wait), so the fsync before the rename into place has little left to do."""

    EVERY = 2 << 20

    def __init__(self, fd: int, start: int) -> None:
        self.fd, self.synced = fd, start
        self.call = _sync_file_range()

    def written(self, size: int) -> None:
        if self.call is not None and size - self.synced >= self.EVERY:
            self.call(self.fd, self.synced, size - self.synced, SYNC_FILE_RANGE_WRITE)
            self.synced = size


SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range():
    """libc's sync_file_range, or None where there is none (the final fsync still runs)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return call


class BackgroundHash:
    """sha256 in a thread (hashlib releases the GIL on large blocks), so hashing overlaps
    the network and the disk instead of adding to them; at most QUEUED blocks wait."""

    QUEUED = 8

    def __init__(self, digest: hashlib._Hash) -> None:
        self.digest = digest
        self.blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=self.QUEUED)
        self.thread = threading.Thread(target=self.run, name="sha256", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while (block := self.blocks.get()) is not None:
            self.digest.update(block)

    def update(self, block: bytes) -> None:
        self.blocks.put(block)

    def finish(self) -> hashlib._Hash:
        self.blocks.put(None)
        self.thread.join()
        return self.digest


def fetch_file(folder: Path, release: Release, stop: threading.Event | None = None) -> dict:
    """Download one file into `folder`, check it, move it into place; its manifest record."""
    from daemon.core.atomic import fsync_directory

    remote = remote_file(release)
    pinned = PINNED_SHA256.get(release.name)
    if pinned is not None and remote.sha256 != pinned:
        raise FetchError(
            f"{release.name}: the hub now publishes sha256 {remote.sha256[:12]}…, not the "
            f"pinned {pinned[:12]}…; not fetched"
        )
    partial = partial_path(folder, release, remote)
    check_free_space(folder, remote.size - (partial.stat().st_size if partial.exists() else 0))
    digest = download(remote, partial, release.name, stop)
    size = partial.stat().st_size
    if size != remote.size or digest.hexdigest() != remote.sha256:
        partial.unlink(missing_ok=True)
        raise FetchError(
            f"{release.name}: refused, the download has {size} bytes and sha256 "
            f"{digest.hexdigest()[:12]}…, the hub publishes {remote.size} bytes and "
            f"{remote.sha256[:12]}…; nothing was kept, fetch again"
        )
    target = folder / release.name
    os.replace(partial, target)
    fsync_directory(folder)
    return record(release, remote)


def record(release: Release, remote: Remote) -> dict:
    return {
        "size": remote.size,
        "sha256": remote.sha256,
        "repo": release.repo,
        "path": release.path,
        "revision": remote.commit or release.revision,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise FetchError(
            f"{folder} has {free / 1e6:.0f} MB free, {needed / 1e6:.0f} MB are needed; "
            "free some space or set VOICEDROP_MODELS to a store on a larger disk"
        )


# -- the store -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    fetched: list[str]
    present: list[str]
    failed: dict[str, str]  # name -> why


def releases_named(names: list[str] | None) -> list[Release]:
    if not names:
        return list(RELEASES)
    unknown = sorted(set(names) - set(RELEASE_NAMES))
    if unknown:
        raise FetchError(
            f"unknown file {', '.join(unknown)}; choose from {', '.join(RELEASE_NAMES)}"
        )
    return [release for release in RELEASES if release.name in names]


def fetch_into(
    folder: Path, names: list[str] | None = None, stop: threading.Event | None = None
) -> Outcome:
    """Fetch every named release `folder` lacks; files there are checked against the
    manifest (or, without a record, against the hub) and fetched again when they differ."""
    releases = releases_named(names)
    if offline_mode():
        raise Offline("HF_HUB_OFFLINE is set")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = store_lock(folder)
    except OSError as error:
        raise FetchError(store_problem(folder, error)) from error
    with lock:
        manifest = read_manifest(folder)
        outcome = Outcome([], [], {})
        for release in releases:
            try:
                if is_recorded(folder, release, manifest):
                    outcome.present.append(release.name)
                    continue
                manifest[release.name] = fetch_file(folder, release, stop)
            except Offline:
                raise
            except FetchError as error:
                logger.error("{}", error)
                outcome.failed[release.name] = str(error)
                continue
            except OSError as error:
                raise FetchError(store_problem(folder, error)) from error
            finally:
                write_manifest_quietly(folder, manifest)
            outcome.fetched.append(release.name)
            logger.info("fetched {} into {} (sha256 checked)", release.name, folder)
        return outcome


def is_recorded(folder: Path, release: Release, manifest: dict[str, dict]) -> bool:
    """The file is there and is the one the manifest (or, without a record, the hub) names;
    a file that is not is removed so it is fetched again."""
    from daemon.core.files import cached_sha256

    path = folder / release.name
    if not path.is_file():
        return False
    entry = manifest.get(release.name)
    if entry is None:
        remote = remote_file(release)
        if path.stat().st_size == remote.size and cached_sha256(path) == remote.sha256:
            manifest[release.name] = record(release, remote)
            logger.info("{}: already in the store and checked against the hub", release.name)
            return True
    elif path.stat().st_size == entry["size"] and cached_sha256(path) == entry["sha256"]:
        return True
    logger.warning("{} does not match its recorded sha256; fetching it again", path)
    path.unlink()
    manifest.pop(release.name, None)
    return False


def write_manifest_quietly(folder: Path, manifest: dict[str, dict]) -> None:
    try:
        write_manifest(folder, manifest)
    except OSError as error:
        logger.error("could not write {}/manifest.json: {}", folder, error)


def store_problem(folder: Path, error: OSError) -> str:
    """Disk full and permissions are the machine's problem, said as such."""
    if error.errno == errno.ENOSPC:
        return f"the disk holding {folder} is full ({error}); partial downloads are kept"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"cannot write to the model store {folder} ({error.strerror}); run the fetch as a "
            "user who may, or set VOICEDROP_MODELS (or models.store) to a writable folder"
        )
    return f"{folder}: {error}"


@contextmanager
def store_lock(folder: Path) -> Iterator[None]:
    """One fetch per store at a time, across roots and processes."""
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 - held for the fetch
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FetchError(f"another fetch into {folder} is running; try again later") from None
        yield
    finally:
        handle.close()


# -- the daemon's background fetch -----------------------------------------------------------


class BackgroundFetch:
    """tts.fetch: auto — fetch what renders and fine-tuning lack, in a thread, so start-up,
    imports and transcription never wait; offline it tries again later, backing off."""

    FIRST_RETRY = 60.0
    LONGEST_WAIT = 3600.0

    def __init__(
        self,
        folder: Path,
        needed: Callable[[], list[str]],
        report: Callable[[str, str], None],
        on_done: Callable[[], None],
    ) -> None:
        self.folder = folder
        self.needed = needed
        self.report = report
        self.on_done = on_done
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="fetch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def loop(self) -> None:
        wait = self.FIRST_RETRY
        while not self.stopping.is_set():
            names = self.needed()
            if not names:
                return
            self.report("fetching", f"fetching {', '.join(names)} into {self.folder}")
            try:
                outcome = fetch_into(self.folder, names, self.stopping)
            except FetchError as error:
                outcome = Outcome([], [], {})
                state, problem = ("offline" if isinstance(error, Offline) else "failed"), str(error)
            else:
                state, problem = "failed", "; ".join(outcome.failed.values())
            if outcome.fetched:
                self.on_done()
            if self.stopping.is_set():
                return
            if not problem:
                self.report("done", f"fetched {', '.join(names)} into {self.folder}")
                return
            message = (
                f"could not fetch {', '.join(n for n in names if n not in outcome.fetched)}: "
                f"{problem}; trying again in {wait / 60:.0f} min (or run `voicedrop models fetch`)"
            )
            logger.warning("{}", message)
            self.report(state, message)
            self.stopping.wait(wait)
            wait = min(wait * 2, self.LONGEST_WAIT)


def missing_releases(root, settings) -> list[str]:
    """What the daemon fetches for itself: the released set when no folder holds what
    rendering with tts.decoder needs, dvae.pth when it is nowhere; nothing when the user
    named a folder (tts.models_dir)."""
    from daemon.tts.spec import DVAE_FILE, missing_weights
    from daemon.weights.store import dvae_file, tortoise_models, tortoise_store

    tts = settings.tts
    if tts.models_dir:
        return []
    store = tortoise_store(root, settings)
    names = []
    found = tortoise_models(root, settings, None, tts.decoder)
    if missing_weights(found.folder, tts.decoder):
        names = [n for n in RELEASE_NAMES if n != DVAE_FILE and not (store / n).is_file()]
    if not dvae_file(root, settings, None).is_file():
        names.append(DVAE_FILE)
    return names


def fetch_status_file(root) -> Path:
    return root.state / "fetch.json"


def write_fetch_status(root, state: str, message: str) -> None:
    """What `status` shows about the background fetch: one line."""
    import json

    from daemon.core.atomic import write_text

    at = datetime.now(UTC).isoformat(timespec="seconds")
    write_text(fetch_status_file(root), json.dumps({"state": state, "message": message, "at": at}))
