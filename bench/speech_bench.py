"""Serving benchmark (issue 13) on the tiny model set, side by side in one run.

A temp root gets the tiny model set (the real TorToiSe classes at small dimensions) and voice
tom's clips, imported by the real daemon; `voicedrop run` then serves it on a free port.

1. A 3-sentence request over the API (the real `openai` client, streamed as pcm): time to
   the first audio byte and to the last, against `voicedrop render` of the same text (its
   own process: imports, model load, render) and the render inside that process (the
   sidecar's total). The chunk cache is emptied before each, so every side renders.
2. While a file render runs in the daemon: requests per second that /api/status and
   /metrics sustain, and the render's speed against the same render alone, under the
   page's load (the page polls /api/status every 2 s, Prometheus scrapes every 5 s: here
   both once a second) and under clients asking as fast as they can.

    python -m bench.speech_bench [--quick]

Prints tables and writes bench/out/speech.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import openai

from bench.common import describe_machine, text_table
from bench.render_bench import make_root
from daemon.core.paths import Root
from tests.conftest import SENTENCES, DaemonProcess, configure, voicedrop, wait_for
from tests.serve.conftest import free_port

VOICE = "tom"
OUT_FILE = Path(__file__).parent / "out" / "speech.json"
REQUEST = " ".join(SENTENCES[:3])
BOOK = " ".join(SENTENCES)  # six chunks: the file render measured under load
LOADS = ("alone", "page", "saturated")
SATURATING_CLIENTS = 4
TARGET_SLOWDOWN = 0.05


def serve_root(root: Root, port: int) -> None:
    settings = json.loads(json.dumps(load_config(root)))
    settings["serve"] = {"enabled": True, "port": port}
    configure(root.path, settings)


def load_config(root: Root) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(root.config_file.read_text(encoding="utf-8"))


def empty_cache(root: Root) -> None:
    shutil.rmtree(root.chunk_cache, ignore_errors=True)


def api_request(client: openai.OpenAI, root: Root) -> dict[str, float]:
    """Seconds to the first byte and to the last of the 3-sentence request."""
    empty_cache(root)
    started = time.monotonic()
    first = None
    size = 0
    with client.audio.speech.with_streaming_response.create(
        model="ultra_fast", voice=VOICE, input=REQUEST, response_format="pcm"
    ) as response:
        for data in response.iter_bytes():
            first = first if first is not None else time.monotonic() - started
            size += len(data)
    assert first is not None and size > 0
    return {"first_byte": first, "last_byte": time.monotonic() - started}


def cli_render(root: Root, scratch: Path) -> dict[str, float]:
    """`voicedrop render` of the same text: the process's wall time and its render's own."""
    empty_cache(root)
    output = scratch / "cli.wav"
    started = time.monotonic()
    voicedrop("render", VOICE, REQUEST, "--root", str(root.path), "-o", str(output))
    wall = time.monotonic() - started
    sidecar = json.loads(output.with_suffix(".json").read_text(encoding="utf-8"))
    return {"process": wall, "render": sidecar["timings"]["total_seconds"]}


class Load:
    """Clients asking for /api/status and /metrics in threads: `every` seconds apart per
    client, or as fast as they can (every=0)."""

    def __init__(self, url: str, clients: int, every: float) -> None:
        self.url, self.clients, self.every = url, clients, every
        self.stop = threading.Event()
        self.done = {"/api/status": 0, "/metrics": 0}
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.ask, args=(path,), daemon=True)
            for path in self.done
            for _ in range(clients)
        ]

    def ask(self, path: str) -> None:
        while not self.stop.is_set():
            with urllib.request.urlopen(f"{self.url}{path}", timeout=60) as response:
                response.read()
            with self.lock:
                self.done[path] += 1
            if self.every:
                self.stop.wait(self.every)

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.seconds = time.monotonic() - self.started
        for thread in self.threads:
            thread.join()

    def rates(self) -> dict[str, float]:
        return {path: count / self.seconds for path, count in self.done.items()}


def file_render(root: Root, name: str) -> float:
    """Seconds the daemon's render of BOOK took (the sidecar's own total)."""
    empty_cache(root)
    text = root.outbox / VOICE / f"{name}.txt"
    text.write_text(BOOK + "\n", encoding="utf-8")
    sidecar = text.with_suffix(".json")
    wait_for(sidecar.exists, timeout=1800, every=0.05)
    return json.loads(sidecar.read_text(encoding="utf-8"))["timings"]["total_seconds"]


def render_under(root: Root, url: str, load: str, name: str) -> dict[str, Any]:
    if load == "alone":
        return {"render": file_render(root, name)}
    clients, every = (1, 1.0) if load == "page" else (SATURATING_CLIENTS // 2, 0.0)
    with Load(url, clients, every) as running:
        seconds = file_render(root, name)
    return {"render": seconds, "rps": running.rates()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    args = parser.parse_args()
    rounds = 2 if args.quick else 5
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="voicedrop-speech-bench-") as base:
        root = make_root(Path(base))
        port = free_port()
        serve_root(root, port)
        url = f"http://127.0.0.1:{port}"
        daemon = DaemonProcess(root.path, Path(base) / "daemon.log").start()
        try:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0, timeout=1800)
            api_request(client, root)  # warm: the engine loads, the latents are computed
            speech = {"api": [], "cli": []}
            renders: dict[str, list[dict[str, Any]]] = {load: [] for load in LOADS}
            for number in range(rounds):
                speech["api"].append(api_request(client, root))
                speech["cli"].append(cli_render(root, Path(base)))
                order = LOADS if number % 2 == 0 else tuple(reversed(LOADS))
                for load in order:
                    renders[load].append(render_under(root, url, load, f"{load}-{number}"))
        finally:
            daemon.stop()
    result = summarise(speech, renders, rounds, machine)
    print_tables(result)
    OUT_FILE.parent.mkdir(exist_ok=True)
    OUT_FILE.write_text(json.dumps(result, indent=2), encoding="utf-8")
    worst = max(result["render_slowdown"]["page"], 0.0)
    if worst > TARGET_SLOWDOWN:
        print(f"the page's load slowed the render by {worst:.1%} (target {TARGET_SLOWDOWN:.0%})")
        return 1
    return 0


def median_of(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def summarise(
    speech: dict[str, list[dict[str, float]]],
    renders: dict[str, list[dict[str, Any]]],
    rounds: int,
    machine: dict[str, Any],
) -> dict[str, Any]:
    alone = median_of(renders["alone"], "render")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "rounds": rounds,
        "request": REQUEST,
        "median_seconds": {
            "api_first_byte": median_of(speech["api"], "first_byte"),
            "api_last_byte": median_of(speech["api"], "last_byte"),
            "cli_process": median_of(speech["cli"], "process"),
            "cli_render": median_of(speech["cli"], "render"),
        },
        "render_seconds": {load: median_of(renders[load], "render") for load in LOADS},
        "render_slowdown": {load: median_of(renders[load], "render") / alone - 1 for load in LOADS},
        "rps": {
            load: {
                path: statistics.median(sample["rps"][path] for sample in renders[load])
                for path in ("/api/status", "/metrics")
            }
            for load in LOADS[1:]
        },
        "samples": {"speech": speech, "renders": renders},
    }


def print_tables(result: dict[str, Any]) -> None:
    seconds = {key: f"{value:.2f}" for key, value in result["median_seconds"].items()}
    print(f"3-sentence request, median of {result['rounds']} rounds (s)")
    print(
        text_table(
            [
                ("side", "first audio", "all audio"),
                ("API, streamed", seconds["api_first_byte"], seconds["api_last_byte"]),
                ("voicedrop render (process)", "-", seconds["cli_process"]),
                ("voicedrop render (its render)", "-", seconds["cli_render"]),
            ]
        )
    )
    rows = [("load", "render s", "slowdown", "/api/status rps", "/metrics rps")]
    for load in LOADS:
        rps = result["rps"].get(load, {})
        rows.append(
            (
                load,
                f"{result['render_seconds'][load]:.2f}",
                f"{result['render_slowdown'][load]:+.1%}",
                f"{rps['/api/status']:.1f}" if rps else "-",
                f"{rps['/metrics']:.1f}" if rps else "-",
            )
        )
    print(f"\nA {len(SENTENCES)}-sentence file render in the daemon while clients ask")
    print(text_table(rows))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
