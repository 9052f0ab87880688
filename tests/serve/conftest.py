"""A real server for one test root: uvicorn on a free 127.0.0.1 port, as the daemon runs it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from daemon.core.config import load_settings
from daemon.core.paths import Root
from daemon.core.worker import StageContext, Worker
from daemon.report.status import collect
from daemon.serve.app import build_app
from daemon.serve.server import HttpServer
from daemon.serve.speech import Speaker
from daemon.stages import build_stages
from tests.conftest import configure

API_KEY = "test-key-0123456789"


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; a test binds it right after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def serve(root: Path) -> Iterator[Callable[..., str]]:
    """serve(**settings) configures serve: for the root, starts the server the daemon would,
    and returns its base URL; the server is stopped after the test. With `worker=True` the
    daemon's worker runs beside it in this process (speech needs one), started after what
    the test put into the root was imported; `sections` are other settings (`{"tts": …}`)."""
    servers: list[HttpServer] = []
    workers: list[Worker] = []

    def start(worker: bool = False, sections: dict | None = None, **overrides: object) -> str:
        serving = {"enabled": True, "port": free_port(), **overrides}
        configure(root, {**(sections or {}), "serve": serving})
        settings = load_settings(root / "config.yaml")
        at = Root.at(root)
        server = HttpServer.bind(settings.serve, root / "config.yaml")
        servers.append(server)
        speaker = Speaker(at, settings, wake=lambda: None)  # alone: nothing runs speech jobs
        if worker:
            stages = build_stages(StageContext(at, settings))
            workers.append(Worker(at.ledger_file, settings, stages))
            workers[-1].start()
            speaker = Speaker(at, settings, wake=workers[-1].wake.set)
        server.start(build_app(at, settings, partial(collect, at), speaker))
        return server.url

    yield start
    for server in servers:
        server.stop()
    for running in workers:
        running.stop()
