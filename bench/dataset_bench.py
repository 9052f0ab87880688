"""Dataset preparation benchmark (issue 3): the daemon's transcribe stage
against plain faster-whisper, side by side in one run, on the same clips, model and settings.

Clips (tortoise-tts voices plus espeak-ng sentences) are dropped into a temp root and
imported by the real intake and import stage. Then, per round, every transcribe job is
claimed from the real ledger and run by the real worker (`TranscribeStage`: read the 22050 Hz
clip, resample, transcribe, cut, write pieces, rewrite whisper.json and the lists), and the
same clip file is given to a plain `WhisperModel.transcribe`; the two alternate which goes
first. Model loading (and the one-time TorToiSe tokenizer load) is left out of both sides.

1. throughput: seconds per side (best round of each), plain / pipeline, real-time factor
2. WER on the espeak-ng sentences, pipeline (whisper.json "text") and plain, against the text

    python -m bench.dataset_bench [--quick]

Prints a table and writes bench/out/dataset.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ctranslate2
import faster_whisper
import soundfile as sf
import yaml
from loguru import logger

from bench.common import describe_machine
from daemon.cli import main as cli_main
from daemon.core.config import Settings, load_settings
from daemon.core.jobs import Job, JobKind, JobState, Outcome
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.core.worker import StageContext, Worker
from daemon.dataset.lists import Transcripts, unknown_characters
from daemon.dataset.whisper import WhisperOptions, load_for_whisper
from daemon.service.intake import Intake
from daemon.service.watch import Drop
from daemon.stages.import_clip import ImportStage
from daemon.stages.transcribe import TranscribeStage, queue_rebuild
from tests.conftest import SENTENCES, espeak, tortoise_clips, word_error_rate

MODEL = Path(__file__).parents[1] / "models" / "whisper-base"
LANGUAGE = "en"
PLAIN_SETTINGS: dict[str, Any] = {
    "language": LANGUAGE,
    "beam_size": 5,
    "vad_filter": True,
    "word_timestamps": True,
    "condition_on_previous_text": False,
}
TORTOISE_VOICES = ("tom", "train_dotrice", "daniel", "train_grace")
ESPEAK_VOICE = "espeak"
MORE_SENTENCES = (
    "The baker opened his shop early and the smell of bread filled the street.",
    "Every winter the birds fly south to find warmer weather and more food.",
    "She found an old map hidden between the pages of a dusty book.",
    "The teacher asked the students to write a short story about their summer.",
    "A cold wind blew across the field as the farmer walked back to his house.",
    "We need to buy milk, eggs and butter before the market closes.",
    "The museum was full of paintings from artists who lived long ago.",
    "His dog waited patiently by the door for him to come home from work.",
    "They decided to take the scenic road through the mountains instead of the highway.",
    "Nobody knew why the lights in the old theater kept turning on at night.",
)
ROUNDS = 3
TARGET_RATIO = 0.9
OUT_FILE = Path(__file__).with_name("out") / "dataset.json"


@dataclass
class ClipResult:
    """One clip's timings per round, and the transcripts of the last round."""

    voice: str
    clip: str
    audio_seconds: float
    reference: str | None
    pipeline_seconds: list[float] = field(default_factory=list)
    whisper_seconds: list[float] = field(default_factory=list)
    plain_seconds: list[float] = field(default_factory=list)
    pipeline_text: str = ""
    plain_text: str = ""


@dataclass(frozen=True)
class Bench:
    """A temp root with imported clips, the real worker and stage, and a plain model."""

    root: Root
    ledger: Ledger
    worker: Worker
    stage: TranscribeStage
    options: WhisperOptions
    plain: faster_whisper.WhisperModel


def write_root(path: Path, voices: tuple[str, ...], sentences: tuple[str, ...]) -> None:
    """An initialised root with the clips in its inbox, as a user would drop them."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["init", str(path)]) == 0
    config = {"whisper": {"model": str(MODEL), "language": LANGUAGE}}
    (path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    for voice in voices:
        (path / "inbox" / voice).mkdir()
        for clip in tortoise_clips(voice):
            shutil.copy(clip, path / "inbox" / voice / clip.name)
    for index, sentence in enumerate(sentences):
        espeak(path / "inbox" / ESPEAK_VOICE / f"s{index:02d}.wav", sentence)


def import_clips(root: Root, settings: Settings, ledger: Ledger) -> None:
    """Queue every dropped file through the intake and run the import jobs."""
    intake = Intake(root, settings, ledger)
    for path in sorted(root.inbox.glob("*/*.wav")):
        intake.take(Drop("inbox", path.parent.name, path))
    Worker(root.ledger_file, settings, [ImportStage(StageContext(root, settings))]).drain()
    outcomes = {job.data.outcome for job in ledger.jobs(kind=JobKind.IMPORT)}
    assert outcomes == {Outcome.IMPORTED}, f"import outcomes: {outcomes}"


def clip_results(ledger: Ledger, sentences: tuple[str, ...]) -> list[ClipResult]:
    references = {f"s{index:02d}.wav": text for index, text in enumerate(sentences)}
    return [
        ClipResult(
            voice=job.voice,
            clip=job.input_path.name,
            audio_seconds=sf.info(job.input_path).duration,
            reference=references[job.input_path.name] if job.voice == ESPEAK_VOICE else None,
        )
        for job in ledger.jobs(kind=JobKind.TRANSCRIBE)
    ]


def timed(action: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action(*args)
    return time.perf_counter() - started, value


def plain_transcribe(model: faster_whisper.WhisperModel, clip: Path) -> str:
    segments, _ = model.transcribe(str(clip), **PLAIN_SETTINGS)
    return " ".join(segment.text.strip() for segment in segments).strip()


def run_pipeline(bench: Bench, job: Job) -> float:
    """The worker's own run_one, as the daemon's loop calls it; returns Whisper's share."""
    bench.worker.run_one(job, bench.ledger)
    done = bench.ledger.get(job.id)
    assert done.state == JobState.DONE and done.data.outcome == Outcome.TRANSCRIBED, done
    return done.data.seconds


