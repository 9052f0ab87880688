"""/metrics scrape time (issue 13): what one Prometheus scrape costs on a busy root.

A temp root holds a ledger of `--jobs` jobs written as the daemon leaves them (imports,
transcriptions, renders with their real-time factor and check result, fine-tuning runs, with
run times; a few pending, running and failed), spread over `--voices` voices, and
`--rejected` rejected files with their reasons. The real server (uvicorn, as the daemon runs
it) serves the root on 127.0.0.1; a client scrapes /metrics `--scrapes` times, one after the
other, and the same registry is also collected in this process without HTTP.

    python -m bench.serve_bench [--jobs 10000,100000] [--scrapes 50]

Prints a table and writes bench/out/serve.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path

from loguru import logger
from prometheus_client import generate_latest

from bench.common import describe_machine, text_table
from daemon.cli import main as cli_main
from daemon.core.config import load_settings
from daemon.core.files import reject_file
from daemon.core.jobs import (
    DATA_OF,
    ImportData,
    JobData,
    JobKind,
    JobState,
    Outcome,
    RenderData,
    TrainData,
    TrainProgress,
)
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.report.status import collect
from daemon.serve.app import build_app
from daemon.serve.metrics import build_registry
from daemon.serve.server import HttpServer
from tests.conftest import configure

OUT_FILE = Path(__file__).with_name("out") / "serve.json"
# Of every 100 jobs: what a root that imported, transcribed and rendered for a while holds.
MIX = (
    (JobKind.IMPORT, 45),
    (JobKind.TRANSCRIBE, 40),
    (JobKind.RENDER, 14),
    (JobKind.TRAIN, 1),
)


def record(kind: JobKind, rng: random.Random) -> tuple[JobData, float]:
    """A finished job's record and run seconds, as the stages write them."""
    if kind is JobKind.IMPORT:
        return ImportData(Outcome.IMPORTED, clip=Path("clip.wav")), rng.uniform(0.05, 2)
    if kind is JobKind.RENDER:
        seconds, speech = rng.uniform(10, 3000), rng.uniform(2, 600)
        failed = rng.choice((None, 0, 0, 0, 1))
        data = RenderData(
            Outcome.RENDERED, seconds=seconds, audio_seconds=speech, check_failed_chunks=failed
        )
        return data, seconds
    if kind is JobKind.TRAIN:
        losses = {"loss_text": 0.4, "loss_mel": 2.5, "loss_total": 2.9}
        return TrainData(Outcome.TRAINED, step=800, losses=losses), rng.uniform(600, 20000)
    return DATA_OF[kind](Outcome.TRANSCRIBED), rng.uniform(1, 30)


def fill_ledger(root: Root, jobs: int, voices: int) -> None:
    """`jobs` rows in one transaction; 1 in 50 pending, 1 in 100 failed, one train running."""
    rng = random.Random(0)
    kinds = [kind for kind, share in MIX for _ in range(share)]
    now = time.time()
    rows = []
    for number in range(jobs):
        kind = kinds[number % len(kinds)]
        data, seconds = record(kind, rng)
        state = JobState.DONE
        if number % 50 == 0:
            state, data, seconds = JobState.PENDING, DATA_OF[kind](), None
        elif number % 100 == 1:
            state = JobState.FAILED
        finished = None if state is JobState.PENDING else now - (jobs - number)
        created = now - 2 * (jobs - number)
        voice = f"voice{number % voices}"
        path, digest = f"/in/{number}", f"h{number}"
        row = (kind, voice, path, digest, state, data.to_json(), created, created, finished)
        rows.append((*row, seconds))
    progress = TrainProgress(120, 400, 1.2, 4, 0.4, 2.6, 3.0, 1e-5, 2.0, 8, 2, eta_s=140.0)
    running = TrainData(progress=progress).to_json()
    rows.append(
        (JobKind.TRAIN, "voice0", "/in/train", "t", JobState.RUNNING, running, now, now, None, None)
    )
    ledger = Ledger(root.ledger_file)
    with ledger.transaction():
        ledger.db.executemany(
            "INSERT INTO jobs (kind, voice, input_path, content_hash, state, data, created_at,"
            " updated_at, finished_at, run_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    ledger.close()


def reject_files(root: Root, count: int, voices: int) -> None:
    """`count` files set aside as intake sets them aside, with a reason each."""
    reasons = (
        "{name} is not an audio file type voicedrop imports (allowed: wav).",
        "too short: 0.20 s; a clip must be at least 1 s",
        "nothing but silence: after removing DC offset the peak is -80.0 dBFS",
    )
    for number in range(count):
        voice = root.voice(f"voice{number % voices}")
        dropped = voice.inbox / f"drop{number}.txt"
        dropped.parent.mkdir(parents=True, exist_ok=True)
        dropped.write_text("x")
        reject_file(voice, dropped, reasons[number % len(reasons)].format(name=dropped.name))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_root(base: Path, jobs: int, voices: int, rejected: int) -> Root:
    root = Root.at(base / "root")
    assert cli_main(["init", str(root.path)]) == 0
    configure(root.path, {"serve": {"enabled": True, "port": free_port()}})
    for number in range(voices):
        (root.outbox / f"voice{number}").mkdir(parents=True, exist_ok=True)
    fill_ledger(root, jobs, voices)
    reject_files(root, rejected, voices)
    return root


def timed(action, rounds: int) -> list[float]:
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def scrape(url: str) -> bytes:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        return response.read()


def measure(base: Path, jobs: int, voices: int, rejected: int, scrapes: int) -> dict:
    root = make_root(base / str(jobs), jobs, voices, rejected)
    settings = load_settings(root.config_file)
    registry = build_registry(root, settings)
    in_process = timed(lambda: generate_latest(registry), scrapes)
    server = HttpServer.bind(settings.serve, root.config_file)
    server.start(build_app(root, settings, partial(collect, root)))
    try:
        body = scrape(server.url)
        over_http = timed(lambda: scrape(server.url), scrapes)
    finally:
        server.stop()
    return {
        "jobs": jobs,
        "voices": voices,
        "rejected_files": rejected,
        "body_bytes": len(body),
        "series": sum(1 for line in body.decode().splitlines() if not line.startswith("#")),
        "http": summary(over_http),
        "in_process": summary(in_process),
    }


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="10000,100000", help="ledger sizes, comma-separated")
    parser.add_argument("--voices", type=int, default=10)
    parser.add_argument("--rejected", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    logger.remove()  # a line per rejected file and per server start would bury the table
    machine = describe_machine()
    sizes = [int(size) for size in args.jobs.split(",")]
    with tempfile.TemporaryDirectory(prefix="voicedrop-serve-bench-") as base:
        results = [
            measure(Path(base), jobs, args.voices, args.rejected, args.scrapes) for jobs in sizes
        ]
    rows = [("jobs", "series", "HTTP median s", "p95 s", "max s", "in-process median s")]
    for result in results:
        http, direct = result["http"], result["in_process"]
        rows.append(
            (
                str(result["jobs"]),
                str(result["series"]),
                f"{http['median']:.4f}",
                f"{http['p95']:.4f}",
                f"{http['max']:.4f}",
                f"{direct['median']:.4f}",
            )
        )
    print(f"{args.voices} voices, {args.rejected} rejected files, {args.scrapes} scrapes each")
    print(text_table(rows))
    OUT_FILE.parent.mkdir(exist_ok=True)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "scrapes": args.scrapes,
        "results": results,
    }
    OUT_FILE.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
