"""Re-rendering a book after a one-paragraph edit (issue 12), against rendering it whole.

A temp root on the tiny model set (real TorToiSe classes, random weights at small dims; the
engine's cost per chunk is the tiny set's) with voice `tom` (tortoise's clips, imported by
the real daemon) renders a 10-chapter Markdown book of 3 paragraphs of 2 sentences each
(60 chunks) at ultra_fast into an m4b, through the real daemon (`run --until-idle`). Then
one paragraph is edited and the book rendered again: only its chunks should be rendered,
the rest coming from the chunk cache, and the whole assembled and encoded again.

    python -m bench.book_bench

Prints a table and writes bench/out/book.json.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import describe_machine, text_table
from daemon.tts.tiny import write_tiny_models
from tests.conftest import SENTENCES, configure, run_until_idle, tortoise_clips, voicedrop

OUT_FILE = Path(__file__).with_name("out") / "book.json"
CHAPTERS, PARAGRAPHS = 10, 3


def paragraph(chapter: int, index: int) -> str:
    first = SENTENCES[(chapter * PARAGRAPHS + index) % len(SENTENCES)]
    return f"{first} This is paragraph {index + 1} of chapter {chapter + 1}."


def book(edited: bool = False) -> str:
    parts = []
    for chapter in range(CHAPTERS):
        parts.append(f"# Chapter {chapter + 1}")
        for index in range(PARAGRAPHS):
            text = paragraph(chapter, index)
            if edited and (chapter, index) == (4, 1):
                text = "The author rewrote this paragraph. It now says something else."
            parts.append(text)
    return "\n\n".join(parts) + "\n"


def rendered_chunks(log: str) -> int:
    return len(re.findall(r"rendering book\.m4b: chunk \d+/\d+", log))


def timed_render(root: Path) -> tuple[float, int, dict]:
    started = time.perf_counter()
    log = run_until_idle(root).stderr
    seconds = time.perf_counter() - started
    sidecar = json.loads((root / "outbox" / "tom" / "book.json").read_text())
    return seconds, rendered_chunks(log), sidecar


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="voicedrop-book-bench-") as base:
        models = Path(base) / "models"
        write_tiny_models(models)
        root = Path(base) / "root"
        voicedrop("init", str(root))
        configure(
            root,
            {
                "tts": {"models_dir": str(models), "device": "cpu", "preset": "ultra_fast"},
                "logging": {"level": "INFO"},
                "render": {"check": False},
            },
        )
        (root / "inbox" / "tom").mkdir(parents=True)
        for clip in tortoise_clips("tom"):
            shutil.copy(clip, root / "inbox" / "tom" / clip.name)
        run_until_idle(root)
        text = root / "outbox" / "tom" / "book.md"
        text.parent.mkdir(parents=True, exist_ok=True)
        text.write_text(book(), encoding="utf-8")
        full_seconds, full_chunks, sidecar = timed_render(root)
        text.write_text(book(edited=True), encoding="utf-8")
        edit_seconds, edit_chunks, edited = timed_render(root)
    rows = [
        ("render", "wall s", "chunks rendered", "chunks in book", "audio s"),
        (
            "whole book",
            f"{full_seconds:.1f}",
            str(full_chunks),
            str(len(sidecar["chunks"])),
            f"{sidecar['audio_seconds']:.1f}",
        ),
        (
            "after a one-paragraph edit",
            f"{edit_seconds:.1f}",
            str(edit_chunks),
            str(len(edited["chunks"])),
            f"{edited['audio_seconds']:.1f}",
        ),
    ]
    print(text_table(rows))
    print(f"edit / whole: {edit_seconds / full_seconds:.2f} of the time")
    OUT_FILE.parent.mkdir(exist_ok=True)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "whole": {
            "seconds": full_seconds,
            "rendered": full_chunks,
            "chunks": len(sidecar["chunks"]),
        },
        "edited": {
            "seconds": edit_seconds,
            "rendered": edit_chunks,
            "chunks": len(edited["chunks"]),
        },
    }
    OUT_FILE.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
