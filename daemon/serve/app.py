"""The HTTP API: an ASGI app (Starlette) that reads what `status` reads and queues speech.

Every answer but speech comes from the ledger and the folders, as `voicedrop status` does,
so a slow or busy worker never slows a request. Those endpoint functions are plain
functions: Starlette runs them in its thread pool, where the blocking SQLite and folder
reads belong. Speech is queued for the worker and streamed back (speech.py, stream.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon.core.config import ServeSettings, Settings
from daemon.core.ledger import LedgerDamaged
from daemon.core.paths import Root
from daemon.serve.metrics import build_registry
from daemon.serve.page import PAGE_FILES, page_file, render_audio
from daemon.serve.refusal import Refused
from daemon.serve.speech import Speaker, SpeechRequest, SpokenChunk
from daemon.serve.stream import MAX_SPEED, MIN_SPEED, ResponseFormat, encoded
from daemon.serve.uploads import Uploads
from daemon.tts.generation import SPEECH_MODELS

# What the speech endpoint renders each OpenAI model name with (preset, decoder; None: the
# voice's decoder); the presets are models of their own. /v1/models lists the preset, so a
# user sees what "tts-1" means.
BODY_OVERHEAD = 4096  # bytes of a speech request's JSON besides its input text
FRESH_FOR = 1.0  # s an /api/status or /metrics answer is served again to whoever asks
DISCONNECT_POLL = 0.5  # s between looks for a client that hung up before hearing anything

ReadStatus = Callable[[], dict[str, Any]]


def build_app(
    root: Root, settings: Settings, read_status: ReadStatus, speaker: Speaker
) -> Starlette:
    """The app for one root; `read_status` is `collect()` for that root (the daemon passes it,
    so /api/status and `voicedrop status --json` are one code path), `speaker` queues speech
    for the daemon's worker."""
    registry = build_registry(root, settings)
    status_body = Fresh(lambda: JSONResponse(read_status()).body)
    metrics_body = Fresh(partial(generate_latest, registry))

    def status(_: Request) -> Response:
        try:
            return Response(status_body(), media_type="application/json")
        except LedgerDamaged as exc:
            return error_response(503, str(exc), "server_error", "ledger_damaged")

    def metrics(_: Request) -> Response:
        return Response(metrics_body(), media_type=CONTENT_TYPE_LATEST)

    def voices(_: Request) -> Response:
        names = speaker.voices()
        return JSONResponse({"voices": [{"id": name, "name": name} for name in names]})

    async def speech(request: Request) -> Response:
        """OpenAI's speech endpoint: the audio streams back sentence by sentence."""
        limit = settings.serve.max_input_chars * 4 + BODY_OVERHEAD
        try:
            body = await bounded_body(request, limit)
            wanted, fmt, speed = speech_request(body, client_of(request))
            stream = speaker.speak(wanted)
            first = await first_unless_gone(request, stream)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; nginx's "client closed"
        except StopAsyncIteration:  # nothing to say: an empty file of the format
            return Response(b"", media_type=fmt.media_type)
        return StreamingResponse(encoded(first, stream, fmt, speed), media_type=fmt.media_type)

    return Starlette(
        routes=[
            Route("/api/status", status),
            Route("/metrics", metrics),
            Route("/v1/models", models),
            Route("/v1/audio/voices", voices),
            Route("/v1/audio/speech", speech, methods=["POST"]),
            *(Route(path, page_file) for path in PAGE_FILES),
            Route("/api/renders/{voice}/{file}", partial(render_audio, root)),
            Route(
                "/api/upload/{folder}/{voice:path}",
                Uploads(root, settings).endpoint,
                methods=["POST"],
            ),
        ],
        middleware=[
            Middleware(
                BearerAuth, api_key=settings.serve.api_key, is_open=open_paths(settings.serve)
            )
        ],
        exception_handlers={
            HTTPException: http_error,
            Refused: refused,
            Exception: server_error,
        },
    )


class Fresh:
    """The last answer of `compute`, computed again once older than FRESH_FOR: clients that
    ask faster (a page open in many tabs, a scraper gone wild) share one answer instead of
    taking the daemon's CPU from its render, with the same GIL and cores."""

    def __init__(self, compute: Callable[[], bytes]) -> None:
        self.compute = compute
        self.lock = threading.Lock()  # one computes; those asking meanwhile wait for it
        self.answer: bytes | None = None
        self.at = 0.0

    def __call__(self) -> bytes:
        with self.lock:
            now = time.monotonic()
            if self.answer is None or now - self.at >= FRESH_FOR:
                self.answer, self.at = self.compute(), now
            return self.answer


def open_paths(serve: ServeSettings) -> Callable[[str], bool]:
    """What answers without serve.api_key: the page's own files (they hold no data), /metrics
    by serve.open_metrics, and the page's reads by serve.open_page. Uploads never."""
    exact = set(PAGE_FILES)
    if serve.open_metrics:
        exact.add("/metrics")
    if serve.open_page:
        exact.add("/api/status")
    prefixes = ("/api/renders/",) if serve.open_page else ()
    return lambda path: path in exact or path.startswith(prefixes)


