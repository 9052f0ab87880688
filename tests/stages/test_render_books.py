"""Books through the real daemon: an EPUB or a Markdown text becomes a chaptered audiobook
with tags, cover and subtitles; the lexicon changes what the engine is told; an edited
paragraph re-renders only its own chunks.

Real TorToiSe weights cannot exist here and the tiny random ones babble, so the engine is
the stand-in `EspeakEngine` (tests/quality/speech.py): the real engine (tiny set) whose
render returns espeak-ng speech of the text it is handed, which Whisper can check.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from ebooklib import epub
from PIL import Image

from tests.conftest import WHISPER_BASE, configure, run_until_idle, status
from tests.quality.speech import EspeakEngine, configure_espeak_root, espeak_voice_root

CHAPTERS = {
    "The Beginning": [
        "It was a quiet morning in the little harbour town.",
        "The boats rocked gently while the gulls called overhead.",
    ],
    "The Middle": [
        "By noon the wind had turned, and the sky grew dark.",
        "Nobody expected the storm to arrive so quickly that day.",
    ],
    "The End": ["When the rain finally stopped, the whole town came out to look at the sea."],
}
FOOTNOTE = "This footnote must never be read aloud."


def configure_book(root: Path, tiny_models: Path, **render: object) -> None:
    configure_espeak_root(root, tiny_models, check=False, **render)


@pytest.fixture
def book_root(root: Path, espeak_voice_template: Path, tiny_models: Path, monkeypatch) -> Path:
    """Voice `eve` of espeak-ng clips; the stand-in engine; the check off (it has tests of
    its own) so each chunk is rendered once."""
    return espeak_voice_root(root, espeak_voice_template, tiny_models, monkeypatch, check=False)


def png_cover() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 96), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_epub(path: Path) -> Path:
    """Three chapters, a cover, metadata, and a footnote with its marker."""
    book = epub.EpubBook()
    book.set_identifier("voicedrop-test-book")
    book.set_title("A Small Book")
    book.set_language("en")
    book.add_author("Ann Author")
    book.set_cover("cover.png", png_cover())
    items = []
    for index, (title, paragraphs) in enumerate(CHAPTERS.items()):
        item = epub.EpubHtml(title=title, file_name=f"c{index}.xhtml", lang="en")
        body = "".join(f"<p>{p}</p>" for p in paragraphs)
        if index == 0:
            body += (
                '<p>A sailor waved.<sup><a epub:type="noteref" href="#n1">1</a></sup></p>'
                f'<aside epub:type="footnote" id="n1"><p>{FOOTNOTE}</p></aside>'
            )
        item.content = f"<html><body><h1>{title}</h1>{body}</body></html>"
        book.add_item(item)
        items.append(item)
    book.toc = tuple(items)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = items
    epub.write_epub(str(path), book)
    return path


def ffprobe(path: Path, *entries: str) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", *entries, "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def integrated_lufs(path: Path) -> float:
    """Measured by ffmpeg's own EBU R128 filter, not by voicedrop's code."""
    result = subprocess.run(
        ["ffmpeg", "-nostats", "-i", str(path), "-af", "ebur128", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = result.stderr.rsplit("Summary:", 1)[1]
    return float(summary.split("I:", 1)[1].split("LUFS", 1)[0])


def decoded(path: Path) -> tuple[np.ndarray, int]:
    wav = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-f", "wav", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return sf.read(io.BytesIO(wav), dtype="float32")


def test_an_epub_becomes_a_chaptered_m4b_with_tags_cover_and_subtitles(book_root):
    book = write_epub(book_root / "outbox" / "eve" / "book.epub")
    run_until_idle(book_root)
    m4b = book.with_suffix(".m4b")
    sidecar = json.loads(book.with_suffix(".json").read_text())
    assert sidecar["output"] == "book.m4b" and sidecar["format"] == "m4b"

    chapters = ffprobe(m4b, "-show_chapters")["chapters"]
    assert [c["tags"]["title"] for c in chapters] == list(CHAPTERS)
    starts = [float(c["start_time"]) for c in chapters]
    assert starts == pytest.approx([mark["start"] for mark in sidecar["chapters"]], abs=0.05)
    assert starts[0] == pytest.approx(0, abs=0.05) and starts == sorted(starts)

    tags = mutagen.File(m4b)
    assert tags["\xa9nam"] == ["A Small Book"] and tags["\xa9ART"] == ["eve"]
    assert tags["covr"] and bytes(tags["covr"][0])[:4] == b"\x89PNG"

    spoken = " ".join(EspeakEngine.texts)
    assert "footnote" not in spoken.lower() and "A sailor waved." in spoken
    cues = book.with_suffix(".srt").read_text().split("\n\n")
    assert len(cues) >= sum(len(p) for p in CHAPTERS.values())
    assert "quiet morning in the little harbour town" in cues[0] or "quiet morning" in cues[1]
    assert book.with_suffix(".vtt").read_text().startswith("WEBVTT")


def test_each_subtitle_cue_is_heard_where_it_is_timed(book_root):
    """Whisper listens to the output between each cue's start and end."""
    from daemon.core.config import load_settings
    from daemon.core.paths import Root
    from daemon.dataset.whisper import WhisperOptions, shared_whisper
    from daemon.quality.speech import character_error_rate, heard

    text = book_root / "outbox" / "eve" / "story.md"
    text.write_text(
        "# One\n\nIt was a quiet morning in the little harbour town.\n\n"
        "# Two\n\nBy noon the wind had turned, and the sky grew dark.\n",
        encoding="utf-8",
    )
    run_until_idle(book_root)
    audio, rate = decoded(text.with_suffix(".m4b"))
    import srt

    cues = list(srt.parse(text.with_suffix(".srt").read_text()))
    assert [c.content for c in cues] == [
        "One",
        "It was a quiet morning in the little harbour town.",
        "Two",
        "By noon the wind had turned, and the sky grew dark.",
    ]
    whisper = shared_whisper()
    settings = load_settings(book_root / "config.yaml")
    whisper.load(WhisperOptions.from_settings(settings, Root.at(book_root)))
    for cue in cues[1::2]:  # the sentences (a lone title word is too short for Whisper)
        start, end = cue.start.total_seconds(), cue.end.total_seconds()
        assert 0 <= start < end <= len(audio) / rate + 0.05
        piece = audio[int(start * rate) : int(end * rate)]
        assert character_error_rate(cue.content, heard(whisper, piece, rate, "en")) < 0.3


