"""uvicorn in a thread of the daemon: bound first, served after the start-up scan.

The port is bound before anything else starts, so a port already in use stops the start-up
with one line naming serve.port instead of a traceback after the worker has begun. uvicorn
runs on its own event loop in a daemon thread (it installs no signal handlers outside the
main thread), and the daemon's SIGTERM handling stops it before the worker.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn
from loguru import logger
from starlette.types import ASGIApp

from daemon.core.config import ConfigError, ServeSettings

STARTED_WITHIN = 30.0  # seconds uvicorn may take to begin accepting connections
GRACE = 5.0  # seconds open requests get to finish when the daemon stops


class HttpServer:
    """One listening socket and the uvicorn that serves it."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.url = url_of(listener)
        self.uvicorn: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @classmethod
    def bind(cls, serve: ServeSettings, config_file: Path) -> HttpServer:
        """ConfigError (one line, naming serve.port or serve.host) when it cannot listen."""
        return cls(bind_listener(serve.host, serve.port, "serve.port", config_file))

    def start(self, app: ASGIApp) -> None:
        """Returns once uvicorn accepts connections; RuntimeError if it never does."""
        log_to_loguru()
        config = uvicorn.Config(
            app,
            log_config=None,  # uvicorn's own logging setup would replace the daemon's
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=GRACE,
        )
        self.uvicorn = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.uvicorn.run, kwargs={"sockets": [self.listener]}, name="serve", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + STARTED_WITHIN
        while not self.uvicorn.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the HTTP server on {self.url} did not start")
            time.sleep(0.01)
        logger.info("serving on {}", self.url)

    def stop(self) -> None:
        """Stop accepting, give open requests GRACE seconds, close; a no-op once stopped."""
        if self.uvicorn is not None and self.thread is not None:
            self.uvicorn.should_exit = True
            self.thread.join(timeout=GRACE + 5)
            self.uvicorn = self.thread = None
        self.listener.close()


class ToLoguru(logging.Handler):
    """uvicorn logs with the standard library: its warnings and errors (the traceback of a
    request that failed) go to the daemon's log with everything else."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname if record.levelname in LOGURU_LEVELS else record.levelno
        logger.opt(exception=record.exc_info).log(level, "{}", record.getMessage())


LOGURU_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_to_loguru() -> None:
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.handlers = [ToLoguru(level=logging.WARNING)]
    uvicorn_log.propagate = False


def url_of(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def bind_listener(host: str, port: int, setting: str, config_file: Path) -> socket.socket:
    """A socket bound to host:port; ConfigError (one line, naming `setting` or serve.host)
    when it cannot listen, so a port in use stops the start-up before any work."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"{config_file}: serve.host: cannot listen on {host} ({exc.strerror})"
        ) from None
    # IPv4 first: "localhost" then answers at 127.0.0.1, where clients look first
    family, kind, proto, _, address = min(found, key=lambda info: info[0] != socket.AF_INET)
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        raise ConfigError(bind_problem(config_file, f"{host}:{port}", setting, exc)) from None
    return listener


def bind_problem(config_file: Path, where: str, setting: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{config_file}: {setting}: {where} is already in use (another voicedrop or "
            f"another program); choose another {setting}, or {off_switch(setting)}"
        )
    if exc.errno == errno.EACCES:
        return f"{config_file}: {setting}: {where} needs privileges; choose a port above 1023"
    return f"{config_file}: serve.host: cannot listen on {where} ({exc.strerror})"


def off_switch(setting: str) -> str:
    """The setting that turns off what listens on `setting`'s port."""
    return "serve.enabled: false" if setting == "serve.port" else f"{setting}: null"
