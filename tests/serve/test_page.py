"""The status page's endpoints against a real server: the page, what it polls, the renders it
plays, the drop zone's uploads and who may use them."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from daemon.core.atomic import TEMP_PREFIX
from daemon.core.jobs import JobKind
from daemon.core.ledger import Ledger
from daemon.serve import uploads
from daemon.serve.page import MEDIA_TYPES
from daemon.tts.outputs import AUDIO_SUFFIXES
from tests.conftest import run_until_idle, status, write_wav
from tests.serve.conftest import API_KEY
from tests.serve.test_api import get

WAV = "audio/wav"
OCTETS = {"Content-Type": "application/octet-stream"}


def request(
    url: str,
    path: str,
    method: str = "GET",
    body: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A request with `path` sent exactly as written (urllib would tidy `..` and `%2F`)."""
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        connection.request(
            method, path, body=body, headers=headers or {}, encode_chunked=body is not None
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def upload(
    url: str, folder: str, voice: str, name: str, body: bytes, key: str | None = None
) -> tuple[int, dict]:
    headers = {**OCTETS, "Content-Length": str(len(body))}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    path = f"/api/upload/{folder}/{quote(voice, safe='')}?name={quote(name, safe='')}"
    code, _, answer = request(url, path, "POST", body, headers)
    return code, json.loads(answer)


def files_below(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def rendered(root: Path, voice: str = "eve", name: str = "story") -> Path:
    """What the render stage leaves in outbox/<voice>/ (a stand-in for a render: the real
    one needs TorToiSe's weights; test_browser.py renders with tiny random ones): the text,
    its audio and the sidecar naming the audio, with the render check's record."""
    outbox = root / "outbox" / voice
    (outbox / f"{name}.txt").parent.mkdir(parents=True, exist_ok=True)
    (outbox / f"{name}.txt").write_text("Hello there.", encoding="utf-8")
    audio = write_wav(outbox / f"{name}.wav", seconds=1.0)
    attempt = {"seed": 1, "heard": "hello there", "cer": 0.12, "similarity": 0.87}
    check = {
        "limits": {"max_cer": 0.3, "min_similarity": 0.75, "retries": 2},
        "passed": True,
        "failed_chunks": [],
        "chunks": [{"index": 0, "text": "Hello there.", "attempts": [attempt], "kept": 0}],
    }
    sidecar = {"output": audio.name, "audio_seconds": 1.0, "check": check}
    (outbox / f"{name}.json").write_text(json.dumps(sidecar), encoding="utf-8")
    return audio


def test_the_page_is_one_html_file_and_its_script_with_nothing_inline(serve):
    url = serve()
    code, headers, body = get(f"{url}/")
    assert code == 200
    assert headers["content-type"].startswith("text/html")
    page = body.decode()
    assert '<script src="page.js" defer></script>' in page
    assert page.count("<script") == 1  # no inline script, so the policy can forbid it
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "http" not in page.replace("http-equiv", "")  # no CDN: it works offline
    code, headers, script = get(f"{url}/page.js")
    assert code == 200
    assert headers["content-type"].startswith("text/javascript")
    assert b"api/status" in script
    assert b"innerHTML" not in script  # server texts go in as text, never as markup


def test_the_status_lists_the_queue_latest_renders_losses_models_and_disk(root, serve):
    ledger = Ledger(root / ".voicedrop" / "ledger.sqlite3")
    ledger.enqueue(JobKind.IMPORT, "eve", root / "inbox" / "eve" / "hello.wav", "0" * 64)
    ledger.close()
    for number in range(7):
        rendered(root, name=f"story{number}")
        time.sleep(0.01)  # distinct times: the newest first
    run = root / "voices" / "eve" / "training" / "run1"
    run.mkdir(parents=True)
    records = [{"step": s, "loss_total": 5 - s / 1000, "loss_mel": 1.0} for s in range(1, 1002)]
    for record in records[49::50]:
        record["val_loss_total"] = 4.2  # measured every 50 steps
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, body = get(f"{serve()}/api/status")
    assert code == 200
    report = json.loads(body)
    assert [(j["kind"], j["voice"], j["file"], j["state"]) for j in report["queue"]] == [
        ("import", "eve", "hello.wav", "pending")
    ]
    eve = report["voices"]["eve"]
    assert [r["file"] for r in eve["renders"]] == [f"story{n}.wav" for n in (6, 5, 4, 3, 2)]
    assert eve["renders"][0]["text"] == "story6.txt"
    assert eve["renders"][0]["check"] == {
        "passed": True,
        "failed_chunks": [],
        "max_cer": 0.12,
        "min_similarity": 0.87,
    }
    history = eve["training"]["loss_history"]
    assert len(history) <= 2 * 200 + 1
    assert history[0] == {"step": 1, "loss_total": 4.999}
    assert history[-1] == {"step": 1001, "loss_total": 5 - 1001 / 1000}  # the latest step
    assert [p["step"] for p in history if "val_loss_total" in p] == list(range(50, 1001, 50))
    assert report["models"]["tts"]["missing"]  # tests find no TorToiSe weights
    assert report["disk"]["free_gb"] > 0
    assert report == status(root)  # the CLI's `status --json` and the page read one report


def test_with_open_page_and_open_metrics_off_the_reads_need_the_key(root, serve):
    rendered(root)
    url = serve(api_key=API_KEY, open_page=False, open_metrics=False)
    for path in ("/api/status", "/metrics", "/api/renders/eve/story.wav"):
        code, _, body = get(f"{url}{path}")
        assert code == 401, path
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
        assert get(f"{url}{path}", key=API_KEY)[0] == 200, path
    # The page itself holds no data: a browser gets it and asks for the key
    assert get(f"{url}/")[0] == get(f"{url}/page.js")[0] == 200


def test_by_default_the_page_reads_and_metrics_are_open_but_uploads_need_the_key(root, serve):
    rendered(root)
    url = serve(api_key=API_KEY)
    for path in ("/", "/page.js", "/api/status", "/metrics", "/api/renders/eve/story.wav"):
        assert get(f"{url}{path}")[0] == 200, path
    code, answer = upload(url, "inbox", "eve", "hello.wav", b"RIFF")
    assert code == 401
    assert answer["error"]["code"] == "invalid_api_key"
    assert not (root / "inbox" / "eve").exists()
    assert upload(url, "inbox", "eve", "hello.wav", b"RIFF", key=API_KEY)[0] == 202


def test_an_uploaded_clip_lands_like_a_dropped_one_and_is_imported(root, serve):
    url = serve()
    clip = write_wav(root.parent / "elsewhere" / "hello.wav", seconds=2.0).read_bytes()
    landed = {"folder": "inbox", "voice": "eve", "file": "hello.wav", "bytes": len(clip)}
    assert upload(url, "inbox", "eve", "hello.wav", clip) == (
        202,
        {**landed, "path": "inbox/eve/hello.wav"},
    )
    assert upload(url, "inbox", "eve", "hello.wav", clip)[1]["file"] == "hello-2.wav"  # kept
    assert (root / "inbox" / "eve" / "hello.wav").read_bytes() == clip
    run_until_idle(root)
    report = status(root)
    assert report["voices"]["eve"]["clips"] == 1
    [duplicate] = report["voices"]["eve"]["rejected"]  # Intake's own check, as for a drop
    assert "already imported" in duplicate["reason"]


def test_an_uploaded_text_never_shares_its_outputs_with_another(root, serve):
    url = serve()
    assert upload(url, "outbox", "eve", "Story.md", b"Hi.")[1]["file"] == "Story.md"
    assert upload(url, "outbox", "eve", "story.txt", b"Hi.")[1]["file"] == "story-2.txt"
    assert files_below(root / "outbox" / "eve") == ["Story.md", "story-2.txt"]


def test_an_upload_appears_whole_or_not_at_all(root, serve):
    """While the body arrives only a hidden temp file exists (the watcher ignores it)."""
    url = serve()
    clip = write_wav(root.parent / "elsewhere" / "hello.wav", seconds=2.0).read_bytes()
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    connection.putrequest("POST", "/api/upload/inbox/eve?name=hello.wav")
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", str(len(clip)))
    connection.endheaders()
    connection.send(clip[:1000])
    folder = root / "inbox" / "eve"
    time.sleep(0.5)
    names = [p.name for p in folder.iterdir()]
    assert len(names) == 1
    assert names[0].startswith(TEMP_PREFIX)
    connection.send(clip[1000:])
    assert connection.getresponse().status == 202
    connection.close()
    assert [p.name for p in folder.iterdir()] == ["hello.wav"]
    assert (folder / "hello.wav").read_bytes() == clip


def stalled_upload(url: str, name: str) -> http.client.HTTPConnection:
    """An upload that sends its headers and a first piece, then nothing."""
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    connection.putrequest("POST", f"/api/upload/inbox/eve?name={name}")
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", "1000")
    connection.endheaders()
    connection.send(b"RIFF")
    return connection


def test_a_stalled_upload_is_given_up_and_leaves_nothing(root, serve, monkeypatch):
    monkeypatch.setattr(uploads, "IDLE_TIMEOUT", 0.5)
    connection = stalled_upload(serve(), "slow.wav")
    response = connection.getresponse()
    assert response.status == 408
    assert "nothing arrived for" in json.loads(response.read())["error"]["message"]
    connection.close()
    assert files_below(root / "inbox") == []


def test_stalled_uploads_do_not_stop_the_page_from_answering(serve):
    url = serve()
    stalled = [stalled_upload(url, f"slow{n}.wav") for n in range(uploads.AT_ONCE + 45)]
    try:
        started = time.monotonic()
        assert get(f"{url}/api/status")[0] == 200
        assert time.monotonic() - started < 10
    finally:
        for connection in stalled:
            connection.close()


def test_an_upload_past_max_upload_mb_is_refused_without_being_read(root, serve):
    url = serve(max_upload_mb=1)
    # Announced as 10 GB: refused before a byte of it is sent
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    connection.putrequest("POST", "/api/upload/inbox/eve?name=huge.wav")
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", str(10**10))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert "serve.max_upload_mb (1 MiB)" in json.loads(response.read())["error"]["message"]
    connection.close()
    # Sent in chunks with no length: counted as it arrives, refused past the limit
    sent = []

    def chunks() -> Iterator[bytes]:
        for _ in range(17):
            sent.append(65536)
            yield b"\0" * 65536

    path = "/api/upload/inbox/eve?name=big.wav"
    code, _, body = request(url, path, "POST", chunks(), OCTETS)
    assert code == 413
    assert json.loads(body)["error"]["code"] == "file_too_large"
    assert sum(sent) > 1 << 20
    assert files_below(root / "inbox") == []  # neither the file nor its temp file


@pytest.mark.parametrize(
    ("path", "complaint"),
    [
        ("/api/upload/inbox/../x?name=a.wav", "contains a path separator"),
        ("/api/upload/inbox/%2E%2E?name=a.wav", "is empty or a relative path"),
        ("/api/upload/inbox/a%2Fb?name=a.wav", "contains a path separator"),
        ("/api/upload/inbox/.hidden?name=a.wav", "starts with a dot"),
        ("/api/upload/inbox/eve?name=..%2Fa.wav", "is a path; send a file name only"),
        ("/api/upload/inbox/eve?name=.a.wav", "a name voicedrop ignores"),
        ("/api/upload/inbox/eve?name=a.wav.part", "a name voicedrop ignores"),
        ("/api/upload/inbox/eve?name=a.wav.reason.txt", "a name voicedrop ignores"),
        ("/api/upload/inbox/eve", "name the file"),
        ("/api/upload/inbox/eve?name=notes.txt", ".txt is not an audio file type"),
        ("/api/upload/outbox/eve?name=a.wav", "a.wav is not a text voicedrop renders"),
        ("/api/upload/voices/eve?name=a.wav", "upload into inbox/ (clips) or outbox/ (texts)"),
    ],
)
def test_an_upload_that_would_escape_hide_or_be_refused_anyway_is_refused(
    root, serve, path, complaint
):
    code, _, body = request(serve(), path, "POST", b"RIFF....", OCTETS)
    assert code in (400, 404, 415)
    assert complaint in json.loads(body)["error"]["message"]
    assert files_below(root / "inbox") == files_below(root / "outbox") == []
    assert not (root / "x").exists()
    assert not (root.parent / "x").exists()


def test_an_upload_a_web_form_could_send_or_an_empty_one_is_refused(root, serve):
    url = serve()
    path = "/api/upload/inbox/eve?name=a.wav"
    for form in ("text/plain", "multipart/form-data; boundary=x", ""):
        code, _, body = request(url, path, "POST", b"RIFF", {"Content-Type": form})
        assert code == 415, form
        assert "Content-Type: application/octet-stream" in json.loads(body)["error"]["message"]
    code, _, body = request(url, path, "POST", b"", {**OCTETS, "Content-Length": "0"})
    assert (code, json.loads(body)["error"]["code"]) == (400, "empty_file")
    assert files_below(root / "inbox") == []


def test_a_voice_folder_linked_outside_the_root_takes_no_upload(root, tmp_path, serve):
    (tmp_path / "outside").mkdir()
    (root / "inbox" / "eve").symlink_to(tmp_path / "outside")
    code, answer = upload(serve(), "inbox", "eve", "a.wav", b"RIFF")
    assert code == 400
    assert "outside the root" in answer["error"]["message"]
    assert list((tmp_path / "outside").iterdir()) == []


def test_every_render_format_is_served_as_audio():
    assert set(MEDIA_TYPES) == set(AUDIO_SUFFIXES)
    assert all(media_type.startswith("audio/") for media_type in MEDIA_TYPES.values())


def test_a_render_is_served_with_ranges_and_nothing_else_in_the_outbox_is(root, tmp_path, serve):
    audio = rendered(root)
    url = serve()
    code, headers, body = get(f"{url}/api/renders/eve/story.wav")
    assert (code, headers["content-type"], body) == (200, WAV, audio.read_bytes())
    code, headers, body = get(f"{url}/api/renders/eve/story.wav", headers={"Range": "bytes=4-11"})
    assert (code, body) == (206, audio.read_bytes()[4:12])
    write_wav(root / "outbox" / "eve" / "other.wav")  # no sidecar names it
    (root / "outbox" / "eve" / "linked.wav").symlink_to(audio)
    (root / "outbox" / "eve" / "linked.json").write_text('{"output": "linked.wav"}')
    for name in ("story.txt", "story.json", "other.wav", "linked.wav", ".story.wav", "x.wav"):
        code, _, body = get(f"{url}/api/renders/eve/{name}")
        assert code == 404, name
        assert json.loads(body)["error"]["code"] == "not_found"
    for path in ("/api/renders/eve/", "/api/renders/eve/..%2F..%2Fconfig.yaml", "/api/renders/"):
        code, _, body = request(url, path)
        assert code == 404, path
    code, _, body = request(url, "/api/renders/.eve/story.wav")
    assert code == 400