def run_round(bench: Bench, results: list[ClipResult], plain_first: bool) -> None:
    """Each clip through both sides back to back, alternating which side goes first."""
    model = bench.stage.whisper.load(bench.options)  # held: the last job's release frees nothing
    for index, result in enumerate(results):
        job = bench.ledger.claim({JobKind.TRANSCRIBE: 0})
        assert job is not None and job.input_path.name == result.clip, job
        order = ("plain", "pipeline") if plain_first == (index % 2 == 0) else ("pipeline", "plain")
        for side in order:
            if side == "plain":
                seconds, result.plain_text = timed(plain_transcribe, bench.plain, job.input_path)
                result.plain_seconds.append(seconds)
            else:
                seconds, whisper = timed(run_pipeline, bench, job)
                result.pipeline_seconds.append(seconds)
                result.whisper_seconds.append(whisper)
    assert bench.ledger.claim({JobKind.TRANSCRIBE: 0}) is None
    del model


def requeue_all(bench: Bench, voices: list[str]) -> None:
    """`voicedrop transcribe VOICE` for every voice: each clip is transcribed again."""
    for voice in voices:
        queue_rebuild(bench.ledger, bench.root.voice(voice))


def warm_up(bench: Bench, clip: Path) -> dict[str, float]:
    """One-time costs left out of both sides: the pipeline's model load, the TorToiSe
    tokenizer load (first piece checked), each side's first inference."""
    load, _ = timed(bench.stage.whisper.load, bench.options)
    tokenizer, _ = timed(unknown_characters, "warm up")
    pipeline_first, _ = timed(
        bench.stage.whisper.transcribe, bench.options, load_for_whisper(clip), LANGUAGE
    )
    plain_first, _ = timed(plain_transcribe, bench.plain, clip)
    return {
        "pipeline_model_load": load,
        "tortoise_tokenizer_load": tokenizer,
        "pipeline_first_transcription": pipeline_first,
        "plain_first_transcription": plain_first,
    }


def side_totals(results: list[ClipResult], attribute: str, rounds: int) -> list[float]:
    return [sum(getattr(r, attribute)[n] for r in results) for n in range(rounds)]


def summarise(results: list[ClipResult], rounds: int) -> dict[str, Any]:
    audio = sum(r.audio_seconds for r in results)
    pipeline = side_totals(results, "pipeline_seconds", rounds)
    plain = side_totals(results, "plain_seconds", rounds)
    whisper = side_totals(results, "whisper_seconds", rounds)
    best = pipeline.index(min(pipeline))
    spoken = [r for r in results if r.reference is not None]
    references = [r.reference or "" for r in spoken]
    return {
        "clips": len(results),
        "audio_seconds": audio,
        "pipeline_seconds_per_round": pipeline,
        "plain_seconds_per_round": plain,
        "pipeline_whisper_seconds_per_round": whisper,
        "pipeline_seconds": min(pipeline),
        "plain_seconds": min(plain),
        "pipeline_whisper_seconds": whisper[best],
        "pipeline_other_seconds": pipeline[best] - whisper[best],
        "ratio_plain_over_pipeline": min(plain) / min(pipeline),
        "ratio_per_round": [p / q for p, q in zip(plain, pipeline, strict=True)],
        "median_ratio_per_clip": statistics.median(
            min(r.plain_seconds) / min(r.pipeline_seconds) for r in results
        ),
        "pipeline_real_time_factor": min(pipeline) / audio,
        "pipeline_times_real_time": audio / min(pipeline),
        "plain_times_real_time": audio / min(plain),
        "wer_sentences": len(spoken),
        "wer_pipeline": word_error_rate(references, [r.pipeline_text for r in spoken]),
        "wer_plain": word_error_rate(references, [r.plain_text for r in spoken]),
        "transcripts_differing": sum(r.pipeline_text != r.plain_text for r in results),
    }


