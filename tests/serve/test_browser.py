"""The status page in a real headless browser (Debian's Chromium, driven by Playwright)
against a real `voicedrop run` serving it, with TorToiSe's model classes at tiny dims."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import configure, run_until_idle, tortoise_clips
from tests.serve.conftest import API_KEY, free_port

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (`make setup`), never a downloaded build
FAST = "---\ncandidates: 2\ndiffusion_iterations: 4\n---\n"
WAIT_MS = 60_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Chromium is not installed: `make setup` (or apt-get install chromium) adds it",
    ),
]


@pytest.fixture
def served(root: Path, tiny_models: Path, daemon, request: pytest.FixtureRequest) -> str:
    """Voice `tom` with two clips and a rendered text, and the daemon serving it (with the
    serve settings a test passes as the fixture's param); the clips' transcriptions wait
    (tests have no Whisper model), so they stay in the queue."""
    port = free_port()
    configure(root, {"tts": {"models_dir": str(tiny_models)}})
    (root / "inbox" / "tom").mkdir()
    for clip in tortoise_clips("tom")[:2]:
        shutil.copy(clip, root / "inbox" / "tom" / clip.name)
    (root / "outbox" / "tom").mkdir()
    (root / "outbox" / "tom" / "hello.txt").write_text(FAST + "Hello there.", encoding="utf-8")
    run_until_idle(root)
    assert (root / "outbox" / "tom" / "hello.wav").exists()
    serve = {"enabled": True, "port": port, **getattr(request, "param", {})}
    configure(root, {"tts": {"models_dir": str(tiny_models)}, "serve": serve})
    daemon.start()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def page(served: str) -> Page:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(served)
        yield page
        browser.close()
        assert errors == []  # the script never threw


def test_the_page_shows_the_voice_and_its_waiting_jobs(page: Page):
    voice = page.locator('.voice[data-voice="tom"]')
    expect(voice).to_contain_text("2 clips")
    expect(voice).to_contain_text("dataset: 0 train / 0 validation lines")
    expect(voice).to_contain_text("next window")
    job = page.locator('#queue li[data-file="1.wav"]')
    expect(job).to_contain_text("waiting")
    expect(job).to_contain_text("transcribe tom/1.wav")
    expect(job).to_contain_text("Whisper model")  # the reason it waits
    expect(page.locator("#counts")).to_contain_text("2 waiting")
    expect(page.locator("#models")).to_contain_text("TorToiSe")
    expect(page.locator("#disk")).to_contain_text("GiB free")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll


def test_a_render_plays_in_the_page(page: Page):
    render = page.locator(".voice .render").first
    expect(render).to_contain_text("hello.wav (hello.txt")
    expect(render).to_contain_text("render check off")
    audio = render.locator("audio")
    audio.evaluate("audio => audio.play()")
    page.wait_for_function(
        "() => document.querySelector('.render audio').currentTime > 0.2", timeout=WAIT_MS
    )
    assert audio.evaluate("audio => audio.error") is None
    assert audio.evaluate("audio => audio.duration") == pytest.approx(2.13, abs=0.05)


def test_a_file_dropped_on_the_page_appears_in_the_queue(page: Page, tmp_path: Path):
    expect(page.locator('.voice[data-voice="tom"]')).to_be_visible()
    expect(page.locator("#drop-voice")).to_have_value("tom")  # the only voice, chosen
    dropped = tmp_path / "dropped.wav"
    shutil.copy(tortoise_clips("tom")[2], dropped)
    page.set_input_files("#drop-files", str(dropped))
    expect(page.locator("#drop-log")).to_contain_text("in inbox/tom/dropped.wav")
    job = page.locator('#queue li[data-file="dropped.wav"]')
    expect(job).to_contain_text("tom/dropped.wav")  # taken by the daemon's own intake
    # Dropped onto the zone itself, as from a file manager: a text goes to the outbox
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["Hi."], "note.txt", {type: "text/plain"}));
            const zone = document.getElementById("drop-zone");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }"""
    )
    expect(page.locator("#drop-log")).to_contain_text("in outbox/tom/note.txt")


@pytest.mark.parametrize("served", [{"api_key": API_KEY}], indirect=True)
def test_with_a_key_the_page_shows_all_but_asks_for_it_to_take_a_file(page: Page, root: Path):
    expect(page.locator('.voice[data-voice="tom"]')).to_contain_text("2 clips")  # open_page
    expect(page.locator("#key-box")).to_be_hidden()
    page.set_input_files(
        "#drop-files", files=[{"name": "note.txt", "mimeType": "text/plain", "buffer": b"Hi."}]
    )
    expect(page.locator("#drop-log")).to_contain_text("Missing or wrong API key")
    expect(page.locator("#key-box")).to_be_visible()
    assert not (root / "outbox" / "tom" / "note.txt").exists()
    page.fill("#key", API_KEY)
    page.click("#key-form button")
    expect(page.locator("#key-box")).to_be_hidden()
    page.set_input_files(
        "#drop-files", files=[{"name": "note.txt", "mimeType": "text/plain", "buffer": b"Hi."}]
    )
    expect(page.locator("#drop-log")).to_contain_text("in outbox/tom/note.txt")
    assert (root / "outbox" / "tom" / "note.txt").read_bytes() == b"Hi."
