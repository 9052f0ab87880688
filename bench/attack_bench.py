"""The attack corpus against the real daemon: wall time and the daemon's peak memory (issue 10).

Each round makes a fresh root, starts `python -m daemon run` on it, drops the corpus from
tests/faults/corpus.py (hostile names, an empty, a damaged, a cut-short and a 1.2 GB sparse
clip, a YAML alias bomb, a 228,000-character book, emoji, inf, a huge seed, colliding and
over-long names, UTF-16 and binary texts), kills the daemon with -9 after `--kill-after`
seconds, starts it again and waits until every clip has left the inbox and no job is left
to run. It reports the time from the drop to that point and the peak RSS (VmHWM) of each
daemon process, and checks the invariants the fault-injection test checks.

    python -m bench.attack_bench [--quick]

Prints a table and writes bench/out/attack.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import describe_machine, text_table
from tests.conftest import DaemonProcess, wait_for
from tests.faults import corpus

OUT_FILE = Path(__file__).with_name("out") / "attack.json"
SETTINGS = {"watch": {"stable_for": 0.5}, "tts": {"fetch": "never"}, "whisper": {"model": "absent"}}


def one_round(base: Path, kill_after: float) -> dict[str, float]:
    root = base / "root"
    subprocess.run(
        [sys.executable, "-m", "daemon", "init", str(root)], check=True, capture_output=True
    )
    (root / "config.yaml").write_text(yaml.safe_dump(SETTINGS), encoding="utf-8")
    first = DaemonProcess(root, base / "first.log").start()
    started = time.monotonic()
    dropped, texts = corpus.drop(root, base / "staging")
    time.sleep(kill_after)
    first_peak = corpus.peak_rss_mib(first.process.pid)
    first.kill()
    second = DaemonProcess(root, base / "second.log").start()
    wait_for(lambda: corpus.settled(root), timeout=300, every=0.5)
    seconds = time.monotonic() - started
    second_peak = corpus.peak_rss_mib(second.process.pid)
    assert second.stop() == 0
    assert corpus.kept_clips(root) == dropped, "a dropped clip was lost or doubled"
    assert {p: p.read_bytes() for p in texts} == texts, "a text was changed"
    assert corpus.temp_files(root) == [], "temp files were left"
    return {"seconds": seconds, "peak_rss_mib": max(first_peak, second_peak)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--kill-after", type=float, default=1.5, help="seconds after the drop")
    args = parser.parse_args(argv)
    rounds = []
    for _ in range(2 if args.quick else 5):
        with tempfile.TemporaryDirectory(prefix="voicedrop-attack-bench-") as tmp:
            rounds.append(one_round(Path(tmp), args.kill_after))
    seconds = [r["seconds"] for r in rounds]
    peaks = [r["peak_rss_mib"] for r in rounds]
    results = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "kill_after_s": args.kill_after,
        "rounds": rounds,
        "median_seconds": statistics.median(seconds),
        "max_peak_rss_mib": max(peaks),
    }
    spread = f"min {min(seconds):.1f}, max {max(seconds):.1f}"
    rows = [
        ("figure", "measured", "target"),
        ("drop to settled, kill -9 included", f"{statistics.median(seconds):.1f} s ({spread})", ""),
        ("daemon peak RSS (VmHWM)", f"max {max(peaks):.0f} MiB", "< 1024 MiB"),
        ("invariants held (rounds)", f"{len(rounds)}/{len(rounds)}", "all"),
    ]
    print(text_table(rows))
    OUT_FILE.parent.mkdir(exist_ok=True)
    OUT_FILE.write_text(json.dumps(results, indent=1))
    print(f"wrote {OUT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
