"""Speech check benchmark (issue 11): what hearing audio again with Whisper costs on the CPU.

1. `heard()` per second of audio: each clip (tortoise-tts voices, espeak-ng sentences) given
   whole to `daemon.quality.speech.heard` on the loaded packaged model, best of the rounds;
   seconds of compute per second of audio.
2. the dataset audit's added time per clip: every clip imported and transcribed by the real
   intake, import stage, ledger and worker (`TranscribeStage`), which hears each piece again;
   the stage records that share of the job (`TranscribeData.heard_seconds`).
3. the CER every piece scored against its own text, and how many are over dataset.max_cer.

    python -m bench.quality_bench [--quick]

Prints a table and writes bench/out/quality.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import soundfile as sf
from loguru import logger

from bench.common import text_table
from bench.dataset_bench import (
    ESPEAK_VOICE,
    MORE_SENTENCES,
    TORTOISE_VOICES,
    import_clips,
    machine,
    write_root,
)
from daemon.core.config import load_settings
from daemon.core.jobs import JobKind, JobState
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.core.worker import StageContext, Worker
from daemon.quality.audit import read_audit
from daemon.quality.speech import heard
from daemon.stages.transcribe import TranscribeStage
from tests.conftest import SENTENCES

ROUNDS = 3
OUT_FILE = Path(__file__).with_name("out") / "quality.json"


@dataclass(frozen=True)
class ClipAudit:
    """One clip through the transcribe stage: the job's time and the audit's share of it."""

    voice: str
    clip: str
    audio_seconds: float
    pieces: int
    piece_seconds: float
    job_seconds: float  # Whisper's transcription plus the audit (TranscribeData.seconds)
    heard_seconds: float  # the audit: its pieces heard again (TranscribeData.heard_seconds)


def transcribe_all(root: Root, ledger: Ledger, stage: TranscribeStage) -> list[ClipAudit]:
    """Every transcribe job through the real worker, as the daemon runs them."""
    worker = Worker(root.ledger_file, stage.settings, [stage])
    worker.drain()
    audits = []
    for job in ledger.jobs(kind=JobKind.TRANSCRIBE):
        assert job.state == JobState.DONE and job.data.heard_seconds is not None, job
        entry = json.loads((root.voice(job.voice).dataset / "whisper.json").read_text())
        pieces = entry[job.input_path.name]["pieces"]
        audits.append(
            ClipAudit(
                voice=job.voice,
                clip=job.input_path.name,
                audio_seconds=job.data.audio_seconds,
                pieces=len(pieces),
                piece_seconds=sum(p["end"] - p["start"] for p in pieces),
                job_seconds=job.data.seconds,
                heard_seconds=job.data.heard_seconds,
            )
        )
    return audits


def time_heard(stage: TranscribeStage, clips: list[Path], rounds: int) -> list[float]:
    """Seconds `heard()` takes per clip (whole, 22050 Hz, language en), best of `rounds`."""
    best = [float("inf")] * len(clips)
    for _ in range(rounds):
        for index, clip in enumerate(clips):
            audio, rate = sf.read(clip, dtype="float32")
            started = time.perf_counter()
            heard(stage.whisper, audio, rate, "en")
            best[index] = min(best[index], time.perf_counter() - started)
    return best


def measure(path: Path, voices: tuple[str, ...], sentences: tuple[str, ...], rounds: int) -> dict:
    write_root(path, voices, sentences)
    root = Root.at(path)
    settings = load_settings(root.config_file)
    ledger = Ledger(root.ledger_file)
    try:
        import_clips(root, settings, ledger)
        stage = TranscribeStage(StageContext(root, settings))
        stage.whisper.load(stage.options(settings))
        clips = [job.input_path for job in ledger.jobs(kind=JobKind.TRANSCRIBE)]
        heard(stage.whisper, sf.read(clips[0], dtype="float32")[0], 22050, "en")  # warm up
        audits = transcribe_all(root, ledger, stage)
        stage.whisper.load(stage.options(settings))  # the worker released it when idle
        heard_seconds = time_heard(stage, clips, rounds)
    finally:
        ledger.close()
    pieces = [
        asdict(piece)
        for voice in sorted({a.voice for a in audits})
        for piece in read_audit(root.voice(voice)).pieces
    ]
    audio = [sf.info(clip).duration for clip in clips]
    return {
        "summary": summarise(audits, heard_seconds, audio, pieces, settings.dataset.max_cer),
        "clips": [asdict(a) for a in audits],
        "heard_seconds_per_clip": dict(zip([c.name for c in clips], heard_seconds, strict=True)),
        "pieces": pieces,
    }


def summarise(
    audits: list[ClipAudit],
    heard_seconds: list[float],
    audio: list[float],
    pieces: list[dict[str, Any]],
    max_cer: float,
) -> dict[str, Any]:
    job = sum(a.job_seconds for a in audits)
    added = sum(a.heard_seconds for a in audits)
    cers = [p["cer"] for p in pieces]
    return {
        "clips": len(audits),
        "audio_seconds": sum(audio),
        "heard_compute_per_audio_second": sum(heard_seconds) / sum(audio),
        "heard_compute_per_audio_second_per_clip_median": statistics.median(
            s / a for s, a in zip(heard_seconds, audio, strict=True)
        ),
        "audit_seconds_per_clip_mean": added / len(audits),
        "audit_seconds_per_clip_max": max(a.heard_seconds for a in audits),
        "audit_compute_per_piece_second": added / sum(a.piece_seconds for a in audits),
        "audit_share_of_transcribe_job": added / job,
        "transcribe_job_seconds": job,
        "pieces": len(pieces),
        "cer_mean": statistics.fmean(cers),
        "cer_median": statistics.median(cers),
        "cer_max": max(cers),
        "max_cer": max_cer,
        "suspect": sum(c > max_cer for c in cers),
        "suspect_pieces": [p for p in pieces if p["cer"] > max_cer],
    }


def report(s: dict[str, Any]) -> str:
    rows = [
        ("figure", "value"),
        ("clips / audio", f"{s['clips']} / {s['audio_seconds']:.1f} s"),
        ("heard(): compute per audio second", f"{s['heard_compute_per_audio_second']:.3f}"),
        (
            "  median over clips",
            f"{s['heard_compute_per_audio_second_per_clip_median']:.3f}",
        ),
        (
            "audit: added seconds per clip",
            f"{s['audit_seconds_per_clip_mean']:.2f} mean, "
            f"{s['audit_seconds_per_clip_max']:.2f} max",
        ),
        ("audit: compute per piece second", f"{s['audit_compute_per_piece_second']:.3f}"),
        ("audit: share of the transcribe job", f"{s['audit_share_of_transcribe_job']:.1%}"),
        (
            f"pieces: CER mean / median / max ({s['pieces']})",
            f"{s['cer_mean']:.3f} / {s['cer_median']:.3f} / {s['cer_max']:.3f}",
        ),
        (f"pieces over max_cer {s['max_cer']}", str(s["suspect"])),
    ]
    return text_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tom and 6 sentences, one round")
    args = parser.parse_args(argv)
    voices = TORTOISE_VOICES[:1] if args.quick else TORTOISE_VOICES
    sentences = SENTENCES if args.quick else SENTENCES + MORE_SENTENCES
    rounds = 1 if args.quick else ROUNDS
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    started = time.monotonic()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="voicedrop-quality-bench-") as tmp:
        measured = measure(Path(tmp) / "root", voices, sentences, rounds)
    info["load_average_after"] = os.getloadavg()
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench.quality_bench" + (" --quick" if args.quick else ""),
        "machine": info,
        "rounds": rounds,
        "voices": [*voices, ESPEAK_VOICE],
        "wall_seconds": time.monotonic() - started,
        **measured,
    }
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(report(result["summary"]))
    print(f"wrote {OUT_FILE} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