def models(_: Request) -> Response:
    """OpenAI's model list, so clients that check the model name before speaking accept ours."""
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "voicedrop", "preset": preset}
        for name, (preset, _) in SPEECH_MODELS.items()
    ]
    return JSONResponse({"object": "list", "data": data})


class ClientGone(Exception):
    """The client hung up before its first sentence was ready."""


async def first_unless_gone(request: Request, stream: AsyncIterator[SpokenChunk]) -> SpokenChunk:
    """The first sentence; a client that hangs up while it renders stops the job at once
    (closing the stream removes its spool) instead of it rendering for nobody."""
    first = asyncio.ensure_future(anext(stream))
    try:
        while True:
            done, _ = await asyncio.wait({first}, timeout=DISCONNECT_POLL)
            if done:
                return first.result()
            if await request.is_disconnected():
                raise ClientGone
    finally:
        if not first.done():
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await first


async def bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes before more than that is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, too_large(int(declared), limit), "request_too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise Refused(413, too_large(len(body), limit), "request_too_large")
    return bytes(body)


def too_large(size: int, limit: int) -> str:
    return (
        f"the request has {size} bytes, more than the {limit} a speech request may have "
        "(serve.max_input_chars); drop long texts into outbox/<voice>/"
    )


def speech_request(body: bytes, client: str) -> tuple[SpeechRequest, ResponseFormat, float]:
    """OpenAI's request body, checked field by field with messages that name the field."""
    try:
        fields = json.loads(body)
    except ValueError:
        raise Refused(400, "the body must be JSON", "invalid_json") from None
    if not isinstance(fields, dict):
        raise Refused(400, "the body must be a JSON object", "invalid_json")
    model = fields.get("model")
    if model not in SPEECH_MODELS:
        raise Refused(
            400, f"model {model!r} is not one of {', '.join(SPEECH_MODELS)}", "model_not_found"
        )
    text, voice = fields.get("input"), fields.get("voice")
    if isinstance(voice, dict):  # newer clients may send {"id": "<voice>"}
        voice = voice.get("id")
    if not isinstance(text, str):
        raise Refused(400, "input must be the text to speak", "invalid_input")
    if not isinstance(voice, str):
        raise Refused(400, "voice must be a voice's name (GET /v1/audio/voices)", "invalid_voice")
    try:
        fmt = ResponseFormat(fields.get("response_format", "mp3"))
    except ValueError:
        formats = ", ".join(ResponseFormat)
        raise Refused(400, f"response_format must be one of {formats}", "invalid_format") from None
    speed = fields.get("speed", 1.0)
    valid_speed = isinstance(speed, int | float) and not isinstance(speed, bool)
    if not valid_speed or not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise Refused(400, f"speed must be {MIN_SPEED}-{MAX_SPEED}", "invalid_speed")
    if fields.get("stream_format", "audio") != "audio":
        raise Refused(400, "only stream_format 'audio' is offered", "invalid_stream_format")
    preset, decoder = SPEECH_MODELS[model]
    return SpeechRequest(voice, text, preset, decoder, client), fmt, float(speed)


def client_of(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def error_response(status: int, message: str, kind: str, code: str | None) -> JSONResponse:
    """OpenAI's error shape: its clients raise the matching exception with our message."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": code}}, status_code=status
    )


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Unknown paths and methods (the router's 404 and 405) in OpenAI's error shape."""
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}"
        return error_response(404, message, "invalid_request_error", "unknown_url")
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(405, message, "invalid_request_error", "method_not_allowed")
    return error_response(exc.status_code, exc.detail, "invalid_request_error", None)


async def refused(_: Request, exc: Refused) -> Response:
    """What an endpoint refuses (a bad name, a file too large, a voice it cannot speak with
    now), said as OpenAI says it."""
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    return error_response(exc.status, exc.message, kind, exc.code)


async def server_error(_: Request, exc: Exception) -> Response:
    """A bug or a fault of the machine: the client learns it is ours, and uvicorn puts the
    traceback into the daemon's log (server.py)."""
    message = f"voicedrop failed to answer ({type(exc).__name__}); its log has the details"
    return error_response(500, message, "server_error", None)


class BearerAuth:
    """With serve.api_key set, every request but those `is_open` lets through must carry
    `Authorization: Bearer <key>`, as OpenAI's clients send their api_key."""

    def __init__(self, app: ASGIApp, api_key: str | None, is_open: Callable[[str], bool]) -> None:
        self.app = app
        self.digest = None if api_key is None else key_digest(api_key)
        self.is_open = is_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.digest is None
            or self.is_open(scope["path"])
            or self.presented(Headers(scope=scope).get("authorization", ""))
        ):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "Missing or wrong API key: send serve.api_key as 'Authorization: Bearer <key>'",
            "invalid_request_error",
            "invalid_api_key",
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)

    def presented(self, header: str) -> bool:
        """Digests of equal length compared in constant time: neither the key nor its length
        can be guessed from how long a refusal takes."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        assert self.digest is not None
        return hmac.compare_digest(key_digest(token.strip()), self.digest)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
