"""Wyoming benchmark (issue 13): `wyoming-bench` (a third-party benchmark for Wyoming TTS
servers) against the daemon's Wyoming server, on the tiny model set.

A temp root gets the tiny model set and voice tom's clips, imported by the real daemon;
`voicedrop run` then serves Wyoming on a free port with serve.wyoming_model as given (tts-1:
ultra_fast with HiFi-GAN, what Home Assistant gets by default; ultra_fast: the diffusion
path). wyoming-bench sends the 3-sentence request of bench/speech_bench.py whole
(`synthesize`) and in pieces (the streaming protocol), cold-cache (a nonce each time), and
reports time to first audio and to the end. Its report is printed and kept in
bench/out/wyoming-<model>.txt.

    python -m bench.wyoming_bench [--quick] [--model tts-1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import describe_machine
from bench.render_bench import make_root
from bench.speech_bench import REQUEST, VOICE, load_config
from daemon.tts.generation import SPEECH_MODELS
from tests.conftest import DaemonProcess, configure
from tests.serve.conftest import free_port

OUT = Path(__file__).parent / "out"
WYOMING_BENCH = Path(sys.executable).with_name("wyoming-bench")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--model", default="tts-1", choices=list(SPEECH_MODELS))
    args = parser.parse_args()
    rounds = 2 if args.quick else 5
    print(json.dumps(describe_machine()))
    with tempfile.TemporaryDirectory(prefix="voicedrop-wyoming-bench-") as base:
        root = make_root(Path(base))
        port = free_port()
        settings = load_config(root)
        settings["serve"] = {
            "enabled": True,
            "port": free_port(),
            "wyoming_port": port,
            "wyoming_model": args.model,
        }
        configure(root.path, settings)
        daemon = DaemonProcess(root.path, Path(base) / "daemon.log").start()
        try:
            report = run_bench(port, rounds)
        finally:
            daemon.stop()
    print(report)
    OUT.mkdir(exist_ok=True)
    (OUT / f"wyoming-{args.model}.txt").write_text(report, encoding="utf-8")
    return 0


def run_bench(port: int, rounds: int) -> str:
    server = f"127.0.0.1:{port}"
    info = subprocess.run(
        [WYOMING_BENCH, "info", server], capture_output=True, text=True, check=True, timeout=60
    )
    bench = subprocess.run(
        [
            WYOMING_BENCH,
            "tts",
            server,
            "--mode",
            "both",
            "--texts",
            REQUEST,
            "--config",
            json.dumps({"voice": VOICE}),
            "--rounds",
            str(rounds),
            "--warmup",
            "1",
            "--timeout",
            "600",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    return f"$ wyoming-bench info {server}\n{info.stdout}\n$ wyoming-bench tts ...\n{bench.stdout}"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
