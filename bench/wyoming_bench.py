"""Wyoming benchmark (issue 13) on the tiny model set, side by side in one run.

A temp root gets the tiny model set and voice tom's clips, imported by the real daemon;
`voicedrop run` then serves HTTP and Wyoming on free ports, with serve.wyoming_model as given
(tts-1: ultra_fast with HiFi-GAN, what Home Assistant gets by default) and the tests'
tts.max_mel_tokens (46 codes a sentence: random weights never stop).

1. `wyoming-bench` (a third-party benchmark for Wyoming TTS servers) on the 3-sentence
   request of bench/speech_bench.py, whole (`synthesize`) and in pieces (the streaming
   protocol). Its nonce goes at the end of the text, so only the last sentence is rendered
   afresh: its time to first audio is that of a cached first sentence.
2. Cold: the chunk cache emptied before each request, the same request over Wyoming
   (whole and streamed, measured with wyoming-bench's own client) and over the OpenAI
   endpoint (pcm, the `openai` client): time to first audio and to the end, side by side.

    python -m bench.wyoming_bench [--quick] [--model tts-1]

Prints tables and the wyoming-bench report; writes bench/out/wyoming-<model>.json and .txt.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
from wyoming.tts import SynthesizeVoice
from wyoming_bench.tts.client import measure_once

from bench.common import describe_machine, text_table
from bench.render_bench import make_root
from bench.speech_bench import REQUEST, VOICE, empty_cache, load_config
from daemon.core.paths import Root
from daemon.tts.generation import SPEECH_MODELS
from tests.conftest import DaemonProcess, configure
from tests.serve.conftest import free_port

OUT = Path(__file__).parent / "out"
WYOMING_BENCH = Path(sys.executable).with_name("wyoming-bench")
SIDES = ("wyoming synthesize", "wyoming streaming", "OpenAI API (pcm)")
TIMEOUT = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--model", default="tts-1", choices=list(SPEECH_MODELS))
    args = parser.parse_args()
    rounds = 2 if args.quick else 5
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="voicedrop-wyoming-bench-") as base:
        root = make_root(Path(base))
        http, wyoming = free_port(), free_port()
        settings = load_config(root)
        serving = {"port": http, "wyoming_port": wyoming, "wyoming_model": args.model}
        settings["serve"] = {"enabled": True, **serving}
        configure(root.path, settings)
        daemon = DaemonProcess(root.path, Path(base) / "daemon.log").start()
        try:
            report = third_party_report(wyoming, rounds)
            cold = cold_rounds(root, wyoming, f"http://127.0.0.1:{http}", args.model, rounds)
        finally:
            daemon.stop()
    result = summarise(cold, args.model, rounds, machine)
    print(report)
    print_table(result)
    OUT.mkdir(exist_ok=True)
    (OUT / f"wyoming-{args.model}.txt").write_text(report, encoding="utf-8")
    (OUT / f"wyoming-{args.model}.json").write_text(json.dumps(result, indent=2), "utf-8")
    return 0


def third_party_report(port: int, rounds: int) -> str:
    server = f"127.0.0.1:{port}"
    arguments = ("--mode", "both", "--texts", REQUEST, "--config", json.dumps({"voice": VOICE}))
    timing = ("--rounds", str(rounds), "--warmup", "1", "--timeout", str(TIMEOUT))
    runs = [("info", server), ("tts", server, *arguments, *timing)]
    outputs = []
    for command in runs:
        done = subprocess.run(
            [WYOMING_BENCH, *command], capture_output=True, text=True, check=True, timeout=3600
        )
        outputs.append(f"$ wyoming-bench {command[0]} {server} ...\n{done.stdout}")
    return "\n".join(outputs)


def cold_rounds(
    root: Root, port: int, url: str, model: str, rounds: int
) -> dict[str, list[dict[str, float]]]:
    """Each side once a round, in turn, each after the chunk cache was emptied."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0, timeout=TIMEOUT)
    samples: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for number in range(rounds):
        order = SIDES if number % 2 == 0 else tuple(reversed(SIDES))
        for side in order:
            empty_cache(root)
            if side == "OpenAI API (pcm)":
                samples[side].append(api_request(client, model))
            else:
                mode = "streaming" if side == "wyoming streaming" else "non_streaming"
                samples[side].append(wyoming_request(port, mode))
    return samples


def wyoming_request(port: int, mode: str) -> dict[str, float]:
    measured = asyncio.run(
        measure_once(
            "127.0.0.1", port, mode, REQUEST, SynthesizeVoice(name=VOICE), None, 30, TIMEOUT
        )
    )
    if not measured.ok:
        raise RuntimeError(f"wyoming {mode}: {measured.error}")
    assert measured.t_first is not None and measured.t_end is not None
    return {
        "first_audio": measured.t_first - measured.t_sent,
        "end": measured.t_end - measured.t_sent,
        "audio_seconds": measured.audio_duration_s,
    }


def api_request(client: openai.OpenAI, model: str) -> dict[str, float]:
    started = time.perf_counter()
    first, size = None, 0
    with client.audio.speech.with_streaming_response.create(
        model=model, voice=VOICE, input=REQUEST, response_format="pcm"
    ) as response:
        for data in response.iter_bytes():
            first = first if first is not None else time.perf_counter() - started
            size += len(data)
    assert first is not None
    end = time.perf_counter() - started
    return {"first_audio": first, "end": end, "audio_seconds": size / 2 / 24000}


def summarise(
    cold: dict[str, list[dict[str, float]]], model: str, rounds: int, machine: dict
) -> dict:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "model": model,
        "rounds": rounds,
        "request": REQUEST,
        "median_seconds": {
            side: {
                key: statistics.median(sample[key] for sample in samples)
                for key in ("first_audio", "end", "audio_seconds")
            }
            for side, samples in cold.items()
        },
        "samples": cold,
    }


def print_table(result: dict) -> None:
    rows = [("side (cold cache)", "first audio s", "all audio s", "audio s")]
    for side, median in result["median_seconds"].items():
        rows.append(
            (
                side,
                f"{median['first_audio']:.2f}",
                f"{median['end']:.2f}",
                f"{median['audio_seconds']:.2f}",
            )
        )
    print(f"\n3-sentence request, {result['model']}, median of {result['rounds']} rounds")
    print(text_table(rows))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
