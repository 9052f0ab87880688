"""`voicedrop run` serves after its start-up scan, stops serving on SIGTERM, and refuses a
port it cannot have or a host beyond loopback without a key."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
import soundfile as sf
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

from daemon.core.config import ConfigError, load_settings
from daemon.core.jobs import JobKind, JobState, Outcome
from daemon.core.ledger import Ledger
from tests.conftest import configure, run_until_idle, voicedrop, wait_for, write_wav
from tests.serve.conftest import free_port


def read_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def wyoming_voices(port: int) -> list[str]:
    async def describe() -> list[str]:
        async with AsyncTcpClient("127.0.0.1", port, connect_timeout=5, read_timeout=30) as client:
            await client.write_event(Describe().event())
            event = await client.read_event()
        assert event is not None
        return [voice.name for voice in Info.from_event(event).tts[0].voices]

    return asyncio.run(describe())


def test_the_daemon_serves_http_and_wyoming_until_sigterm(root, daemon):
    port, wyoming_port = free_port(), free_port()
    configure(root, {"serve": {"enabled": True, "port": port, "wyoming_port": wyoming_port}})
    url = f"http://127.0.0.1:{port}"
    daemon.start()
    assert f"serving on {url}" in daemon.output()
    assert f"Wyoming on tcp://127.0.0.1:{wyoming_port}" in daemon.output()
    assert read_json(f"{url}/api/status")["daemon"]["pid"] == daemon.process.pid
    write_wav(root / "inbox" / "eve" / "hello.wav", seconds=2.0)
    voices = wait_for(lambda: read_json(f"{url}/v1/audio/voices")["voices"], timeout=60)
    assert voices == [{"id": "eve", "name": "eve"}]
    assert wyoming_voices(wyoming_port) == ["eve"]
    assert daemon.stop() == 0
    assert "voicedrop stopped" in daemon.output()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/api/status", timeout=5)
    with pytest.raises(ConnectionRefusedError):
        wyoming_voices(wyoming_port)


def test_a_second_daemon_on_a_served_root_says_it_runs_not_that_the_port_is_taken(root, daemon):
    configure(root, {"serve": {"enabled": True, "port": free_port()}})
    daemon.start()
    second = voicedrop("run", "--root", str(root), check=False)
    assert second.returncode == 1
    assert f"already running on {root}" in second.stderr
    assert "serve.port" not in second.stderr


def test_a_port_in_use_is_one_line_naming_serve_port(root):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        configure(root, {"serve": {"enabled": True, "port": port}})
        result = voicedrop("run", "--root", str(root), check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"serve.port: 127.0.0.1:{port} is already in use" in result.stderr
    assert "voicedrop ready" not in result.stderr


def test_run_until_idle_does_not_serve(root):
    with socket.socket() as taken:  # it would fail to start if it tried to listen here
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        configure(root, {"serve": {"enabled": True, "port": taken.getsockname()[1]}})
        assert run_until_idle(root).returncode == 0


def test_a_host_beyond_loopback_needs_a_key(root: Path):
    configure(root, {"serve": {"enabled": True, "host": "0.0.0.0"}})
    result = voicedrop("run", "--root", str(root), check=False)
    assert result.returncode == 2
    assert "serve.host: 0.0.0.0 can be reached from other machines" in result.stderr
    assert "serve.api_key must be set" in result.stderr
    configure(root, {"serve": {"enabled": True, "host": "0.0.0.0", "api_key": "a-long-secret"}})
    assert load_settings(root / "config.yaml").serve.host == "0.0.0.0"
    for loopback in ("localhost", "127.0.0.2", "::1"):
        configure(root, {"serve": {"enabled": True, "host": loopback}})
        assert load_settings(root / "config.yaml").serve.api_key is None
    configure(root, {"serve": {"enabled": True, "host": "my-server.lan"}})
    with pytest.raises(ConfigError, match=r"serve\.api_key must be set"):
        load_settings(root / "config.yaml")


def test_kill_9_while_a_request_streams_then_the_daemon_restarts_clean(
    tts_root, daemon, tiny_models
):
    """The daemon serving speech to the real openai client is killed mid-stream: the client
    sees the stream end early, and the restarted daemon has no job stuck, no spool left, and
    speaks the next request."""
    port = free_port()
    tts = {"models_dir": str(tiny_models), "candidates": 2, "diffusion_iterations": 4}
    configure(tts_root, {"tts": tts, "serve": {"enabled": True, "port": port}})
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0)
    text = " ".join(f"This is sentence number {n}, spoken aloud." for n in range(30))
    daemon.start()
    streaming = client.audio.speech.with_streaming_response.create(
        model="ultra_fast", voice="tom", input=text, response_format="pcm"
    )
    with pytest.raises(Exception, match="incomplete chunked read"), streaming as response:
        for number, _ in enumerate(response.iter_bytes()):
            if number == 0:
                daemon.kill()
    daemon.start()
    jobs = ledger_jobs(tts_root, JobKind.SPEECH)
    wait_for(
        lambda: all(job.state is JobState.DONE for job in ledger_jobs(tts_root, JobKind.SPEECH))
    )
    [job] = ledger_jobs(tts_root, JobKind.SPEECH)
    assert job.data.outcome is Outcome.ABANDONED, jobs
    assert not list((tts_root / ".voicedrop" / "speech").glob("*"))
    audio = client.audio.speech.create(
        model="ultra_fast", voice="tom", input="Hello again.", response_format="wav"
    ).content
    assert sf.info(io.BytesIO(audio)).samplerate == 24000
    assert daemon.stop() == 0


def ledger_jobs(root: Path, kind: JobKind) -> list:
    ledger = Ledger(root / ".voicedrop" / "ledger.sqlite3")
    try:
        return ledger.jobs(kind=kind)
    finally:
        ledger.close()


def test_doctor_asks_the_endpoints_of_the_running_daemon(root, daemon, tmp_path):
    port, wyoming = free_port(), free_port()
    serving = {"enabled": True, "port": port, "wyoming_port": wyoming, "api_key": "k" * 20}
    configure(root, {"serve": serving})
    stopped = voicedrop("doctor", "--root", str(root), check=False).stdout
    assert f"warn  /api/status: nothing answers on http://127.0.0.1:{port}" in stopped
    assert f"warn  wyoming: nothing answers on tcp://127.0.0.1:{wyoming}" in stopped
    daemon.start()
    running = voicedrop("doctor", "--root", str(root), check=False).stdout
    for path in ("/api/status", "/v1/models", "/v1/audio/voices", "/metrics"):
        assert f"ok    {path}: http://127.0.0.1:{port}{path} answers" in running
    assert f"ok    wyoming: tcp://127.0.0.1:{wyoming} answers describe: 0 voices" in running
    other = tmp_path / "other"
    voicedrop("init", str(other))
    configure(other, {"serve": {"enabled": True, "port": port}})  # the same port, no key
    mistaken = voicedrop("doctor", "--root", str(other), check=False).stdout
    assert "fail  /api/status: " in mistaken
    assert "401" in mistaken  # our daemon wants its key: not this root's daemon
