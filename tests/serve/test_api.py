"""The HTTP API against a real server, with the clients users point at it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import openai
import pytest
from loguru import logger

from daemon.serve.app import FRESH_FOR
from daemon.tts.generation import PRESETS
from tests.conftest import run_until_idle, voicedrop, wait_for, write_wav
from tests.serve.conftest import API_KEY


def get(
    url: str, key: str | None = None, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers by lower-case name, body) of a request, errors included."""
    headers = dict(headers or {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, lower_case(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, lower_case(exc.headers), exc.read()


def lower_case(headers: Message) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def import_clip(root: Path, voice: str) -> None:
    """A clip dropped into inbox/<voice>/ and imported (its transcription waits: no Whisper)."""
    write_wav(root / "inbox" / voice / "hello.wav", seconds=2.0)
    run_until_idle(root)


def test_the_openai_client_lists_tts_1_tts_1_hd_and_the_presets(serve):
    client = openai.OpenAI(base_url=f"{serve(api_key=API_KEY)}/v1", api_key=API_KEY)
    assert [model.id for model in client.models.list()] == ["tts-1", "tts-1-hd", *PRESETS]


def test_without_the_key_every_endpoint_but_metrics_and_the_page_answers_401(serve):
    url = serve(api_key=API_KEY)
    wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="not-the-key")
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    for path in ("/v1/models", "/v1/audio/voices"):
        code, headers, body = get(f"{url}{path}")
        assert code == 401, path
        assert headers["www-authenticate"] == "Bearer"
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
        assert get(f"{url}{path}", key=API_KEY)[0] == 200
    assert get(f"{url}/metrics")[0] == 200
    assert get(f"{url}/api/status")[0] == 200  # serve.open_page (tests/serve/test_page.py)


def test_api_status_is_what_voicedrop_status_json_prints(root, serve):
    import_clip(root, "eve")
    code, headers, body = get(f"{serve()}/api/status")
    assert code == 200
    assert headers["content-type"] == "application/json"
    printed = json.loads(voicedrop("status", "--json", "--root", str(root)).stdout)
    assert json.loads(body) == printed
    assert printed["voices"]["eve"]["clips"] == 1


def test_voices_are_those_with_clips(root, serve):
    import_clip(root, "eve")
    (root / "outbox" / "bob").mkdir(parents=True)  # a voice folder, but nothing to speak from
    code, _, body = get(f"{serve()}/v1/audio/voices")
    assert code == 200
    assert json.loads(body) == {"voices": [{"id": "eve", "name": "eve"}]}


def test_unknown_paths_are_openai_shaped_404s_and_nothing_is_listed(serve):
    url = serve()
    for path in ("/voices/", "/v1/", "/v1/audio/", "/../config.yaml", "/api/renders/"):
        code, _, body = get(f"{url}{path}")
        assert code == 404, path
        error = json.loads(body)["error"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "unknown_url"
    for path, method in (("/api/status", "POST"), ("/v1/audio/speech", "GET")):
        code, _, body = get(f"{url}{path}", method=method)
        assert (code, json.loads(body)["error"]["code"]) == (405, "method_not_allowed"), path


def test_cors_is_off(serve):
    url = serve()
    code, headers, _ = get(f"{url}/api/status", headers={"Origin": "http://evil.example"})
    assert code == 200
    assert "access-control-allow-origin" not in headers
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
    code, headers, _ = get(f"{url}/api/status", method="OPTIONS", headers=preflight)
    assert code == 405
    assert "access-control-allow-origin" not in headers


def test_a_failure_is_an_openai_shaped_500_with_its_traceback_in_the_log(root, serve):
    url = serve()
    ledger = root / ".voicedrop" / "ledger.sqlite3"
    ledger.unlink(missing_ok=True)
    ledger.mkdir(parents=True)  # an I/O fault: the ledger cannot be opened
    logged: list[str] = []
    sink = logger.add(logged.append, level="ERROR")
    try:
        code, _, body = get(f"{url}/api/status")
        # uvicorn logs the exception once the response is sent
        wait_for(lambda: any("Traceback" in line and "OperationalError" in line for line in logged))
    finally:
        logger.remove(sink)
    assert code == 500
    error = json.loads(body)["error"]
    assert error["type"] == "server_error"
    assert "its log has the details" in error["message"]


def test_status_asked_many_times_a_second_is_computed_once_a_second(root, serve):
    """A client hammering /api/status (or /metrics) shares one answer a second, so it cannot
    take the CPU a render needs: what changed meanwhile shows at most FRESH_FOR later."""
    url = serve()

    def voices() -> list[str]:
        return list(json.loads(get(f"{url}/api/status")[2])["voices"])

    assert voices() == []
    (root / "inbox" / "eve").mkdir()
    assert voices() == []  # the answer of a moment ago
    time.sleep(FRESH_FOR + 0.1)
    assert voices() == ["eve"]
