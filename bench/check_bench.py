"""Render check cost (issue 11) against the render's own, side by side in one run.

A temp root on the tiny model set (random weights at small dims) with voice `tom` (tortoise's
clips, imported by the real daemon) renders the same two-sentence text at the ultra_fast
preset with `render.check` off and on, alternating, `--rounds` times each. With the check
on, `render.retries` is 0 here so both sides render each chunk once: the difference is the
listening (Whisper + speaker encoder, `timings.check_seconds` in the sidecar). A third side
shows what the tiny set's babble costs with the default 2 retries (every chunk fails).

The render's cost per second of audio is the tiny set's; TorToiSe's released weights cost
far more per second on the same CPU, while the check's cost per second of audio does not
depend on the TTS model at all.

    python -m bench.check_bench [--rounds N]

Prints a table and writes bench/out/check.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import describe_machine, text_table
from bench.render_bench import TEXT, VOICE, make_root, render_file, write_text
from daemon.core.config import load_settings
from daemon.core.worker import StageContext
from daemon.stages.render import RenderStage

OUT_FILE = Path(__file__).with_name("out") / "check.json"
SIDES = {"off": (False, 0), "on": (True, 0), "on, 2 retries": (True, 2)}


def stage_with(root, check: bool, retries: int) -> RenderStage:
    settings = load_settings(root.config_file)
    rules = dataclasses.replace(settings.render, check=check, retries=retries)
    return RenderStage(StageContext(root, dataclasses.replace(settings, render=rules)))


def one_render(stage: RenderStage, scratch: Path, name: str) -> dict[str, float]:
    text = write_text(scratch / f"{name}.txt", TEXT)
    seconds, sidecar = render_file(stage, VOICE, text, scratch / f"{name}.wav")
    audio = sidecar["audio_seconds"]
    check = sidecar["timings"]["check_seconds"] or 0.0
    return {
        "wall_seconds": seconds,
        "audio_seconds": audio,
        "check_seconds": check,
        "render_per_audio_second": (seconds - check) / audio,
        "check_per_audio_second": check / audio,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="voicedrop-check-bench-") as base:
        root = make_root(Path(base))
        whisper = Path(__file__).resolve().parents[1] / "models" / "whisper-base"
        config = root.config_file.read_text(encoding="utf-8")
        root.config_file.write_text(config + f"whisper:\n  model: {whisper}\n", encoding="utf-8")
        stages = {side: stage_with(root, *values) for side, values in SIDES.items()}
        for side, stage in stages.items():  # warm: models loaded, latents cached
            one_render(stage, Path(base), f"warm-{side.replace(' ', '')}")
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
        for round_ in range(args.rounds):
            order = list(SIDES) if round_ % 2 == 0 else list(reversed(SIDES))
            for side in order:
                name = f"r{round_}-{side.replace(' ', '').replace(',', '')}"
                runs[side].append(one_render(stages[side], Path(base), name))
    medians = {
        side: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for side, rows in runs.items()
    }
    on = medians["on"]
    ratio = on["check_per_audio_second"] / on["render_per_audio_second"]
    rows = [("side", "wall s", "audio s", "render s/audio s", "check s/audio s")]
    rows += [
        (
            side,
            f"{m['wall_seconds']:.2f}",
            f"{m['audio_seconds']:.2f}",
            f"{m['render_per_audio_second']:.2f}",
            f"{m['check_per_audio_second']:.3f}",
        )
        for side, m in medians.items()
    ]
    print(text_table(rows))
    print(f"check / render (tiny set, per second of audio): {ratio:.2f}")
    OUT_FILE.parent.mkdir(exist_ok=True)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "rounds": args.rounds,
        "medians": medians,
        "check_over_render_tiny": ratio,
        "runs": runs,
    }
    OUT_FILE.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
