"""Fine-tunes proven before use: a finished run's model replaces the voice's current one only
when it is not worse on lines neither was trained on.

The hold-out set is the voice's validation list (daemon.dataset.lists.is_validation): a fixed
share of the pieces, picked by the sha256 of each piece's file name (so adding clips never
moves a line from one side to the other), plus the lines too short to learn from. Training
never sees them. After a run, the candidate and the current model (the last fine-tune, or the
base model) are scored on them by the same scorer with the same seeds: validation loss over
every hold-out line, and, on `training.promote_texts` of them rendered, the character error
rate of what a Whisper model hears and the speaker similarity to the voice. `decide` compares
the two against the `training.promote_*` margins.

    voices/<voice>/training/<run>/promotion.json    both models' scores and the decision
    voices/<voice>/training/<run>/result.json       the same, under "promotion"
    voices/<voice>/training/<run>/promotion/*.wav   the hold-out renders, to listen to
    voices/<voice>/models/rejected/<run>.pth, .json  a candidate that scored worse, and why

Crash safety: the decision is written before it is acted on, and the candidate stays in the
run folder until then, so a kill while scoring means scoring again at the next start, and a
kill after deciding means acting on the recorded decision; never a half-decided install.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from loguru import logger

from daemon.core.atomic import fsync_directory, write_text
from daemon.core.config import TrainingSettings, TtsSettings
from daemon.core.files import cached_sha256
from daemon.core.paths import VoicePaths
from daemon.tts.spec import AUTOREGRESSIVE_FILE
from daemon.weights.voice_models import install

PROMOTION = "promotion.json"
LISTEN_DIR = "promotion"
REJECTED_DIR = "rejected"
KEEP_REJECTED = 3  # each is the size of a model: the last few, to compare or `models use`
BASE = "base"

# hear_cer(audio, rate, text) -> character error rate of what a Whisper model hears;
# speaker_similarity(audio, rate) -> cosine similarity of the render to the voice's clips
HearCer = Callable[[Any, int, str], float]
SpeakerSimilarity = Callable[[Any, int], float | None]


@dataclass(frozen=True)
class HoldOut:
    """The hold-out texts a model renders, each with its own seed, the same for every model."""

    texts: tuple[str, ...]
    seeds: tuple[int, ...]

    @classmethod
    def of(cls, voice: VoicePaths, count: int, seed: int) -> HoldOut:
        """`count` validation lines, picked by a hash of their audio file so the same lines
        stay picked as others are added, and spread over the clips rather than the first."""
        listing = voice.dataset / "validation.txt"
        lines = listing.read_text(encoding="utf-8").splitlines() if listing.exists() else []
        rows = [line.partition("|") for line in lines if line.strip()]
        rows.sort(key=lambda row: hashlib.sha256(row[0].encode()).hexdigest())
        texts = tuple(text.strip() for _, _, text in rows if text.strip())[:count]
        return cls(texts, tuple(seed + index for index in range(len(texts))))


@dataclass(frozen=True)
class TextScore:
    """One hold-out text rendered by one model."""

    text: str
    seed: int
    audio_seconds: float
    cer: float | None
    similarity: float | None


@dataclass(frozen=True)
class ModelScores:
    """How one model did on the hold-out set; None: not measured (no checker, no lines)."""

    model: str  # the file, or "base" for the released model
    sha256: str
    cer: float | None
    similarity: float | None
    validation_loss: float | None
    texts: tuple[TextScore, ...] = ()


@dataclass(frozen=True)
class Margins:
    """How much worse than the current model a candidate may score and still be promoted."""

    max_cer_rise: float  # absolute: 0.02 = 2 points of character error rate
    max_similarity_drop: float  # absolute, in cosine similarity
    max_loss_rise: float  # a share of the current model's validation loss

    @classmethod
    def from_settings(cls, training: TrainingSettings) -> Margins:
        return cls(
            training.promote_max_cer_rise,
            training.promote_max_similarity_drop,
            training.promote_max_loss_rise,
        )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class Promotion:
    """What promotion.json holds: both models' scores, the margins and the decision."""

    run: str
    candidate: ModelScores
    current: ModelScores
    margins: Margins
    decision: Decision
    decided_at: float

    @classmethod
    def read(cls, path: Path) -> Promotion:
        raw = json.loads(path.read_text(encoding="utf-8"))

        def scores(data: dict[str, Any]) -> ModelScores:
            texts = tuple(TextScore(**text) for text in data.pop("texts"))
            return ModelScores(**data, texts=texts)

        return cls(
            run=raw["run"],
            candidate=scores(raw["candidate"]),
            current=scores(raw["current"]),
            margins=Margins(**raw["margins"]),
            decision=Decision(**raw["decision"]),
            decided_at=raw["decided_at"],
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def decide(candidate: ModelScores, current: ModelScores, margins: Margins) -> Decision:
    """Promote unless a score both models have is worse by more than its margin. A score
    either model lacks is skipped (no checker wired, no hold-out line): with none to compare,
    the candidate is promoted, as every fine-tune was before scores existed."""
    loss_scale = abs(current.validation_loss or 0.0)  # the loss margin is a share of it
    checks = (  # name, old, new, +1 when higher is worse, allowed worsening, the setting
        ("character error rate", current.cer, candidate.cer, 1, margins.max_cer_rise,
         f"training.promote_max_cer_rise {margins.max_cer_rise:g}"),
        ("speaker similarity", current.similarity, candidate.similarity, -1,
         margins.max_similarity_drop,
         f"training.promote_max_similarity_drop {margins.max_similarity_drop:g}"),
        ("validation loss", current.validation_loss, candidate.validation_loss, 1,
         loss_scale * margins.max_loss_rise,
         f"training.promote_max_loss_rise {margins.max_loss_rise:.0%}"),
    )  # fmt: skip
    worse, within = [], []
    for name, old, new, sign, allowed, setting in checks:
        if old is None or new is None:
            continue
        shown = f"{name} {old:.3f} -> {new:.3f} ({setting})"
        (worse if sign * (new - old) > allowed else within).append(shown)
    if worse:
        return Decision(False, "worse than the current model: " + "; ".join(worse))
    if not within:
        return Decision(True, "no score to compare with the current model's: promoted unchecked")
    return Decision(True, "not worse than the current model: " + "; ".join(within))


class Scorer(Protocol):
    """Scores one model (None: the base model) on a voice's hold-out texts and seeds."""

    def score(self, model: Path | None, voice: VoicePaths, holdout: HoldOut) -> ModelScores: ...

    def release(self) -> None:
        """Free the models scoring loaded (the device goes back to rendering)."""


BeforeText = Callable[[str, int, int], None]  # (model's name, texts done, texts in all)


class RenderScorer:
    """The production scorer: validation loss from the trainer's own `validate` on every
    hold-out line, then each hold-out text rendered by the engine as a text in the outbox is
    (the voice's tts settings, the text's seed), kept for listening, and heard and compared
    by the checkers given. `before_text` runs before each render: it reports progress and may
    raise to stop (the candidate is then scored again from the start)."""

    def __init__(
        self,
        models_dir: Path,
        tts: TtsSettings,
        loss: Callable[[Path | None], float | None],
        listen_dir: Path,
        before_text: BeforeText,
        hear_cer: HearCer | None = None,
        speaker_similarity: SpeakerSimilarity | None = None,
    ) -> None:
        self.models_dir = models_dir
        self.tts = tts
        self.loss = loss
        self.listen_dir = listen_dir
        self.before_text = before_text
        self.hear_cer = hear_cer
        self.speaker_similarity = speaker_similarity
        self.engine: Any = None

    def score(self, model: Path | None, voice: VoicePaths, holdout: HoldOut) -> ModelScores:
        name = BASE if model is None else model.stem
        path = model if model is not None else self.models_dir / AUTOREGRESSIVE_FILE
        loss = self.loss(model)
        texts = self.render_texts(model, name, voice, holdout) if holdout.texts else ()
        return ModelScores(
            model=str(path) if model is not None else BASE,
            sha256=cached_sha256(path),
            cer=_mean(text.cer for text in texts),
            similarity=_mean(text.similarity for text in texts),
            validation_loss=loss,
            texts=texts,
        )

    def render_texts(
        self, model: Path | None, name: str, voice: VoicePaths, holdout: HoldOut
    ) -> tuple[TextScore, ...]:
        import soundfile as sf

        from daemon.tts.engine import Engine
        from daemon.tts.latents import voice_clips
        from daemon.tts.spec import DIFFUSION_FILE, needed_files
        from daemon.tts.texts import chunk_text

        if self.engine is None:
            tts = self.tts
            self.engine = Engine(
                self.models_dir, device=tts.device, half=tts.half, sampler=tts.sampler
            )
        engine, generation = self.engine, self.tts.generation()
        clips = [sf.read(clip, dtype="float32")[0] for clip in voice_clips(voice)]
        if not clips:  # deleted since training: nothing to condition a render on
            return ()
        latents = engine.conditioning_latents(
            clips,
            autoregressive=model,
            diffusion=DIFFUSION_FILE in needed_files(generation.decoder),
            method=self.tts.latents,
            seed=self.tts.seed,
        )
        scores = []
        for index, (text, seed) in enumerate(zip(holdout.texts, holdout.seeds, strict=True)):
            self.before_text(name, index, len(holdout.texts))
            settings = dataclasses.replace(generation, seed=seed)
            chunks = chunk_text(text, engine.text_token_count, engine.max_text_tokens)
            parts = [engine.render(chunk, latents, settings, model) for chunk in chunks]
            audio = np.concatenate(parts)  # a dataset line: one chunk, or a few without pauses
            self.listen_dir.mkdir(parents=True, exist_ok=True)
            sf.write(self.listen_dir / f"{name}-{index:02d}.wav", audio, engine.SAMPLE_RATE)
            rate = engine.SAMPLE_RATE
            scores.append(
                TextScore(
                    text=text,
                    seed=seed,
                    audio_seconds=round(audio.size / rate, 3),
                    cer=None if self.hear_cer is None else self.hear_cer(audio, rate, text),
                    similarity=None
                    if self.speaker_similarity is None
                    else self.speaker_similarity(audio, rate),
                )
            )
        return tuple(scores)

    def release(self) -> None:
        if self.engine is not None:
            self.engine.release()
        self.engine = None


def _mean(values: Any) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


def settle(
    run_dir: Path,
    candidate: Path,
    voice: VoicePaths,
    scorer: Scorer,
    holdout: HoldOut,
    margins: Margins,
) -> Promotion:
    """Score, decide, record and act on a finished run's candidate; after a kill, a recorded
    decision is acted on as it stands and an unrecorded one is scored again."""
    record_file = run_dir / PROMOTION
    promotion = recorded_promotion(record_file)
    if promotion is None:
        active = voice.models / AUTOREGRESSIVE_FILE
        current = active if active.is_file() else None
        candidate_scores = scorer.score(candidate, voice, holdout)
        current_scores = scorer.score(current, voice, holdout)
        decision = decide(candidate_scores, current_scores, margins)
        promotion = Promotion(
            run_dir.name, candidate_scores, current_scores, margins, decision, time.time()
        )
        write_text(record_file, json.dumps(promotion.to_json(), indent=1) + "\n")
    if candidate.exists():
        if promotion.decision.promote:
            install(voice.models, candidate, "training", run_dir)
        else:
            keep_rejected(voice.models, candidate, run_dir.name, promotion)
    result = run_dir / "result.json"
    saved = json.loads(result.read_text(encoding="utf-8"))
    saved["promotion"] = promotion.to_json()
    write_text(result, json.dumps(saved, indent=1) + "\n")
    return promotion


def recorded_promotion(path: Path) -> Promotion | None:
    """The decision a run recorded before a kill; a damaged record is as good as none (the
    candidate is still in the run folder, so it is scored again)."""
    if not path.exists():
        return None
    try:
        return Promotion.read(path)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.warning("{} is damaged ({}); scoring the candidate again", path, exc)
        return None


def rejected_model(models_dir: Path, run: str) -> Path:
    return models_dir / REJECTED_DIR / f"{run}.pth"


def keep_rejected(models_dir: Path, candidate: Path, run: str, promotion: Promotion) -> Path:
    """Move the candidate beside the models with its scores (the .json first, so a kept
    model never lacks its reason), then drop the oldest beyond KEEP_REJECTED."""
    kept = rejected_model(models_dir, run)
    kept.parent.mkdir(parents=True, exist_ok=True)
    write_text(kept.with_suffix(".json"), json.dumps(promotion.to_json(), indent=1) + "\n")
    os.replace(candidate, kept)
    fsync_directory(kept.parent)
    for old in sorted(kept.parent.glob("*.pth"), key=lambda p: p.stat().st_mtime_ns)[
        :-KEEP_REJECTED
    ]:
        logger.info("removing {}: only the last {} rejected models are kept", old, KEEP_REJECTED)
        old.unlink()
        old.with_suffix(".json").unlink(missing_ok=True)
    return kept
