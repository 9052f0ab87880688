"""The page's drop zone: `POST /api/upload/{inbox|outbox}/<voice>?name=<file name>` with the
file as the request body lands in inbox/<voice>/ or outbox/<voice>/ as a dropped file would.

Nothing is queued here: the watcher sees the file appear (renamed into place whole, from a
hidden temp file it ignores) and Intake takes it with every check a dropped file gets. What
is refused here is what the watcher would never take or Intake would only reject: a name
that is a path or hidden, a clip type not imported, a text type not rendered. The body is
streamed to disk and counted, so a file past serve.max_upload_mb is refused without being
held in memory, and one announced as larger is refused before any of it is read.

The body must be sent as application/octet-stream: no HTML form can send that, and a script
on another site cannot without a CORS preflight, which this server refuses; so no web page
the user visits can drop files into their voicedrop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from daemon.book.document import BOOK_SUFFIXES
from daemon.core.atomic import atomic_path
from daemon.core.config import Settings
from daemon.core.paths import Root, VoiceNameError, safe_name
from daemon.serve.refusal import Refused
from daemon.service.intake import extension_reason
from daemon.service.watch import is_ignored
from daemon.tts.outputs import is_text

MIB = 1 << 20
BODY_TYPE = "application/octet-stream"
AT_ONCE = 4  # uploads received at once, each on a worker thread; more wait their turn
IDLE_TIMEOUT = 60.0  # seconds an upload may send nothing before it is given up


class Folder(StrEnum):
    INBOX = "inbox"  # clips to import
    OUTBOX = "outbox"  # texts to render


@dataclass(frozen=True)
class Landed:
    """Where an upload went, relative to the root, and its size."""

    folder: Folder
    voice: str
    file: str
    bytes: int


class Uploads:
    """Receives uploads for one root. Names being received are reserved (the event loop
    picks them, one request at a time), so two uploads of one name never overwrite."""

    def __init__(self, root: Root, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self.limit = settings.serve.max_upload_mb * MIB
        self.receiving: set[Path] = set()
        self.threads: anyio.CapacityLimiter | None = None  # made on the event loop

    async def endpoint(self, request: Request) -> Response:
        landed = await self.receive(request)
        return JSONResponse(
            {
                "folder": landed.folder,
                "voice": landed.voice,
                "file": landed.file,
                "path": f"{landed.folder}/{landed.voice}/{landed.file}",
                "bytes": landed.bytes,
            },
            status_code=202,  # accepted: the daemon takes it from here
        )

    async def receive(self, request: Request) -> Landed:
        check_body_type(request.headers.get("content-type", ""))
        self.check_announced_size(request.headers.get("content-length"))
        folder = checked_folder(request.path_params["folder"])
        voice = self.checked_voice(request.path_params["voice"])
        name = checked_file_name(request.query_params.get("name", ""))
        self.check_type(folder, name)
        target = free_upload_path(self.root.path / folder / voice, name, self.receiving)
        self.receiving.add(target)
        self.threads = self.threads or anyio.CapacityLimiter(AT_ONCE)
        try:
            size = await anyio.to_thread.run_sync(
                write_stream, request.stream(), target, self.limit, limiter=self.threads
            )
        except TimeoutError:
            raise Refused(
                408, f"nothing arrived for {IDLE_TIMEOUT:.0f} s; send the file again", "timeout"
            ) from None
        finally:
            self.receiving.discard(target)
        return Landed(folder, voice, target.name, size)

    def check_announced_size(self, content_length: str | None) -> None:
        announced = int(content_length) if content_length and content_length.isdigit() else 0
        if announced > self.limit:
            raise too_large(self.settings.serve.max_upload_mb)

    def checked_voice(self, voice: str) -> str:
        """The rules of a voice folder (Root.voice_folder_problem), for both its folders:
        Intake refuses a voice by its inbox folder even for a text."""
        try:
            self.root.voice(voice)
        except VoiceNameError as exc:
            raise Refused(400, str(exc), "invalid_voice") from None
        for folder in (self.root.inbox / voice, self.root.outbox / voice):
            problem = self.root.voice_folder_problem(folder)
            if problem:
                raise Refused(400, problem, "invalid_voice")
        return voice

    def check_type(self, folder: Folder, name: str) -> None:
        if folder == Folder.OUTBOX and not is_text(Path(name)):
            raise Refused(
                415,
                f"{name} is not a text voicedrop renders (outbox/ takes "
                f"{', '.join(BOOK_SUFFIXES)}); clips go to inbox/",
                "unsupported_file_type",
            )
        extension = Path(name).suffix.lower().lstrip(".")
        if folder == Folder.INBOX and extension not in self.settings.imports.extensions:
            raise Refused(415, extension_reason(extension, self.settings), "unsupported_file_type")


def check_body_type(content_type: str) -> None:
    if content_type.partition(";")[0].strip().lower() != BODY_TYPE:
        raise Refused(
            415,
            f"send the file itself as the body, with Content-Type: {BODY_TYPE} "
            f"(got {content_type or 'none'})",
            "unsupported_media_type",
        )


def checked_folder(folder: str) -> Folder:
    try:
        return Folder(folder)
    except ValueError:
        raise Refused(
            404, f"upload into inbox/ (clips) or outbox/ (texts), not {folder!r}", "not_found"
        ) from None


def checked_file_name(name: str) -> str:
    """The name as a dropped file would be stored (safe_name: no control characters or `|`,
    a stem short enough for every output name made from it); refused where the watcher
    would never take it."""
    if not name:
        raise Refused(400, "name the file: ?name=<file name>", "missing_name")
    if "/" in name or "\\" in name or "\x00" in name:
        raise Refused(400, f"{name!r} is a path; send a file name only", "invalid_name")
    stored = safe_name(name)
    if is_ignored(Path(stored)):
        raise Refused(
            400,
            f"{name!r} is a name voicedrop ignores (hidden, a partial download, OS litter or "
            "a note voicedrop writes); rename the file",
            "invalid_name",
        )
    return stored


def free_upload_path(folder: Path, name: str, receiving: set[Path]) -> Path:
    """`name`, or `stem-2.ext`, `stem-3.ext`… as paths.free_name picks, also past uploads
    still being received and, for a text, past any text whose outputs would be the same
    files (the same stem but for case)."""
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    taken = present | {p.name for p in receiving if p.parent == folder}
    text_stems = {Path(n).stem.casefold() for n in taken if is_text(Path(n))}
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, number = name, 2
    while candidate in taken or (
        is_text(Path(candidate)) and Path(candidate).stem.casefold() in text_stems
    ):
        candidate = f"{stem}-{number}{suffix}"
        number += 1
    return folder / candidate


def write_stream(chunks: AsyncIterator[bytes], target: Path, limit: int) -> int:
    """In a worker thread: the body into a hidden temp file beside `target`, renamed into
    place once whole and synced (atomic_path); a refusal or a dropped connection leaves
    nothing behind."""
    size = 0
    with atomic_path(target) as temp, open(temp, "wb") as out:
        for chunk in from_event_loop(chunks):
            size += len(chunk)
            if size > limit:
                raise too_large(limit // MIB)
            out.write(chunk)
        if size == 0:
            raise Refused(400, "the file is empty", "empty_file")
    return size


def from_event_loop(chunks: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The request body's chunks, read on the event loop for a worker thread."""
    while (chunk := anyio.from_thread.run(next_chunk, chunks)) is not None:
        yield chunk


async def next_chunk(chunks: AsyncIterator[bytes]) -> bytes | None:
    """TimeoutError after IDLE_TIMEOUT seconds without a byte: a stalled client frees its
    turn (AT_ONCE) instead of holding it for ever."""
    with anyio.fail_after(IDLE_TIMEOUT):
        return await anext(chunks, None)


def too_large(max_mb: int) -> Refused:
    return Refused(
        413,
        f"the file is larger than serve.max_upload_mb ({max_mb} MiB); raise it in config.yaml "
        "or copy the file into the folder",
        "file_too_large",
    )
