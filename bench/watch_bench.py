"""Watcher and import benchmark (issue 2), measured from outside the daemon.

Each part starts the real daemon (`python -m daemon run`) on a fresh temp root and drops
files with os.rename, so the drop instant is exact:

a. drop-to-imported latency, native events and polling: p50/p95 of the time after stability
b. a burst of 1,000 files: time until all are imported, each exactly once
c. idle CPU (percent of one core) and RSS of a started daemon with native events

    python -m bench.watch_bench [--quick]

Prints a table and writes bench/out/watch.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from bench.common import text_table
from daemon.core.jobs import JobKind
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from tests.conftest import voiced_signal, wait_for

STABLE_FOR = 0.5
POLL_INTERVAL = 0.5
VOICE = "bench"
CLIP_SECONDS = 1.0
CLIP_RATE = 22050
SETTLE_SECONDS = 2.0
SPACING = 1.0
OUT_FILE = Path(__file__).with_name("out") / "watch.json"


@dataclass(frozen=True)
class Run:
    """A started daemon on a temp root; `staging` is on the same filesystem as the inbox."""

    root: Path
    staging: Path
    process: subprocess.Popen

    @property
    def inbox(self) -> Path:
        return self.root / "inbox" / VOICE

    @property
    def clips(self) -> Path:
        return self.root / "voices" / VOICE / "clips"


def voicedrop(*args: str) -> str:
    command = [sys.executable, "-m", "daemon", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def make_root(base: Path, mode: str) -> Path:
    root = base / "root"
    voicedrop("init", str(root))
    watch = {"mode": mode, "stable_for": STABLE_FOR, "poll_interval": POLL_INTERVAL}
    # The import alone is measured: transcriptions wait for a Whisper model the root lacks
    # (the checkout's models/whisper-base would be found otherwise), and nothing is fetched.
    settings = {"watch": watch, "whisper": {"model": "absent"}, "tts": {"fetch": "never"}}
    (root / "config.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    (root / "inbox" / VOICE).mkdir(parents=True)
    return root


@contextlib.contextmanager
def running_daemon(mode: str) -> Iterator[Run]:
    """A daemon that has logged "voicedrop ready"; stopped with SIGTERM, which must exit 0."""
    with tempfile.TemporaryDirectory(prefix="voicedrop-bench-", dir="/tmp") as tmp:
        base = Path(tmp)
        root, log = make_root(base, mode), base / "daemon.log"
        with open(log, "wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run", "--root", str(root)],
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(
                lambda: "voicedrop ready" in log.read_text() or process.poll() is not None,
                timeout=120,
                every=0.05,
            )
            if process.poll() is not None:
                raise RuntimeError(f"daemon exited {process.returncode}:\n{log.read_text()}")
            (base / "staging").mkdir()
            yield Run(root, base / "staging", process)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=120)
        if code != 0:
            raise RuntimeError(f"daemon exited {code} after SIGTERM:\n{log.read_text()}")


def stage_clips(folder: Path, count: int) -> list[Path]:
    """Distinct 1 s clips (different seeds, so different content) written before the clock runs."""
    paths = []
    for seed in range(count):
        path = folder / f"clip-{seed:05d}.wav"
        sf.write(path, voiced_signal(CLIP_SECONDS, CLIP_RATE, seed), CLIP_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def wait_for_file(path: Path, timeout: float = 30) -> float:
    """Poll every 5 ms; returns the monotonic time the file was first seen."""
    wait_for(path.exists, timeout=timeout, every=0.005)
    return time.monotonic()


def drop_latency(mode: str, count: int, spaced: bool = True) -> dict:
    """Drop clips one at a time; the latency after stability is seen - dropped - stable_for.

    Spaced drops wait 1 s plus a random part of a poll interval after the previous import, so
    polling is not phase-locked to the drops and the previous import's move of its original
    out of the inbox has been reported. Back-to-back drops follow each import at once.
    """
    jitter = random.Random(0)
    with running_daemon(mode) as run:
        latencies = []
        for path in stage_clips(run.staging, count):
            if spaced:
                time.sleep(SPACING + jitter.uniform(0, POLL_INTERVAL))
            dropped = time.monotonic()
            os.rename(path, run.inbox / path.name)
            latencies.append(wait_for_file(run.clips / path.name) - dropped - STABLE_FOR)
    return {
        "mode": mode,
        "spaced": spaced,
        "count": count,
        "p50_s": float(np.percentile(latencies, 50)),
        "p95_s": float(np.percentile(latencies, 95)),
        "max_s": max(latencies),
        "samples_s": latencies,
    }


def wav_names(folder: Path) -> list[str]:
    return [entry.name for entry in os.scandir(folder) if entry.name.endswith(".wav")]


def import_states(root: Path) -> dict[str, int]:
    """Import jobs by state, read from the ledger: status totals also count the transcribe jobs
    each import queues, which wait here since the temp root has no Whisper model."""
    ledger = Ledger(Root.at(root).ledger_file)
    try:
        return dict(Counter(job.state for job in ledger.jobs(kind=JobKind.IMPORT)))
    finally:
        ledger.close()


def imports_settled(root: Path) -> dict[str, int] | None:
    states = import_states(root)
    return states if not states.get("pending") and not states.get("running") else None


def burst(count: int) -> dict:
    """Rename `count` clips into the inbox at once; time until every one is imported."""
    with running_daemon("native") as run:
        staged = stage_clips(run.staging, count)
        run.clips.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for path in staged:
            os.rename(path, run.inbox / path.name)
        dropped = time.monotonic() - started
        wait_for(lambda: len(wav_names(run.clips)) >= count, timeout=1200, every=0.05)
        elapsed = time.monotonic() - started
        imports = wait_for(lambda: imports_settled(run.root), timeout=120, every=0.5)
        report = json.loads(voicedrop("status", "--json", "--root", str(run.root)))
        clips = wav_names(run.clips)
        originals = wav_names(run.root / "voices" / VOICE / "originals")
        left_in_inbox = [entry.name for entry in os.scandir(run.inbox)]
    expected = sorted(path.name for path in staged)
    return {
        "count": count,
        "drop_s": dropped,
        "all_imported_s": elapsed,
        "files_per_s": count / elapsed,
        "clips": len(clips),
        "originals": len(originals),
        "import_jobs": imports,
        "status_jobs": report["jobs"],
        "status_clips": report["voices"][VOICE]["clips"],
        "rejected": len(report["voices"][VOICE]["rejected"]),
        "left_in_inbox": len(left_in_inbox),
        "each_exactly_once": (
            sorted(clips) == sorted(originals) == expected
            and imports == {"done": count}
            and report["voices"][VOICE]["clips"] == count
        ),
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def idle_usage(seconds: float) -> dict:
    with running_daemon("native") as run:
        time.sleep(SETTLE_SECONDS)
        pid = run.process.pid
        rss, before, started = rss_mib(pid), cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
    return {
        "seconds": elapsed,
        "cpu_seconds": used,
        "cpu_percent": 100 * used / elapsed,
        "rss_mib": rss,
    }


def latency_row(label: str, latency: dict, target: str) -> tuple[str, str, str]:
    return (
        f"{label} (n={latency['count']})",
        f"p50 {latency['p50_s']:.3f} s, p95 {latency['p95_s']:.3f} s",
        target,
    )


def table(results: dict) -> str:
    burst_, idle = results["burst"], results["idle"]
    rows = [
        ("figure", "measured", "target"),
        latency_row("after stability, native", results["latency_native"], "<= 1 s"),
        latency_row(
            "after stability, native back-to-back", results["latency_native_b2b"], "<= 1 s"
        ),
        latency_row(f"after stability, poll {POLL_INTERVAL} s", results["latency_poll"], ""),
        (
            f"burst of {burst_['count']}: all imported",
            f"{burst_['all_imported_s']:.1f} s, {burst_['files_per_s']:.1f} files/s",
            "",
        ),
        (
            "burst: clips / originals / import jobs done",
            f"{burst_['clips']} / {burst_['originals']} / {burst_['import_jobs'].get('done', 0)}"
            f" (each once: {burst_['each_exactly_once']})",
            "all, none twice",
        ),
        (
            f"idle CPU over {idle['seconds']:.0f} s",
            f"{idle['cpu_percent']:.3f} % of one core",
            "~0 %",
        ),
        ("idle RSS", f"{idle['rss_mib']:.1f} MiB", ""),
    ]
    return text_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="10 drops per mode, a burst of 250, 30 s idle"
    )
    args = parser.parse_args(argv)
    drops, burst_count, idle_seconds = (10, 250, 30) if args.quick else (30, 1000, 60)
    started = time.monotonic()
    results = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "stable_for": STABLE_FOR,
            "poll_interval": POLL_INTERVAL,
            "clip_seconds": CLIP_SECONDS,
            "quick": args.quick,
        },
        "latency_native": drop_latency("native", drops),
        "latency_native_b2b": drop_latency("native", drops, spaced=False),
        "latency_poll": drop_latency("poll", drops),
        "burst": burst(burst_count),
        "idle": idle_usage(idle_seconds),
    }
    results["total_s"] = time.monotonic() - started
    print(table(results))
    print(f"total {results['total_s']:.0f} s")
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
