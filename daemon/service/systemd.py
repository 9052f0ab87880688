"""The few lines of sd_notify a Type=notify unit needs: READY, WATCHDOG, STOPPING, STATUS."""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Does nothing when not started by systemd (no NOTIFY_SOCKET)."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() else None
        self.last_ping = 0.0

    def send(self, message: str) -> None:
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(self.address)
            sock.sendall(message.encode())

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def ping_if_due(self) -> float | None:
        """Send WATCHDOG=1 at half the unit's WatchdogSec; returns seconds until the next."""
        if self.watchdog_interval is None:
            return None
        now = time.monotonic()
        if now - self.last_ping >= self.watchdog_interval:
            self.send("WATCHDOG=1")
            self.last_ping = now
        return self.last_ping + self.watchdog_interval - now
