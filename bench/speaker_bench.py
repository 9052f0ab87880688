"""Speaker check benchmark (issue 11): the speaker encoder's speed on the CPU, what the check
adds to an import, and how well the mismatch rule tells TorToiSe's voices apart.

1. throughput: every clip of every voice tortoise-tts ships, embedded by `SpeakerEncoder`
   (resampling, Resemblyzer's silence trimming and the network), after one warm-up clip;
   seconds of audio per second of wall time, model loading apart
2. import cost: `check_clip` for a new clip in a voice of tom's four clips, with no cached
   embeddings (a voice's first check) and with them cached (every later one)
3. the rule: for each voice with 3 or more clips, each clip in turn is held out and judged
   against the others (`judge`, as the import does), and so is every clip of every other
   voice. A held-out clip of the voice that is flagged is a false alarm (a good clip held
   back); another voice's clip that passes is a miss. Swept over `min_speaker_similarity`
   and the spread margin; the shipped rule is 0.80 with a margin of 0.05.
4. not a clean clip of the voice: each held-out clip with white noise at 10 and 0 dB SNR
   (judged against the rest of its voice), and a harmonic tone, white noise and an
   espeak-ng sentence (judged against every voice): how many the shipped rule holds back.

    python -m bench.speaker_bench

Prints tables and writes bench/out/speaker.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bench.common import describe_machine, text_table
from daemon.core.config import ImportSettings
from daemon.core.jobs import SpeakerCheck
from daemon.core.paths import Root
from daemon.quality.speaker import (
    SPREAD_MARGIN,
    NotEnoughSpeech,
    SpeakerEncoder,
    check_clip,
    judge,
)
from tests.conftest import SENTENCES, voiced_signal

OUT = Path(__file__).parent / "out" / "speaker.json"
THRESHOLDS = (0.70, 0.75, 0.80, 0.85, 0.90)
MARGINS = (None, 0.0, 0.05, 0.10)  # None: the absolute threshold alone
MIN_CLIPS = 3  # a voice's clips needed to hold one out and compare it with the rest


@dataclass(frozen=True)
class Clip:
    voice: str
    name: str
    seconds: float
    embedding: np.ndarray


@dataclass(frozen=True)
class Trial:
    voice: str  # whose clips are the reference
    held_out: str  # the reference's own clip left out of it
    candidate: str  # voice/name judged
    same: bool
    check: SpeakerCheck


def tortoise_voices() -> dict[str, list[Path]]:
    folder = Path(str(resources.files("tortoise") / "voices"))
    voices = {d.name: sorted(d.glob("*.wav")) for d in sorted(folder.iterdir()) if d.is_dir()}
    return {name: clips for name, clips in voices.items() if clips}


def embed_all(encoder: SpeakerEncoder, voices: dict[str, list[Path]]) -> tuple[list[Clip], float]:
    """Every clip's embedding, and the seconds the encoder spent on them."""
    encoder.embed_file(next(iter(voices.values()))[0])  # warm-up
    clips, spent = [], 0.0
    for voice, paths in voices.items():
        for path in paths:
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            started = time.perf_counter()
            try:
                embedding = encoder.embed(audio.mean(axis=1), rate)
            except NotEnoughSpeech:
                continue
            spent += time.perf_counter() - started
            clips.append(Clip(voice, path.name, len(audio) / rate, embedding))
    return clips, spent


def import_cost(encoder: SpeakerEncoder, voices: dict[str, list[Path]]) -> dict[str, float]:
    """Seconds `check_clip` takes for grace's clip in a voice of tom's clips: cold, warm."""
    with tempfile.TemporaryDirectory(prefix="speaker-bench-") as scratch:
        voice = Root.at(scratch).voice("tom")
        voice.clips.mkdir(parents=True)
        for path in voices["tom"]:
            shutil.copyfile(path, voice.clips / path.name)
        shutil.copyfile(voices["train_grace"][0], voice.clips / "grace.wav")
        rules = ImportSettings()
        timings = {}
        for label in ("cold", "warm"):
            started = time.perf_counter()
            check = check_clip(
                voice,
                voice.clips / "grace.wav",
                encoder,
                rules.min_speaker_similarity,
                rules.speaker_reference_clips,
            )
            timings[f"{label}_s"] = round(time.perf_counter() - started, 3)
        assert check is not None and check.mismatch
    return timings


def trials(clips: list[Clip]) -> list[Trial]:
    """Each clip of each voice with MIN_CLIPS clips held out, and every other voice's clips,
    judged against the rest of that voice (the threshold is applied later, from the check)."""
    by_voice: dict[str, list[Clip]] = {}
    for clip in clips:
        by_voice.setdefault(clip.voice, []).append(clip)
    found = []
    for voice, own in by_voice.items():
        if len(own) < MIN_CLIPS:
            continue
        for held in own:
            others = [c.embedding for c in own if c is not held]
            candidates = [held] + [c for c in clips if c.voice != voice]
            for candidate in candidates:
                check = judge(candidate.embedding, others, 1.0)
                found.append(
                    Trial(
                        voice,
                        held.name,
                        f"{candidate.voice}/{candidate.name}",
                        candidate is held,
                        check,
                    )
                )
    return found


