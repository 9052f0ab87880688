"""A real server for one test root: uvicorn on a free 127.0.0.1 port, as the daemon runs it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from daemon.core.config import Settings, load_settings
from daemon.core.jobs import JobKind
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.core.worker import StageContext, Worker
from daemon.report.status import collect
from daemon.serve.app import build_app
from daemon.serve.server import HttpServer
from daemon.serve.speech import Speaker
from daemon.serve.wyoming import WyomingServer
from daemon.stages import build_stages
from tests.conftest import configure

API_KEY = "test-key-0123456789"


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; a test binds it right after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def speech_jobs(root: Path) -> list:
    """The speech jobs in the root's ledger."""
    ledger = Ledger(root / ".voicedrop" / "ledger.sqlite3")
    try:
        return ledger.jobs(kind=JobKind.SPEECH)
    finally:
        ledger.close()


@pytest.fixture
def serve(root: Path) -> Iterator[Callable[..., str]]:
    """serve(**settings) configures serve: for the root, starts the server the daemon would,
    and returns its base URL; the server is stopped after the test. With `worker=True` the
    daemon's worker runs beside it in this process (speech needs one), started after what
    the test put into the root was imported; `sections` are other settings (`{"tts": …}`)."""
    servers: list[HttpServer] = []
    with workers() as start_worker:

        def start(worker: bool = False, sections: dict | None = None, **overrides: object) -> str:
            settings = serve_settings(root, sections, {"port": free_port(), **overrides})
            server = HttpServer.bind(settings.serve, root / "config.yaml")
            servers.append(server)
            at = Root.at(root)
            wake = start_worker(at, settings) if worker else lambda: None
            speaker = Speaker(at, settings, wake)  # no worker: nothing runs speech jobs
            server.start(build_app(at, settings, partial(collect, at), speaker))
            return server.url

        yield start
        for server in servers:
            server.stop()


@pytest.fixture
def wyoming(root: Path) -> Iterator[Callable[..., tuple[str, int]]]:
    """wyoming(**settings): the Wyoming server the daemon would run for the root, with the
    daemon's worker beside it; returns its (host, port). Stopped after the test."""
    servers: list[WyomingServer] = []
    with workers() as start_worker:

        def start(sections: dict | None = None, **overrides: object) -> tuple[str, int]:
            port = free_port()
            settings = serve_settings(root, sections, {"wyoming_port": port, **overrides})
            server = WyomingServer.bind(settings.serve, root / "config.yaml")
            servers.append(server)
            at = Root.at(root)
            server.start(Speaker(at, settings, start_worker(at, settings)), settings)
            return "127.0.0.1", port

        yield start
        for server in servers:
            server.stop()


def serve_settings(root: Path, sections: dict | None, serving: dict) -> Settings:
    configure(root, {**(sections or {}), "serve": {"enabled": True, **serving}})
    return load_settings(root / "config.yaml")


@contextlib.contextmanager
def workers() -> Iterator[Callable[[Root, Settings], Callable[[], None]]]:
    """start(root, settings) runs the daemon's worker in this process and returns its wake;
    every worker started is stopped on the way out (after the servers that feed it)."""
    started: list[Worker] = []

    def start(at: Root, settings: Settings) -> Callable[[], None]:
        started.append(Worker(at.ledger_file, settings, build_stages(StageContext(at, settings))))
        started[-1].start()
        return started[-1].wake.set

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
