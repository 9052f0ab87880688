"""Rendering benchmark (issue 4) on the tiny model set, side by side in one run.

A temp root gets the tiny model set (`daemon.tts.tiny.write_tiny_models`: the real TorToiSe
classes at small dimensions, loaded strictly from disk) and two voices whose tortoise-tts clips
are imported by the real daemon. Texts use the ultra_fast preset (16 candidates, 30 diffusion
steps), seed 0.

1. Engine overhead: `Engine.render` against the same loaded modules called directly in the
   order tortoise's api.py calls them (inference_speech sampling, CLVP ranking, the AR forward
   with return_latent, do_spectrogram_diffusion's p_sample_loop, the vocoder), on the same
   latents, text tokens, seed and settings; also the whole `Renderer.render` (latents cache,
   chunking, WAV and sidecar). Sides alternate order; medians; the audio must be identical.
2. First against second render of a voice through one `Renderer`: latents computed, then
   cached (the sidecar's latents_seconds), plus a cold first render (the first of this process).
3. N short texts rendered by one `voicedrop run --until-idle` against N `voicedrop render`
   processes (each pays imports, model load, latents load and the first-inference warm-up).

    python -m bench.render_bench [--quick]

Prints a table and writes bench/out/render.json.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

THREADS = os.cpu_count() or 1
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # the same for every child process

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from loguru import logger  # noqa: E402

from bench.common import describe_machine, text_table  # noqa: E402
from daemon.core.config import load_settings  # noqa: E402
from daemon.core.files import file_sha256  # noqa: E402
from daemon.core.paths import Root  # noqa: E402
from daemon.core.worker import StageContext  # noqa: E402
from daemon.stages.render import RenderStage  # noqa: E402
from daemon.tts.engine import (  # noqa: E402
    CALM_RUN,
    CALM_TOKEN,
    CPU_BATCH,
    Engine,
    GenerationSettings,
    Latents,
)
from daemon.tts.spec import AUTOREGRESSIVE_FILE, CLVP_FILE, DIFFUSION_FILE, VOCODER_FILE  # noqa: E402
from daemon.tts.tiny import write_tiny_models  # noqa: E402
from tests.conftest import (  # noqa: E402
    SENTENCES,
    TEST_SETTINGS,
    configure,
    imported_clips,
    run_until_idle,
    tortoise_clips,
    voicedrop,
)

VOICE = "tom"
COLD_VOICE = "train_dotrice"
PRESET = "ultra_fast"
TEXT = f"{SENTENCES[0]} {SENTENCES[1]}"  # two sentences, one chunk of the tiny model
TARGET_OVERHEAD = 0.05
QUIET_CORES = 0.1  # a repeat counts as quiet when other programs kept < 0.1 cores busy
MIN_QUIET_REPEATS = 5  # fewer quiet repeats than this: the medians use every repeat
QUIET_WAIT = 120.0  # the most seconds to wait for a quiet machine before each part
OUT_FILE = Path(__file__).with_name("out") / "render.json"


@dataclass(frozen=True)
class Modules:
    """The engine's loaded modules, called directly by the plain side."""

    autoregressive: torch.nn.Module
    clvp: torch.nn.Module
    diffusion: torch.nn.Module
    vocoder: torch.nn.Module
    max_mel_tokens: int


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def wait_until_quiet(timeout: float = QUIET_WAIT) -> float:
    """Wait (at most `timeout`) for a second in which other programs kept < QUIET_CORES busy:
    on 2 cores one busy neighbour slows the renders many times over. Returns seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        machine, own = machine_busy_seconds(), own_seconds()
        time.sleep(1.0)
        if machine_busy_seconds() - machine - (own_seconds() - own) < QUIET_CORES:
            break
    return time.monotonic() - started


def measured_part(action: Any, *args: Any) -> tuple[Any, dict[str, float]]:
    """Run one part; also how much CPU other programs took meanwhile (the noise)."""
    wall, machine, own = time.monotonic(), machine_busy_seconds(), own_seconds()
    value = action(*args)
    wall = time.monotonic() - wall
    other = max(0.0, machine_busy_seconds() - machine - (own_seconds() - own))
    return value, {"wall_seconds": wall, "other_cpu_seconds": other, "other_cores": other / wall}


def make_root(base: Path) -> Root:
    """A root on the tiny models whose voices have imported clips (by the real daemon)."""
    models = base / "models"
    write_tiny_models(models)
    path = base / "root"
    voicedrop("init", str(path))
    tts = {"models_dir": str(models), "device": "cpu", "preset": PRESET}
    configure(path, {"tts": tts, "logging": {"level": "INFO"}})
    for voice in (VOICE, COLD_VOICE):
        (path / "inbox" / voice).mkdir(parents=True)
        for clip in tortoise_clips(voice):
            shutil.copy(clip, path / "inbox" / voice / clip.name)
    run_until_idle(path)
    for voice in (VOICE, COLD_VOICE):
        assert len(imported_clips(path, voice)) == len(tortoise_clips(voice)), voice
    (path / "outbox" / VOICE).mkdir(parents=True, exist_ok=True)
    return Root.at(path)


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def render_file(stage: RenderStage, voice: str, text: Path, output: Path) -> tuple[float, dict]:
    """What `voicedrop render VOICE --file TEXT -o OUTPUT` does, in this process."""
    started = time.perf_counter()
    paths = stage.root.voice(voice)
    body, settings, tts = stage.prepare(paths, text)
    stage.renderer.check_ready(paths, tts, settings.decoder)
    sidecar = stage.renderer.render(paths, body, settings, tts, output, file_sha256(text))
    return time.perf_counter() - started, sidecar


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- 2. first and second render of a voice ------------------------------------------------


def first_and_second(stage: RenderStage, scratch: Path) -> dict[str, Any]:
    """A cold render (the process's first: imports, model load, latents, first inference;
    torch and the model classes are imported already), then the first and the second render
    of another voice with the same text on the warm engine."""
    text = write_text(scratch / "part2" / "line.txt", TEXT)
    runs = {}
    for label, voice, name in (
        ("cold_first", COLD_VOICE, "cold.wav"),
        ("first", VOICE, "first.wav"),
        ("second", VOICE, "second.wav"),
    ):
        seconds, sidecar = render_file(stage, voice, text, scratch / "part2" / name)
        runs[label] = {
            "voice": voice,
            "wall_seconds": seconds,
            "total_seconds": sidecar["timings"]["total_seconds"],
            "latents_seconds": sidecar["timings"]["latents_seconds"],
            "latents": sidecar["latents"],
            "chunks": sidecar["chunks"],
            "audio_seconds": sidecar["audio_seconds"],
            "settings": sidecar["settings"],
        }
    first, second = scratch / "part2" / "first.wav", scratch / "part2" / "second.wav"
    return {
        **runs,
        "second_reused_latents": runs["second"]["latents_seconds"] == 0
        and runs["second"]["latents"] == runs["first"]["latents"],
        "same_audio": sha256(first) == sha256(second),
        "latent_files": len(list(stage.root.voice(VOICE).latents.glob("*.pth"))),
    }


# -- 1. engine overhead -------------------------------------------------------------------


def modules_of(engine: Engine, settings: GenerationSettings) -> Modules:
    loaded = {name: held[1] for name, held in engine._models.items()}
    return Modules(
        autoregressive=loaded[AUTOREGRESSIVE_FILE],
        clvp=loaded[CLVP_FILE],
        diffusion=loaded[DIFFUSION_FILE],
        vocoder=loaded[VOCODER_FILE],
        max_mel_tokens=engine.generation_length(settings),
    )


def text_tokens(text: str) -> torch.Tensor:
    """api.py's text tokens: the tokenizer's ids plus one trailing pad."""
    from tortoise.utils.tokenizer import VoiceBpeTokenizer

    return F.pad(torch.IntTensor(VoiceBpeTokenizer().encode(text)).unsqueeze(0), (0, 1))


def direct_render(
    m: Modules, tokens: torch.Tensor, latents: Latents, s: GenerationSettings
) -> np.ndarray:
    """TextToSpeech.tts from tortoise's api.py on already loaded modules (no device moves,
    printing or progress bars), k=1, CPU_BATCH candidates per AR pass as the engine uses."""
    from tortoise.api import (
        do_spectrogram_diffusion,
        fix_autoregressive_output,
        load_discrete_vocoder_diffuser,
    )

    torch.manual_seed(s.seed)
    random.seed(s.seed)
    auto_conditioning, diffusion_conditioning = latents.autoregressive, latents.diffusion
    diffuser = load_discrete_vocoder_diffuser(
        desired_diffusion_steps=s.diffusion_iterations,
        cond_free=s.cond_free,
        cond_free_k=s.cond_free_k,
    )
    ar, stop = m.autoregressive, m.autoregressive.stop_mel_token
    with torch.no_grad():
        samples = []
        for _ in range(s.candidates // CPU_BATCH):
            codes = ar.inference_speech(
                auto_conditioning,
                tokens,
                do_sample=True,
                top_p=s.top_p,
                temperature=s.temperature,
                num_return_sequences=CPU_BATCH,
                length_penalty=s.length_penalty,
                repetition_penalty=s.repetition_penalty,
                max_generate_length=m.max_mel_tokens,
            )
            samples.append(F.pad(codes, (0, m.max_mel_tokens - codes.shape[1]), value=stop))
        clip_results = []
        for batch in samples:
            for i in range(batch.shape[0]):
                batch[i] = fix_autoregressive_output(batch[i], stop, complain=False)
            clip_results.append(m.clvp(tokens.repeat(batch.shape[0], 1), batch, return_loss=False))
        best = torch.cat(samples)[torch.topk(torch.cat(clip_results), k=1).indices]
        speech = ar(
            auto_conditioning,
            tokens,
            torch.tensor([tokens.shape[-1]]),
            best,
            torch.tensor([best.shape[-1] * ar.mel_length_compression]),
            return_latent=True,
            clip_inputs=False,
        )
        calm = 0
        for k in range(best.shape[-1]):
            calm = calm + 1 if best[0, k] == CALM_TOKEN else 0
            if calm > CALM_RUN:
                speech = speech[:, :k]
                break
        mel = do_spectrogram_diffusion(
            m.diffusion,
            diffuser,
            speech,
            diffusion_conditioning,
            temperature=s.diffusion_temperature,
            verbose=False,
        )
        wav = m.vocoder.inference(mel)
    return wav.squeeze().cpu().numpy()


def overhead(stage: RenderStage, scratch: Path, repeats: int) -> dict[str, Any]:
    """Engine.render, the plain module calls and Renderer.render on one text, in rotating
    order after one untimed call each; medians and per-repeat ratios against plain."""
    engine = stage.renderer.engine
    assert engine is not None and engine.loaded
    voice = stage.root.voice(VOICE)
    (latent_file,) = voice.latents.glob("*.pth")
    latents = Latents.load(latent_file)
    mel_tokens = TEST_SETTINGS["tts"]["max_mel_tokens"]  # what the root's config.yaml sets
    settings = GenerationSettings(preset=PRESET, seed=0, max_mel_tokens=mel_tokens)
    assert settings.candidates % CPU_BATCH == 0, settings
    modules = modules_of(engine, settings)
    tokens = text_tokens(TEXT)
    assert torch.equal(tokens, engine._text_tokens(TEXT)), "the text tokens differ"
    text = write_text(scratch / "part1" / "text.txt", TEXT)
    output = scratch / "part1" / "stage.wav"
    sides = {
        "engine": lambda: engine.render(TEXT, latents, settings),
        "plain": lambda: direct_render(modules, tokens, latents, settings),
        "renderer": lambda: render_file(stage, VOICE, text, output)[1],
    }
    first = {name: action() for name, action in sides.items()}  # warm-up, untimed
    assert first["renderer"]["settings"] == {
        **asdict(settings),
        "preset": PRESET,
        "output_sample_rate": Engine.SAMPLE_RATE,
        "latents": "voicedrop",
        "generated_mel_tokens": mel_tokens,
    }, first["renderer"]["settings"]
    assert first["renderer"]["chunks"] == 1 and first["renderer"]["timings"]["latents_seconds"] == 0
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    other_cores: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for repeat in range(repeats):
        wait_until_quiet(QUIET_WAIT / 10)
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            _, noise = measured_part(sides[name])
            seconds[name].append(noise["wall_seconds"])
            other_cores[name].append(noise["other_cores"])
    quiet = [
        index
        for index in range(repeats)
        if max(other_cores[name][index] for name in names) < QUIET_CORES
    ]
    used = quiet if len(quiet) >= MIN_QUIET_REPEATS else list(range(repeats))
    kept = {name: [values[index] for index in used] for name, values in seconds.items()}
    engine_audio, plain_audio = first["engine"], first["plain"]
    stage_audio, _ = sf.read(output, dtype="float32")
    median = {name: statistics.median(values) for name, values in kept.items()}
    return {
        "repeats": repeats,
        "text": TEXT,
        "text_tokens": int(tokens.shape[-1]),
        "settings": asdict(settings),
        "seconds": seconds,
        "other_cores": other_cores,
        "quiet_repeats": quiet,
        "repeats_used": used,
        "median_seconds": median,
        "median_seconds_all_repeats": {
            name: statistics.median(values) for name, values in seconds.items()
        },
        "min_seconds": {name: min(values) for name, values in seconds.items()},
        "engine_overhead": median["engine"] / median["plain"] - 1,
        "renderer_overhead": median["renderer"] / median["plain"] - 1,
        "engine_overhead_paired": statistics.median(
            e / p - 1 for e, p in zip(kept["engine"], kept["plain"], strict=True)
        ),
        "renderer_overhead_paired": statistics.median(
            r / p - 1 for r, p in zip(kept["renderer"], kept["plain"], strict=True)
        ),
        "audio_samples": int(engine_audio.size),
        "engine_equals_plain": bool(np.array_equal(engine_audio, plain_audio)),
        "engine_max_abs_difference": float(np.abs(engine_audio - plain_audio).max()),
        # the renderer writes 16-bit PCM: equal up to one quantisation step
        "renderer_max_abs_difference": float(
            np.abs(stage_audio - np.clip(engine_audio, -1, 1)).max()
        ),
    }


# -- 3. one daemon against one process per text --------------------------------------------


def daemon_side(root: Root, texts: list[str]) -> dict[str, Any]:
    outbox = root.outbox / VOICE
    for wav in [*outbox.glob("*.wav"), *outbox.glob("*.json")]:
        wav.unlink()  # a missing wav is rendered again
    paths = [write_text(outbox / f"text{index}.txt", text) for index, text in enumerate(texts)]
    started = time.perf_counter()
    run_until_idle(root.path)
    wall = time.perf_counter() - started
    sidecars = [json.loads(p.with_suffix(".json").read_text()) for p in paths]
    return {
        "wall_seconds": wall,
        "render_seconds": [s["timings"]["total_seconds"] for s in sidecars],
        "latents_seconds": [s["timings"]["latents_seconds"] for s in sidecars],
        "wavs": {p.name: sha256(p.with_suffix(".wav")) for p in paths},
    }


def cli_side(root: Root, texts: list[str], folder: Path) -> dict[str, Any]:
    shutil.rmtree(folder, ignore_errors=True)
    paths = [write_text(folder / f"text{index}.txt", text) for index, text in enumerate(texts)]
    walls = []
    for path in paths:
        started = time.perf_counter()
        voicedrop(
            "render", VOICE, "--file", str(path), "-o", str(path.with_suffix(".wav")),
            "--root", str(root.path),
        )  # fmt: skip
        walls.append(time.perf_counter() - started)
    sidecars = [json.loads(p.with_suffix(".json").read_text()) for p in paths]
    return {
        "wall_seconds": sum(walls),
        "process_seconds": walls,
        "render_seconds": [s["timings"]["total_seconds"] for s in sidecars],
        "latents_seconds": [s["timings"]["latents_seconds"] for s in sidecars],
        "wavs": {p.name: sha256(p.with_suffix(".wav")) for p in paths},
    }


def daemon_against_processes(root: Root, scratch: Path, count: int, rounds: int) -> dict:
    texts = [SENTENCES[index % len(SENTENCES)] for index in range(count)]
    results: dict[str, list[dict]] = {"daemon": [], "processes": []}
    for number in range(rounds):
        order = ("daemon", "processes") if number % 2 == 0 else ("processes", "daemon")
        for side in order:
            wait_until_quiet(QUIET_WAIT / 4)
            if side == "daemon":
                run, noise = measured_part(daemon_side, root, texts)
            else:
                run, noise = measured_part(cli_side, root, texts, scratch / "part3")
            results[side].append({**run, "other_cores": noise["other_cores"]})
    daemon = [r["wall_seconds"] for r in results["daemon"]]
    processes = [r["wall_seconds"] for r in results["processes"]]
    wavs = [r["wavs"] for side in results.values() for r in side]
    return {
        "texts": texts,
        "rounds": rounds,
        **results,
        "daemon_seconds": statistics.median(daemon),
        "processes_seconds": statistics.median(processes),
        # the renderer's own seconds (sidecars): the first render in a process pays imports,
        # model load and first-inference warm-up; the rest of the wall time is process start-up
        "daemon_render_seconds": statistics.median(
            sum(r["render_seconds"]) for r in results["daemon"]
        ),
        "processes_render_seconds": statistics.median(
            sum(r["render_seconds"]) for r in results["processes"]
        ),
        "daemon_first_render_seconds": statistics.median(
            r["render_seconds"][0] for r in results["daemon"]
        ),
        "daemon_later_render_seconds": statistics.median(
            s for r in results["daemon"] for s in r["render_seconds"][1:]
        ),
        "ratio_processes_over_daemon": statistics.median(processes) / statistics.median(daemon),
        "ratio_per_round": [p / d for p, d in zip(processes, daemon, strict=True)],
        "same_audio": all(w == wavs[0] for w in wavs),
        "latents_reused": all(
            s == 0 for side in results.values() for r in side for s in r["latents_seconds"]
        ),
    }


# -- report --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import tortoise
    import transformers

    return describe_machine(
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        transformers=transformers.__version__,
        tortoise=getattr(tortoise, "__version__", "3.0.0"),
        cuda_available=torch.cuda.is_available(),
    )


def table(result: dict[str, Any]) -> str:
    o, f, d = result["overhead"], result["first_second"], result["daemon_vs_processes"]
    med = o["median_seconds"]
    met = "ok" if o["engine_overhead"] <= TARGET_OVERHEAD else "MISSED"
    rows = [
        ("figure", "measured", "target"),
        (
            f"1. plain modules, median of {len(o['repeats_used'])}/{o['repeats']} repeats",
            f"{med['plain']:.3f} s (min {o['min_seconds']['plain']:.3f})",
            "",
        ),
        (
            "   Engine.render",
            f"{med['engine']:.3f} s (min {o['min_seconds']['engine']:.3f})",
            "",
        ),
        (
            "   Engine.render overhead",
            f"{o['engine_overhead']:+.1%} (paired {o['engine_overhead_paired']:+.1%})",
            f"<= {TARGET_OVERHEAD:.0%} {met}",
        ),
        (
            "   Renderer.render (text -> wav + sidecar)",
            f"{med['renderer']:.3f} s, {o['renderer_overhead']:+.1%} "
            f"(paired {o['renderer_overhead_paired']:+.1%})",
            "",
        ),
        (
            "   audio engine == plain",
            f"{o['engine_equals_plain']} (max diff {o['engine_max_abs_difference']:.2g}; "
            f"wav {o['renderer_max_abs_difference']:.2g})",
            "identical",
        ),
        (
            "2. cold first render (first in process)",
            f"{f['cold_first']['wall_seconds']:.2f} s, latents "
            f"{f['cold_first']['latents_seconds']:.2f} s",
            "",
        ),
        (
            "   first render of a voice (warm engine)",
            f"{f['first']['wall_seconds']:.2f} s, latents {f['first']['latents_seconds']:.2f} s",
            "",
        ),
        (
            "   second render of the voice",
            f"{f['second']['wall_seconds']:.2f} s, latents {f['second']['latents_seconds']:.2f} s",
            "latents 0 " + ("ok" if f["second_reused_latents"] else "MISSED"),
        ),
        (
            f"3. {len(d['texts'])} texts, one daemon --until-idle",
            f"{d['daemon_seconds']:.1f} s (renders {d['daemon_render_seconds']:.1f} s: first "
            f"{d['daemon_first_render_seconds']:.2f}, then {d['daemon_later_render_seconds']:.2f})",
            "",
        ),
        (
            f"   {len(d['texts'])} voicedrop render processes",
            f"{d['processes_seconds']:.1f} s (renders {d['processes_render_seconds']:.1f} s)",
            "",
        ),
        (
            "   processes / daemon",
            f"{d['ratio_processes_over_daemon']:.2f}x (per round "
            + "/".join(f"{r:.2f}" for r in d["ratio_per_round"])
            + f"); same audio {d['same_audio']}",
            "models stay loaded",
        ),
    ]
    return text_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="5 repeats, 3 texts in one round (about 1 min)"
    )
    args = parser.parse_args(argv)
    repeats, count, rounds = (5, 3, 1) if args.quick else (15, 5, 2)
    torch.set_num_threads(THREADS)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    started = time.monotonic()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="voicedrop-render-bench-", dir="/tmp") as tmp:
        base = Path(tmp)
        setup_started = time.monotonic()
        root = make_root(base)
        setup_seconds = time.monotonic() - setup_started
        stage = RenderStage(StageContext(root, load_settings(root.config_file)))
        scratch = base / "scratch"
        waited = [wait_until_quiet()]
        first_second, noise_2 = measured_part(first_and_second, stage, scratch)
        waited.append(wait_until_quiet())
        measured, noise_1 = measured_part(overhead, stage, scratch, repeats)
        stage.renderer.release()
        waited.append(wait_until_quiet())
        versus, noise_3 = measured_part(daemon_against_processes, root, scratch, count, rounds)
    info["load_average_after"] = os.getloadavg()
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench.render_bench" + (" --quick" if args.quick else ""),
        "machine": info,
        "models": "tiny (daemon.tts.checkpoints.ModelSpec.tiny, random weights)",
        "preset": PRESET,
        "targets": {"engine_overhead": TARGET_OVERHEAD, "second_render_latents_seconds": 0},
        "setup_seconds": setup_seconds,
        "overhead": measured,
        "first_second": first_second,
        "daemon_vs_processes": versus,
        "other_programs": {"overhead": noise_1, "first_second": noise_2, "processes": noise_3},
        "waited_for_quiet_seconds": waited,
        "wall_seconds": time.monotonic() - started,
    }
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(table(result))
    print(
        "other programs' CPU meanwhile (cores busy on average): "
        + ", ".join(f"{k} {v['other_cores']:.2f}" for k, v in result["other_programs"].items())
    )
    print(f"wrote {OUT_FILE} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
