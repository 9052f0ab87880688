"""Autoregressive sampling benchmark (issue 14, item 2): tortoise's inference_speech against
daemon.tts.sampler's loop, side by side in one run, on the same loaded weights and seed.

Two models, both TorToiSe's real UnifiedVoice built by daemon.tts.checkpoints:

- tiny: the tiny set (`daemon.tts.tiny`, written to a temp folder and loaded strictly by the
  Engine, as renders load it);
- released dims: 30 layers, width 1024, 16 heads (`ModelSpec.released()`), random weights
  (the released checkpoint cannot be had here; its dims set the cost), at a reduced number
  of codes so it runs in minutes on a CPU.

For each case both sides sample with the same seed (sides alternate order, median of the
repeats), the codes are compared, and the ratio printed. One torch thread by default: on
cores other processes share, more threads wait on each other and the seconds scatter. CPU
figures only: the CUDA graph path needs a GPU, so its figures are still to be measured.

    python -m bench.sampler_bench [--quick] [--threads N]

Prints a table and writes bench/out/sampler.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.common import describe_machine, text_table
from daemon.tts.checkpoints import build_autoregressive
from daemon.tts.engine import Engine
from daemon.tts.sampler import CodeSampler, Sampling, prompt_embeddings
from daemon.tts.spec import ModelSpec
from daemon.tts.tiny import write_tiny_models

TEXT = "The quick brown fox jumps over the lazy dog."
SAMPLING = Sampling(temperature=0.8, top_p=0.8, repetition_penalty=2.0)  # tortoise's defaults
SEED = 0
OUT = Path(__file__).parent / "out" / "sampler.json"


@dataclass(frozen=True)
class Case:
    model: str
    candidates: int
    codes: int
    repeats: int


@dataclass(frozen=True)
class Result:
    case: Case
    tortoise_seconds: float
    voicedrop_seconds: float
    codes_equal: bool

    @property
    def ratio(self) -> float:
        return self.tortoise_seconds / self.voicedrop_seconds


def tortoise(model, conditioning, tokens, case: Case) -> torch.Tensor:
    return model.inference_speech(
        conditioning,
        tokens,
        do_sample=True,
        top_k=SAMPLING.top_k,
        top_p=SAMPLING.top_p,
        temperature=SAMPLING.temperature,
        num_return_sequences=case.candidates,
        repetition_penalty=SAMPLING.repetition_penalty,
        max_generate_length=case.codes,
    )


def voicedrop(model, conditioning, tokens, case: Case) -> torch.Tensor:
    """The engine's way: the prompt and the sampler's buffers built per chunk, then sampled."""
    prompt = prompt_embeddings(model, conditioning, tokens)
    return CodeSampler(model, case.candidates, prompt.shape[1], case.codes, SAMPLING).sample(prompt)


def timed(side, model, conditioning, tokens, case: Case) -> tuple[float, torch.Tensor]:
    torch.manual_seed(SEED)
    started = time.perf_counter()
    with torch.no_grad():
        codes = side(model, conditioning, tokens, case)
    return time.perf_counter() - started, codes


def measure(model, conditioning, tokens, case: Case) -> Result:
    times: dict[str, list[float]] = {"tortoise": [], "voicedrop": []}
    codes: dict[str, torch.Tensor] = {}
    sides = {"tortoise": tortoise, "voicedrop": voicedrop}
    timed(voicedrop, model, conditioning, tokens, case)  # warm-up: first-call costs
    for repeat in range(case.repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        for name in order:
            seconds, codes[name] = timed(sides[name], model, conditioning, tokens, case)
            times[name].append(seconds)
    return Result(
        case,
        statistics.median(times["tortoise"]),
        statistics.median(times["voicedrop"]),
        bool(codes["tortoise"].equal(codes["voicedrop"])),
    )


def tiny_model(folder: Path) -> tuple[Engine, torch.nn.Module]:
    write_tiny_models(folder)
    engine = Engine(folder, device="cpu")
    engine.load()
    return engine, engine._autoregressive(None)


def released_model() -> torch.nn.Module:
    torch.manual_seed(SEED)
    model = build_autoregressive(ModelSpec.released()).eval()
    model.post_init_gpt2_config(kv_cache=True)
    return model


def cases(quick: bool) -> dict[str, list[Case]]:
    if quick:
        return {"tiny": [Case("tiny", 8, 100, 1)], "released": [Case("released", 2, 8, 1)]}
    return {
        "tiny": [Case("tiny", 1, 250, 3), Case("tiny", 8, 250, 3)],
        "released": [Case("released", 1, 24, 2), Case("released", 4, 24, 2)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short case per model")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady on a shared box)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = describe_machine(torch=torch.__version__, threads=torch.get_num_threads())
    results = []
    with tempfile.TemporaryDirectory(prefix="sampler-bench-") as folder:
        engine, tiny = tiny_model(Path(folder))
        tokens = engine._text_tokens(TEXT)
        for name, model_cases in cases(args.quick).items():
            model = tiny if name == "tiny" else released_model()
            conditioning = torch.randn(
                1, model.model_dim, generator=torch.Generator().manual_seed(1)
            )
            for case in model_cases:
                results.append(measure(model, conditioning, tokens, case))
                print(f"measured {case}", file=sys.stderr)
            del model
    rows = [("model", "candidates", "codes", "tortoise s", "voicedrop s", "ratio", "codes equal")]
    for result in results:
        case = result.case
        rows.append(
            (
                case.model,
                str(case.candidates),
                str(case.codes),
                f"{result.tortoise_seconds:.2f}",
                f"{result.voicedrop_seconds:.2f}",
                f"{result.ratio:.2f}x",
                str(result.codes_equal),
            )
        )
    print(text_table(rows))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"),
        "machine": machine,
        "results": [
            {**asdict(result), "ratio": result.ratio, "case": asdict(result.case)}
            for result in results
        ],
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if all(result.codes_equal for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
