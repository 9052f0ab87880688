"""Fetch benchmark (issue 8): `voicedrop models fetch`'s download loop against plain `curl`,
the same files from the same local stand-in for the Hugging Face Hub (tests.conftest's
HubStandIn, serving with sendfile), side by side in one run.

Random files (no real weights here) stand in for the released checkpoints. Each repeat runs
both sides on every file, alternating which goes first; the fetch side does everything a
real fetch does (HEAD for the sha256, streamed download, sha256 while writing, fsync,
checks, rename into place), curl only downloads (`-L -o`, following the hub's redirect).
Between downloads (untimed) `sync` writes back what the last one left in the page cache, so
neither side pays for the other's writes; a first round warms up and is not counted.

    python -m bench.fetch_bench [--mb 400] [--files 4] [--repeats 3]

Prints a table and writes bench/out/fetch.json. Target: fetch at least 0.9x curl's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import describe_machine, text_table
from daemon.weights.fetch import Release, fetch_file
from tests.conftest import HubStandIn

OUT_FILE = Path(__file__).with_name("out") / "fetch.json"
REPO = "bench/stand-in"
TARGET = 0.9


def make_files(folder: Path, count: int, total_mb: int) -> dict[tuple[str, str, str], Path]:
    files = {}
    for index in range(count):
        path = folder / f"weights-{index}.pth"
        with open(path, "wb") as out:
            for _ in range(total_mb // count):
                out.write(os.urandom(1 << 20))
        files[(REPO, "main", path.name)] = path
    return files


def time_fetch(target: Path, name: str) -> float:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    started = time.perf_counter()
    fetch_file(target, Release(name, REPO, name, "main"))
    return time.perf_counter() - started


def time_curl(target: Path, url: str) -> float:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "-L", "-o", str(target / "file"), url], check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=400, help="total size of the files (MB)")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()  # progress lines are not what is measured
    with tempfile.TemporaryDirectory(prefix="voicedrop-fetch-bench-") as scratch:
        scratch_dir = Path(scratch)
        (scratch_dir / "served").mkdir()
        files = make_files(scratch_dir / "served", args.files, args.mb)
        total = sum(path.stat().st_size for path in files.values())
        times: dict[str, list[float]] = {"fetch": [], "curl": []}
        with HubStandIn(files) as hub:
            os.environ["HF_ENDPOINT"] = hub.url
            os.sync()
            for repeat in range(-1, args.repeats):  # repeat -1 warms up and is not kept
                order = ("fetch", "curl") if repeat % 2 == 0 else ("curl", "fetch")
                for side in order:
                    seconds = 0.0
                    for _, _, name in files:
                        target = scratch_dir / side
                        if side == "fetch":
                            seconds += time_fetch(target, name)
                        else:
                            seconds += time_curl(target, f"{hub.url}/{REPO}/resolve/main/{name}")
                        os.sync()  # no write-back of one side lands in the other's time
                    if repeat >= 0:
                        times[side].append(seconds)
        shutil.rmtree(scratch_dir / "fetch", ignore_errors=True)
    rates = {side: total / statistics.median(values) / 1e6 for side, values in times.items()}
    ratio = rates["fetch"] / rates["curl"]
    results = {
        "machine": describe_machine(curl=curl_version()),
        "bytes": total,
        "files": args.files,
        "seconds": times,
        "median_mb_per_s": rates,
        "ratio": ratio,
        "target": TARGET,
    }
    print(
        text_table(
            [
                ("side", "median MB/s", "seconds per repeat"),
                *(
                    (side, f"{rates[side]:.0f}", ", ".join(f"{s:.2f}" for s in times[side]))
                    for side in ("fetch", "curl")
                ),
            ]
        )
    )
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"\nfetch / curl throughput: {ratio:.2f}x ({verdict} the {TARGET}x target)")
    OUT_FILE.parent.mkdir(exist_ok=True)
    OUT_FILE.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def curl_version() -> str:
    return subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[1]


if __name__ == "__main__":
    raise SystemExit(main())