def test_the_lexicon_changes_what_the_engine_is_told_and_only_those_chunks_render_again(
    book_root,
):
    lexicon = book_root / "voices" / "eve" / "lexicon.yaml"
    lexicon.write_text("CIA: see eye ay\n", encoding="utf-8")
    text = book_root / "outbox" / "eve" / "note.txt"
    text.write_text(
        "The CIA met the press at noon today.\n\nThe weather stayed fine all afternoon long.\n",
        encoding="utf-8",
    )
    run_until_idle(book_root)
    assert any("see eye ay" in told for told in EspeakEngine.texts)
    assert not any("CIA" in told for told in EspeakEngine.texts)
    first = len(EspeakEngine.texts)
    lexicon.write_text("CIA: C I A\n", encoding="utf-8")
    run_until_idle(book_root)
    again = EspeakEngine.texts[first:]
    assert len(again) == 1 and "C I A" in again[0], again


def test_editing_one_paragraph_re_renders_only_its_chunks(book_root):
    text = book_root / "outbox" / "eve" / "chapters.md"
    paragraphs = [
        "The first paragraph stays exactly as it was written.",
        "The second paragraph will be edited by the author.",
        "The third paragraph also stays as it was written.",
    ]
    text.write_text("# Part\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
    run_until_idle(book_root)
    assert len(EspeakEngine.texts) == 4  # the title, then the paragraphs
    paragraphs[1] = "The second paragraph now says something else entirely."
    text.write_text("# Part\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
    run_until_idle(book_root)
    assert EspeakEngine.texts[4:] == ["The second paragraph now says something else entirely."]
    assert status(book_root)["chunk_cache"]["chunks"] == 5


def test_another_sampler_renders_the_chunks_again_and_the_same_one_reuses_them(
    book_root, tiny_models
):
    text = book_root / "outbox" / "eve" / "note.txt"
    text.write_text("The sampler decides how the codes are drawn.\n", encoding="utf-8")
    run_until_idle(book_root)
    assert len(EspeakEngine.texts) == 1
    text.with_suffix(".wav").unlink()
    run_until_idle(book_root)
    assert len(EspeakEngine.texts) == 1  # the same settings: the chunk came from the cache
    text.with_suffix(".wav").unlink()
    configure(
        book_root,
        {
            "tts": {"models_dir": str(tiny_models), "sampler": "tortoise"},
            "whisper": {"model": str(WHISPER_BASE), "language": "en"},
            "render": {"check": False},
        },
    )
    run_until_idle(book_root)
    assert len(EspeakEngine.texts) == 2 and text.with_suffix(".wav").exists()


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "m4a", "m4b"])
def test_every_format_decodes_and_is_as_long_and_as_loud_as_asked(book_root, tiny_models, fmt):
    configure_book(book_root, tiny_models, format=fmt)
    text = book_root / "outbox" / "eve" / "short.txt"
    text.write_text("The boats rocked gently while the gulls called overhead.\n")
    run_until_idle(book_root)
    sidecar = json.loads(text.with_suffix(".json").read_text())
    output = text.with_suffix(f".{fmt}")
    assert sidecar["output"] == output.name
    audio, rate = decoded(output)
    assert len(audio) / rate == pytest.approx(sidecar["audio_seconds"], abs=0.08)
    assert integrated_lufs(output) == pytest.approx(-18.0, abs=1.0)


def test_a_corrupt_epub_gets_an_error_file_and_is_kept(book_root):
    broken = book_root / "outbox" / "eve" / "broken.epub"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip file")
    kept = broken.read_bytes()
    run_until_idle(book_root)
    error = broken.with_suffix(".error.txt").read_text()
    assert "broken.epub" in error and len(error) < 1000
    assert broken.read_bytes() == kept and not broken.with_suffix(".m4b").exists()
    assert EspeakEngine.texts == []


def test_a_bitrate_ffmpeg_refuses_makes_the_render_wait_with_its_words(book_root, tiny_models):
    configure_book(book_root, tiny_models, format="opus", bitrate="9999k")  # libopus: ≤ 256k
    text = book_root / "outbox" / "eve" / "loud.txt"
    text.write_text("The boats rocked gently while the gulls called overhead.\n")
    run_until_idle(book_root)
    (waiting,) = status(book_root)["voices"]["eve"]["waiting"]
    assert "could not write loud.opus" in waiting["reason"] and "256000" in waiting["reason"]
    assert "render.bitrate" in text.with_suffix(".error.txt").read_text()
    assert not text.with_suffix(".opus").exists() and status(book_root)["failed"] == []
    configure_book(book_root, tiny_models, format="opus")
    run_until_idle(book_root)
    assert text.with_suffix(".opus").exists() and len(EspeakEngine.texts) == 1, "chunk reused"