def collect_pipeline_texts(bench: Bench, results: list[ClipResult]) -> None:
    """The last round's transcripts, as the daemon stored them in whisper.json."""
    for voice in {r.voice for r in results}:
        entries = Transcripts(bench.root.voice(voice)).entries
        for result in (r for r in results if r.voice == voice):
            result.pipeline_text = entries[result.clip]["text"]


def open_bench(root: Root, settings: Settings, ledger: Ledger) -> Bench:
    stage = TranscribeStage(StageContext(root, settings))
    options = stage.options(settings)
    expected = {key: value for key, value in PLAIN_SETTINGS.items() if key != "language"}
    assert {key: getattr(options, key) for key in expected} == expected, options
    plain = faster_whisper.WhisperModel(
        options.model,
        device=options.device,
        compute_type=options.compute_type,
        cpu_threads=options.threads,
    )
    worker = Worker(root.ledger_file, settings, [stage])
    return Bench(root, ledger, worker, stage, options, plain)


def measure(path: Path, voices: tuple[str, ...], sentences: tuple[str, ...], rounds: int) -> dict:
    write_root(path, voices, sentences)
    root = Root.at(path)
    settings = load_settings(root.config_file)
    ledger = Ledger(root.ledger_file)
    try:
        import_clips(root, settings, ledger)
        results = clip_results(ledger, sentences)
        bench = open_bench(root, settings, ledger)
        one_time = warm_up(bench, root.voice(ESPEAK_VOICE).clips / "s00.wav")
        for number in range(rounds):
            if number:
                requeue_all(bench, sorted({r.voice for r in results}))
            run_round(bench, results, plain_first=number % 2 == 1)
        collect_pipeline_texts(bench, results)
    finally:
        ledger.close()
    return {
        "summary": summarise(results, rounds),
        "one_time_seconds": one_time,
        "options": asdict(bench.options),
        "clips": [asdict(r) for r in results],
    }


def machine() -> dict[str, Any]:
    return describe_machine(
        faster_whisper=faster_whisper.__version__,
        ctranslate2=ctranslate2.__version__,
    )


def report(summary: dict[str, Any], rounds: int) -> str:
    s = summary
    ratio_ok = s["ratio_plain_over_pipeline"] >= TARGET_RATIO
    wer_ok = s["wer_pipeline"] <= s["wer_plain"]
    rows = [
        ("", "pipeline", "plain", "target"),
        ("seconds (best round)", f"{s['pipeline_seconds']:.1f}", f"{s['plain_seconds']:.1f}", ""),
        (
            "x real time",
            f"{s['pipeline_times_real_time']:.2f}",
            f"{s['plain_times_real_time']:.2f}",
            "",
        ),
        ("real-time factor", f"{s['pipeline_real_time_factor']:.3f}", "", ""),
        (
            "plain / pipeline",
            f"{s['ratio_plain_over_pipeline']:.3f}",
            "",
            f"≥ {TARGET_RATIO} {'ok' if ratio_ok else 'MISSED'}",
        ),
        (
            f"WER ({s['wer_sentences']} sentences)",
            f"{s['wer_pipeline']:.2%}",
            f"{s['wer_plain']:.2%}",
            f"pipeline ≤ plain {'ok' if wer_ok else 'MISSED'}",
        ),
    ]
    lines = [
        f"Dataset preparation: {s['clips']} clips, {s['audio_seconds']:.1f} s of audio, "
        f"{rounds} round(s), best round of each side",
        *(f"{a:<24}{b:>10}{c:>10}   {d}" for a, b, c, d in rows),
        f"pipeline seconds per round {fmt(s['pipeline_seconds_per_round'])}, "
        f"plain {fmt(s['plain_seconds_per_round'])}, "
        f"ratio per round {fmt(s['ratio_per_round'], 3)}",
        f"inside the pipeline's best round: Whisper {s['pipeline_whisper_seconds']:.1f} s, "
        f"everything else {s['pipeline_other_seconds']:.1f} s; "
        f"transcripts differing from plain: {s['transcripts_differing']}",
    ]
    return "\n".join(lines)


def fmt(values: list[float], digits: int = 1) -> str:
    return "/".join(f"{v:.{digits}f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tom's clips and 6 sentences, one round"
    )
    args = parser.parse_args(argv)
    voices = TORTOISE_VOICES[:1] if args.quick else TORTOISE_VOICES
    sentences = SENTENCES if args.quick else SENTENCES + MORE_SENTENCES
    rounds = 1 if args.quick else ROUNDS
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    started = time.monotonic()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="voicedrop-dataset-bench-") as tmp:
        measured = measure(Path(tmp) / "root", voices, sentences, rounds)
    info["load_average_after"] = os.getloadavg()
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench.dataset_bench" + (" --quick" if args.quick else ""),
        "machine": info,
        "rounds": rounds,
        "voices": [*voices, ESPEAK_VOICE],
        "plain_settings": PLAIN_SETTINGS,
        "targets": {"ratio_plain_over_pipeline": TARGET_RATIO, "wer": "pipeline <= plain"},
        "wall_seconds": time.monotonic() - started,
        **measured,
    }
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(report(result["summary"], rounds))
    print(f"wrote {OUT_FILE} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
