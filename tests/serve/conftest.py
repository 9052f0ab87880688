"""A real server for one test root: uvicorn on a free 127.0.0.1 port, as the daemon runs it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from daemon.core.config import load_settings
from daemon.core.paths import Root
from daemon.report.status import collect
from daemon.serve.app import build_app
from daemon.serve.server import HttpServer
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
    and returns its base URL; the server is stopped after the test."""
    servers: list[HttpServer] = []

    def start(**overrides: object) -> str:
        configure(root, {"serve": {"enabled": True, "port": free_port(), **overrides}})
        settings = load_settings(root / "config.yaml")
        server = HttpServer.bind(settings.serve, root / "config.yaml")
        servers.append(server)
        server.start(build_app(Root.at(root), settings, partial(collect, Root.at(root))))
        return server.url

    yield start
    for server in servers:
        server.stop()
