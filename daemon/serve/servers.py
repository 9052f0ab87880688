"""What `voicedrop run` serves: the HTTP server and, unless serve.wyoming_port is null, the
Wyoming server, both bound before the start-up work (a port in use stops the start at once),
started after the start-up scan, and stopped before the worker."""

from __future__ import annotations

from pathlib import Path

from daemon.core.config import Settings
from daemon.serve.app import ReadStatus, build_app
from daemon.serve.server import HttpServer
from daemon.serve.speech import Speaker
from daemon.serve.wyoming import WyomingServer


class Servers:
    def __init__(self, http: HttpServer, wyoming: WyomingServer | None) -> None:
        self.http = http
        self.wyoming = wyoming

    @classmethod
    def bind(cls, settings: Settings, config_file: Path) -> Servers:
        """ConfigError naming the setting of a port that cannot be had."""
        http = HttpServer.bind(settings.serve, config_file)
        if settings.serve.wyoming_port is None:
            return cls(http, None)
        try:
            return cls(http, WyomingServer.bind(settings.serve, config_file))
        except BaseException:
            http.stop()
            raise

    def start(self, settings: Settings, read_status: ReadStatus, speaker: Speaker) -> None:
        self.http.start(build_app(speaker.root, settings, read_status, speaker))
        if self.wyoming is not None:
            self.wyoming.start(speaker, settings)

    def stop(self) -> None:
        """Idempotent: the daemon calls it on the way out whether or not it started."""
        self.http.stop()
        if self.wyoming is not None:
            self.wyoming.stop()
