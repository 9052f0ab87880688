"""The sd_notify protocol, heard on a real socket the way systemd listens, and the unit file."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, DaemonProcess, write_wav

UNIT_FILE = REPO / "contrib" / "voicedrop.service"
WATCHDOG_USEC = 400_000


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket like systemd's, and the NOTIFY_SOCKET value naming it: a file path,
    or an abstract name written with a leading "@"."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    else:
        name = f"voicedrop-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        address = "@" + name
    yield sock, address
    sock.close()


def receive(sock: socket.socket, timeout: float) -> str | None:
    """The next datagram, or None when none arrives within `timeout` seconds."""
    sock.settimeout(max(timeout, 0.001))
    try:
        return sock.recv(4096).decode()
    except TimeoutError:
        return None


def receive_for(sock: socket.socket, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    messages = []
    while (remaining := deadline - time.monotonic()) > 0:
        message = receive(sock, remaining)
        if message is not None:
            messages.append(message)
    return messages


def test_daemon_notifies_ready_watchdog_and_stopping(
    root: Path, daemon: DaemonProcess, notify_socket: tuple[socket.socket, str]
):
    sock, address = notify_socket
    write_wav(root / "inbox" / "alice" / "waiting.wav", seconds=2.0)
    daemon.start(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})

    ready = receive(sock, timeout=30)
    assert ready is not None, daemon.output()
    assert ready.splitlines()[0] == "READY=1"
    assert "STATUS=watching " in ready
    # READY=1 is sent only once the start-up scan has looked at the inbox.
    assert re.search(r"voicedrop ready on .*: 1 files? to look at", daemon.output())

    pings = receive_for(sock, 1.5)
    assert pings.count("WATCHDOG=1") >= 3, pings
    assert set(pings) == {"WATCHDOG=1"}

    assert daemon.stop() == 0
    remaining = []
    while (message := receive(sock, timeout=1)) is not None:
        remaining.append(message)
    assert "STOPPING=1" in remaining, remaining
    assert remaining[-1] == "STOPPING=1"
    assert set(remaining) <= {"WATCHDOG=1", "STOPPING=1"}


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(UNIT_FILE, encoding="utf-8")
    return unit


def test_unit_file_is_a_notify_service_with_a_watchdog():
    unit = read_unit()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["ExecStart"].split()[1:3] == ["run", "--root"]
    assert service["WorkingDirectory"] == service["ExecStart"].split()[-1]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # systemd has no end-of-line comments: a "#" after a value would become part of it.
    for section in unit.sections():
        for key, value in unit[section].items():
            assert "#" not in value, f"{section}.{key} = {value!r}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path):
    """systemd's own parser, with the example paths pointed at this checkout's venv."""
    voicedrop = Path(sys.executable).with_name("voicedrop")
    text = UNIT_FILE.read_text(encoding="utf-8")
    text = text.replace("/opt/voicedrop/.venv/bin/voicedrop", str(voicedrop))
    text = text.replace("/srv/voicedrop", str(tmp_path))
    unit = tmp_path / "voicedrop.service"
    unit.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in result.stderr.splitlines() if "voicedrop" in line]
    assert result.returncode == 0 and not complaints, result.stderr
