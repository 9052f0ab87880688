"""Assembly and encoding benchmark (issue 12): what joining a book's chunks, normalising its
loudness and writing each output format costs per hour of audio on this CPU.

Chunks are espeak-ng speech (ten sentences, resampled to TorToiSe's 24 kHz) repeated in
reading order, four chunks to a paragraph, twenty paragraphs to a chapter, until the book
is `--minutes` long (default 10); figures are scaled to one hour of output. Assembly runs
once more under tracemalloc for its peak allocation (numpy reports its arrays to it).

    python -m bench.assembly_bench [--minutes 10]

Prints a table and writes bench/out/assembly.json.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from bench.common import describe_machine, text_table
from daemon.book.assembly import assemble
from daemon.book.encode import Format, Tags, encode
from daemon.book.timeline import Pauses, Spoken

RATE = 24_000
SENTENCES = (
    "It was a quiet morning in the valley.",
    "The birds sang, and the river ran on past the mill.",
    "Nobody came to the door that day.",
    "A letter arrived at noon, carried by a boy on a bicycle.",
    "It was short, and it was not signed.",
    "She read it twice, then folded it away.",
    "Outside, the wind turned the leaves over.",
    "By evening the clouds had come down from the hills.",
    "He lit the lamp and sat by the window.",
    "The end of the story was still a long way off.",
)
OUT = Path(__file__).with_name("out")


def speech(text: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, RATE).astype(np.float32)


def book(minutes: float) -> list[Spoken]:
    """Chunks in reading order until `minutes` of speech (pauses not counted)."""
    voices = [speech(text) for text in SENTENCES]
    chunks: list[Spoken] = []
    spoken = 0.0
    while spoken < minutes * 60:
        n = len(chunks)
        k = n % len(SENTENCES)
        chunks.append(Spoken(n // 80, n // 4 % 20, n % 4, SENTENCES[k], voices[k]))
        spoken += len(voices[k]) / RATE
    return chunks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    chunks = book(args.minutes)
    titles: list[str | None] = [None] * (chunks[-1].chapter + 1)

    started = time.perf_counter()
    audio, timeline = assemble(chunks, RATE, titles, Pauses(), -18.0)
    assembly_s = time.perf_counter() - started
    hours = timeline.duration / 3600

    tracemalloc.start()
    assemble(chunks, RATE, titles, Pauses(), -18.0)
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    rows = [("step", "wall s", "s per hour of audio", "MB per hour of audio")]
    rows.append(("assemble + loudness", f"{assembly_s:.2f}", f"{assembly_s / hours:.1f}", ""))
    figures: dict[str, dict[str, float]] = {"assemble": {"seconds": assembly_s}}
    tags = Tags("Benchmark", "espeak-ng", "Bench", 1, None, "en")
    with tempfile.TemporaryDirectory() as folder:
        for fmt in Format:
            target = Path(folder) / f"book{fmt.suffix}"
            started = time.perf_counter()
            encode(audio, RATE, target, fmt, None, tags, timeline.chapters)
            seconds = time.perf_counter() - started
            size_mb = target.stat().st_size / 1e6
            figures[fmt.value] = {"seconds": seconds, "mb": size_mb}
            rows.append(
                (
                    f"encode {fmt}",
                    f"{seconds:.2f}",
                    f"{seconds / hours:.1f}",
                    f"{size_mb / hours:.0f}",
                )
            )
    print(text_table(rows))
    output_mb = audio.nbytes / 1e6
    print(
        f"{timeline.duration / 60:.1f} min of audio, {len(chunks)} chunks, "
        f"{len(timeline.chapters)} chapters; output array {output_mb:.0f} MB, "
        f"assembly peak allocation {peak_bytes / 1e6:.0f} MB"
    )
    OUT.mkdir(exist_ok=True)
    result = {
        "machine": describe_machine(),
        "audio_seconds": timeline.duration,
        "chunks": len(chunks),
        "output_array_mb": output_mb,
        "assembly_peak_allocation_mb": peak_bytes / 1e6,
        "figures": figures,
    }
    (OUT / "assembly.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