def with_noise(path: Path, snr_db: float, seed: int) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    noise = np.random.default_rng(seed).standard_normal(mono.size).astype(np.float32)
    noise *= np.sqrt(np.mean(mono**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return mono + noise, rate


def not_voices(encoder: SpeakerEncoder) -> dict[str, np.ndarray]:
    """Embeddings of things that are no one's voice (or a machine's)."""
    rate = 22050
    sources = {
        "tone": voiced_signal(8.0, rate, seed=1, pitch=220.0),
        "white_noise": 0.1 * np.random.default_rng(2).standard_normal(8 * rate).astype(np.float32),
    }
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "espeak.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), " ".join(SENTENCES[:2])], check=True)
        audio, espeak_rate = sf.read(wav, dtype="float32")
    embedded = {"espeak": encoder.embed(audio, espeak_rate)}
    for name, audio in sources.items():
        try:
            embedded[name] = encoder.embed(audio, rate)
        except NotEnoughSpeech:
            continue  # refused before any comparison: the import skips the check
    return embedded


def unclean(
    encoder: SpeakerEncoder, voices: dict[str, list[Path]], clips: list[Clip]
) -> dict[str, str]:
    """How many unclean candidates the shipped rule holds back, per kind."""
    rule = ImportSettings().min_speaker_similarity
    by_voice: dict[str, list[Clip]] = {}
    for clip in clips:
        by_voice.setdefault(clip.voice, []).append(clip)
    judged = {v: own for v, own in by_voice.items() if len(own) >= MIN_CLIPS}
    results = {}
    for snr in (10.0, 0.0):
        held = total = 0
        for voice, own in judged.items():
            for index, clip in enumerate(own):
                audio, rate = with_noise(voices[voice][index], snr, index)
                others = [c.embedding for c in own if c is not clip]
                held += judge(encoder.embed(audio, rate), others, rule).mismatch
                total += 1
        results[f"own clip + white noise at {snr:g} dB SNR"] = f"{held}/{total}"
    for name, embedding in not_voices(encoder).items():
        checks = [judge(embedding, [c.embedding for c in own], rule) for own in judged.values()]
        results[name] = f"{sum(c.mismatch for c in checks)}/{len(checks)}"
    return results


def threshold(check: SpeakerCheck, minimum: float, margin: float | None) -> float:
    return minimum if margin is None else min(minimum, check.typical_low - margin)


def sweep(found: list[Trial]) -> list[dict[str, object]]:
    rows = []
    for minimum in THRESHOLDS:
        for margin in MARGINS:
            same = [t for t in found if t.same]
            other = [t for t in found if not t.same]

            def flagged(trial: Trial, minimum: float = minimum, margin: float | None = margin):
                return trial.check.similarity < threshold(trial.check, minimum, margin)

            rows.append(
                {
                    "min_speaker_similarity": minimum,
                    "margin": margin,
                    "own_clips": len(same),
                    "own_held_back": sum(map(flagged, same)),
                    "other_clips": len(other),
                    "other_caught": sum(map(flagged, other)),
                    "other_missed": len(other) - sum(map(flagged, other)),
                }
            )
    return rows


def main() -> None:
    machine = describe_machine(torch=torch.__version__, threads=torch.get_num_threads())
    voices = tortoise_voices()
    encoder = SpeakerEncoder("cpu")
    started = time.perf_counter()
    encoder.load()
    load_s = time.perf_counter() - started
    clips, spent = embed_all(encoder, voices)
    audio_s = sum(c.seconds for c in clips)
    cost = import_cost(encoder, voices)
    found = trials(clips)
    rows = sweep(found)
    unclean_held = unclean(encoder, voices, clips)
    shipped = [t for t in found if not t.same]
    missed = sorted(
        (
            t
            for t in shipped
            if t.check.similarity >= threshold(t.check, 0.80, SPREAD_MARGIN)  # shipped rule
        ),
        key=lambda t: -t.check.similarity,
    )
    own = sorted((t for t in found if t.same), key=lambda t: t.check.similarity)
    report = {
        "machine": machine,
        "encoder": {
            "load_s": round(load_s, 2),
            "clips": len(clips),
            "audio_s": round(audio_s, 1),
            "spent_s": round(spent, 2),
            "audio_s_per_s": round(audio_s / spent, 1),
        },
        "import_check": cost,
        "voices_judged": sorted({t.voice for t in found}),
        "sweep": rows,
        "unclean_held_back": unclean_held,
        "own_lowest": [asdict(t) for t in own[:5]],
        "missed_by_shipped_rule": [asdict(t) for t in missed],
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1, default=str))
    print(
        f"encoder: loaded in {load_s:.2f} s; {len(clips)} clips, {audio_s:.0f} s of audio in "
        f"{spent:.1f} s = {audio_s / spent:.1f} s of audio per second (CPU)"
    )
    print(f"import check (tom + grace): cold {cost['cold_s']} s, warm {cost['warm_s']} s")
    table = [("min_sim", "margin", "own held back", "others caught", "others missed")]
    for row in rows:
        table.append(
            (
                f"{row['min_speaker_similarity']:.2f}",
                "none" if row["margin"] is None else f"{row['margin']:.2f}",
                f"{row['own_held_back']}/{row['own_clips']}",
                f"{row['other_caught']}/{row['other_clips']}",
                str(row["other_missed"]),
            )
        )
    print(text_table(table))
    print("lowest own clips:", [(t.voice, t.held_out, t.check.similarity) for t in own[:5]])
    pairs: dict[tuple[str, str], int] = {}
    for t in missed:
        key = (t.voice, t.candidate.split("/")[0])
        pairs[key] = pairs.get(key, 0) + 1
    print("missed by the shipped rule, by (voice, candidate voice):", pairs)
    for kind, held in unclean_held.items():
        print(f"held back by the shipped rule: {kind}: {held}")


if __name__ == "__main__":
    main()
