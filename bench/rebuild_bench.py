"""Ledger rebuild benchmark (issue 10): how long start-up takes to set a damaged ledger aside
and rebuild it from the folders.

A root holds 1,000 imported clips (tiny generated WAVs written straight into
voices/<voice>/clips/ with their originals, half of them in dataset/whisper.json) and 100
rendered texts (wav + sidecar). Its ledger is damaged, then, in this process, timed:

a. the check and the rebuild (`Daemon.open_ledger`: quick_check, set aside, every original
   hashed, one transaction)
b. the stages' reconcile (the transcriptions of the clips without dataset lines are queued)
c. the outbox check intake makes for every text (none needs rendering again)

    python -m bench.rebuild_bench [--quick]

Prints a table and writes bench/out/rebuild.json.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.common import describe_machine, text_table
from daemon.core.config import load_settings
from daemon.core.files import file_sha256
from daemon.core.jobs import JobKind, JobState
from daemon.core.paths import Root
from daemon.service.daemon import Daemon
from daemon.service.intake import Intake
from tests.conftest import configure

VOICE = "bench"
CLIP_SECONDS = 0.7
CLIP_RATE = 22050
OUT_FILE = Path(__file__).with_name("out") / "rebuild.json"


@dataclass(frozen=True)
class Timing:
    """One rebuild of the same root, in seconds."""

    check_and_rebuild: float
    reconcile: float
    texts: float
    clips_known: int
    transcriptions_queued: int
    texts_queued: int

    @property
    def total(self) -> float:
        return self.check_and_rebuild + self.reconcile + self.texts


def make_root(base: Path, clips: int, texts: int) -> Root:
    """Clips and texts as a daemon would have left them, without running one."""
    root = Root.at(base / "root")
    for folder in (root.inbox / VOICE, root.outbox / VOICE, root.state):
        folder.mkdir(parents=True, exist_ok=True)
    configure(root.path)
    voice = root.voice(VOICE)
    for folder in (voice.originals, voice.clips, voice.dataset):
        folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    entries = {}
    for index in range(clips):
        audio = (0.1 * rng.standard_normal(int(CLIP_SECONDS * CLIP_RATE))).astype(np.float32)
        original = voice.originals / f"clip{index:04d}.wav"
        sf.write(original, audio, CLIP_RATE, subtype="PCM_16")
        sf.write(voice.clips / original.name, audio, CLIP_RATE, subtype="FLOAT")
        if index % 2 == 0:
            entries[original.name] = transcript(original)
    (voice.dataset / "whisper.json").write_text(json.dumps(entries), encoding="utf-8")
    for index in range(texts):
        text = root.outbox / VOICE / f"text{index:03d}.txt"
        text.write_text(f"Text number {index}.\n", encoding="utf-8")
        sf.write(text.with_suffix(".wav"), np.zeros(2400, np.float32), 24000)
        sidecar = {"text_sha256": file_sha256(text)}
        text.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")
    return root


def transcript(original: Path) -> dict:
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    return {
        "clip": original.name,
        "original": original.name,
        "source_sha256": digest,
        "options": {},
        "language": "en",
        "duration": CLIP_SECONDS,
        "text": "words",
        "segments": [],
        "pieces": [],
    }


def damage(path: Path) -> None:
    """A few KB overwritten in the middle of a ledger that knew every clip."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(bytes(range(256)) * 16)


def measure(root: Root) -> Timing:
    """One start-up's ledger work on the root, from a damaged ledger."""
    damage(root.ledger_file)
    daemon = Daemon(root, load_settings(root.config_file))
    started = time.perf_counter()
    ledger = daemon.open_ledger()
    rebuilt = time.perf_counter()
    queued = daemon.reconcile(ledger)
    reconciled = time.perf_counter()
    intake = Intake(root, daemon.settings, ledger)
    texts_queued = sum(intake.queue_render(t) for t in sorted((root.outbox / VOICE).glob("*.txt")))
    done = time.perf_counter()
    known = len(ledger.jobs(kind=JobKind.IMPORT, state=JobState.DONE))
    ledger.close()
    return Timing(
        rebuilt - started, reconciled - rebuilt, done - reconciled, known, queued, texts_queued
    )


def healthy_start(root: Root) -> float:
    """The ledger work of an ordinary start: the check, and the look for clips it lacks."""
    daemon = Daemon(root, load_settings(root.config_file))
    started = time.perf_counter()
    daemon.open_ledger().close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--texts", type=int, default=100)
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="voicedrop-rebuild-bench-") as base:
        root = make_root(Path(base), args.clips, args.texts)
        Daemon(root, load_settings(root.config_file)).open_ledger().close()  # the first ledger
        timings = [measure(root) for _ in range(rounds)]
        healthy = statistics.median(healthy_start(root) for _ in range(rounds))
    for timing in timings:
        if (timing.clips_known, timing.texts_queued) != (args.clips, 0):
            print(f"wrong rebuild: {timing}", file=sys.stderr)
            return 1
    median = {
        name: statistics.median(getattr(t, name) for t in timings)
        for name in ("check_and_rebuild", "reconcile", "texts", "total")
    } | {"healthy_start": healthy}
    rows = [("part", "median s", "rounds")]
    rows += [(name, f"{value:.3f}", str(rounds)) for name, value in median.items()]
    print(
        f"{args.clips} clips, {args.texts} texts, {timings[0].transcriptions_queued} "
        "transcriptions queued"
    )
    print(text_table(rows))
    OUT_FILE.parent.mkdir(exist_ok=True)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "clips": args.clips,
        "texts": args.texts,
        "median_seconds": median,
        "rounds": [asdict(t) | {"total": t.total} for t in timings],
    }
    OUT_FILE.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
