"""The HTTP API: an ASGI app (Starlette) that reads what `status` reads, never the worker.

Every answer comes from the ledger and the folders, as `voicedrop status` does, so a slow or
busy worker never slows a request and a request never changes a job. Endpoint functions are
plain functions: Starlette runs them in its thread pool, where the blocking SQLite and
folder reads belong.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon.book.cache import GIB, ChunkCache
from daemon.core.config import ServeSettings, Settings
from daemon.core.ledger import Ledger, LedgerDamaged
from daemon.core.paths import Root, VoiceNameError, check_voice_name
from daemon.serve.page import PAGE_FILES, page_file, render_audio
from daemon.serve.refusal import Refused
from daemon.serve.uploads import Uploads
from daemon.tts.generation import PRESETS
from daemon.tts.latents import voice_clips

# What the speech endpoint will render each OpenAI model name with; the presets are models
# of their own. Listed by /v1/models with the preset, so a user sees what "tts-1" means.
SPEECH_MODELS = {"tts-1": "ultra_fast", "tts-1-hd": "standard", **{p: p for p in PRESETS}}

ReadStatus = Callable[[], dict[str, Any]]


def build_app(root: Root, settings: Settings, read_status: ReadStatus) -> Starlette:
    """The app for one root; `read_status` is `collect()` for that root (the daemon passes it,
    so /api/status and `voicedrop status --json` are one code path)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(root, settings))

    def status(_: Request) -> Response:
        try:
            return JSONResponse(read_status())
        except LedgerDamaged as exc:
            return error_response(503, str(exc), "server_error", "ledger_damaged")

    def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def voices(_: Request) -> Response:
        return JSONResponse({"voices": [{"id": name, "name": name} for name in speaking(root)]})

    return Starlette(
        routes=[
            Route("/api/status", status),
            Route("/metrics", metrics),
            Route("/v1/models", models),
            Route("/v1/audio/voices", voices),
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
        for name, preset in SPEECH_MODELS.items()
    ]
    return JSONResponse({"object": "list", "data": data})


def speaking(root: Root) -> list[str]:
    """Voices a render can speak with: those with clips (held-back clips do not count)."""
    if not root.voices.is_dir():
        return []
    names = []
    for folder in sorted(root.voices.iterdir()):
        try:
            check_voice_name(folder.name)
        except VoiceNameError:
            continue
        if folder.is_dir() and voice_clips(root.voice(folder.name)):
            names.append(folder.name)
    return names


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
    """What the page's endpoints refuse (a bad name, a file too large), said as they say it."""
    return error_response(exc.status, exc.message, "invalid_request_error", exc.code)


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


class LedgerCollector(Collector):
    """Read at every scrape from the ledger and the folders, like `status`: what Prometheus
    stores is what was true when it asked."""

    def __init__(self, root: Root, settings: Settings) -> None:
        self.root = root
        self.cache_budget = settings.render.cache_max_gb * GIB

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ledger = Ledger(self.root.ledger_file)  # one connection per thread, per scrape
        try:
            counts = ledger.counts_by_kind()
            oldest = ledger.oldest_pending()
        finally:
            ledger.close()
        jobs = GaugeMetricFamily(
            "voicedrop_jobs", "Jobs in the ledger by kind and state", labels=["kind", "state"]
        )
        for (kind, state), count in counts.items():
            jobs.add_metric([kind.value, state.value], count)
        yield jobs
        yield GaugeMetricFamily(
            "voicedrop_oldest_pending_job_age_seconds",
            "How long the longest-queued pending job has waited (0: none pending)",
            value=0.0 if oldest is None else max(0.0, time.time() - oldest),
        )
        use = ChunkCache(self.root.chunk_cache).use()
        yield GaugeMetricFamily(
            "voicedrop_chunk_cache_bytes", "Size of the rendered-chunk cache", value=use.bytes
        )
        yield GaugeMetricFamily(
            "voicedrop_chunk_cache_chunks", "Chunks in the rendered-chunk cache", value=use.chunks
        )
        yield GaugeMetricFamily(
            "voicedrop_chunk_cache_budget_bytes",
            "render.cache_max_gb: beyond it the least recently used chunks go",
            value=self.cache_budget,
        )
        yield GaugeMetricFamily(
            "voicedrop_disk_free_bytes",
            "Free space on the root's disk",
            value=shutil.disk_usage(self.root.path).free,
        )
