"""Does a rendered chunk say its text, in its voice? Whisper listens (character error rate
against the chunk's text) and the speaker encoder compares (cosine similarity to the voice's
clips). A chunk that fails is rendered again with the next seed, up to `render.retries`
times, and the best attempt is kept; a text whose chunks still fail is written all the same,
and flagged.

TorToiSe's known failure is garbled, repeated or hallucinated speech, whose only cure is
another seed: nobody listens before a file lands in the outbox, so this listens instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from daemon.core.config import Settings
from daemon.core.paths import Root, VoicePaths
from daemon.dataset.lists import known_language
from daemon.dataset.whisper import Whisper
from daemon.quality.speaker import NotEnoughSpeech, SpeakerEncoder, similarity, voice_embedding
from daemon.quality.speech import character_error_rate, heard
from daemon.tts.latents import NoClips
from daemon.tts.redact import Redaction, split_redactions

SEED_LIMIT = 2**32  # torch and numpy take seeds below this


@dataclass(frozen=True)
class CheckLimits:
    """`render.max_cer`, `render.min_similarity` and `render.retries`."""

    max_cer: float
    min_similarity: float
    retries: int


@dataclass(frozen=True)
class Attempt:
    """One rendering of a chunk as heard: its seed, what Whisper heard and the scores. The
    similarity is None where the voice has no reference to compare with."""

    seed: int
    heard: str
    cer: float
    similarity: float | None

    def passes(self, limits: CheckLimits) -> bool:
        speaker_ok = self.similarity is None or self.similarity >= limits.min_similarity
        return self.cer <= limits.max_cer and speaker_ok

    def badness(self) -> float:
        """How far from right: errors heard plus distance from the voice (lower is better)."""
        return self.cer + (0.0 if self.similarity is None else 1.0 - self.similarity)


@dataclass(frozen=True)
class ChunkVerdict:
    """Every attempt at one chunk and which was kept (the first that passed, else the best)."""

    index: int
    text: str
    attempts: tuple[Attempt, ...]
    kept: int
    passed: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> ChunkVerdict:
        record = json.loads(text)
        attempts = tuple(Attempt(**attempt) for attempt in record.pop("attempts"))
        return cls(attempts=attempts, **record)

    def describe(self) -> str:
        """One line for `<name>.check.txt`: the chunk, what was heard and why it failed."""
        best = self.attempts[self.kept]
        similarity = "-" if best.similarity is None else f"{best.similarity:.2f}"
        return (
            f"chunk {self.index + 1}: {self.text!r}\n"
            f"  heard {best.heard!r} (character error rate {best.cer:.2f}, speaker "
            f"similarity {similarity}; seeds tried {', '.join(str(a.seed) for a in self.attempts)})"
        )


def next_seed(seed: int, attempt: int) -> int:
    return (seed + attempt) % SEED_LIMIT


def spoken_text(chunk: str, redaction: Redaction) -> str:
    """What the chunk's audio should say: [bracketed] prompts were cut out, unless no cut
    point was found and the chunk was kept whole."""
    parts = split_redactions(chunk)
    said = " ".join(p.text for p in parts if redaction is Redaction.KEPT or not p.redacted)
    return " ".join(said.split())


def keep_best(attempts: list[Attempt], limits: CheckLimits) -> int:
    """The first attempt that passed, else the one closest to right."""
    return min(
        range(len(attempts)),
        key=lambda i: (not attempts[i].passes(limits), attempts[i].badness(), i),
    )


class RenderCheck:
    """Listens to the chunks of one text rendered in one voice, with the models already
    loaded (Whisper for datasets, the speaker encoder for imports)."""

    def __init__(
        self,
        whisper: Whisper,
        language: str | None,
        encoder: SpeakerEncoder,
        reference: np.ndarray | None,
        limits: CheckLimits,
    ) -> None:
        self.whisper = whisper
        self.language = language
        self.encoder = encoder
        self.reference = reference
        self.limits = limits
        self.seconds = 0.0  # spent listening, for the sidecar: the check must cost little

    def judge(self, audio: np.ndarray, rate: int, text: str, seed: int) -> Attempt:
        """Listen to one attempt at a chunk whose audio should say `text`."""
        started = time.monotonic()
        understood = heard(self.whisper, audio, rate, self.language)
        attempt = Attempt(
            seed=seed,
            heard=understood,
            cer=round(character_error_rate(text, understood), 4),
            similarity=self.speaker_similarity(audio, rate),
        )
        self.seconds += time.monotonic() - started
        return attempt

    def character_error_rate(self, audio: np.ndarray, rate: int, text: str) -> float:
        """What a hold-out render scores (quality/promotion.py): the same listening."""
        return character_error_rate(text, heard(self.whisper, audio, rate, self.language))

    def speaker_similarity(self, audio: np.ndarray, rate: int) -> float | None:
        """Too little speech to tell who speaks scores 0: a silent chunk is not the voice."""
        if self.reference is None:
            return None
        try:
            return round(similarity(self.encoder.embed(audio, rate), self.reference), 4)
        except NotEnoughSpeech:
            return 0.0


def listeners(
    root: Root, settings: Settings, voice: VoicePaths, whisper: Whisper, encoder: SpeakerEncoder
) -> RenderCheck:
    """The check for texts in `voice`: Whisper loaded with the dataset's options and the
    voice's language, and the voice's reference embedding (None when no clip has enough
    speech: then only the words are checked). Raises ModelMissing without a Whisper model."""
    from daemon.dataset.whisper import WhisperOptions

    whisper.load(WhisperOptions.from_settings(settings, root))
    try:
        reference = voice_embedding(voice, encoder)
    except (NoClips, NotEnoughSpeech):
        reference = None
    rules = settings.render
    limits = CheckLimits(rules.max_cer, rules.min_similarity, rules.retries)
    return RenderCheck(whisper, known_language(voice, settings), encoder, reference, limits)


def check_report(verdicts: list[ChunkVerdict | None], limits: CheckLimits) -> dict[str, Any]:
    """The sidecar's `check`: limits, and per chunk the seeds tried, scores and which was kept
    (None for a chunk rendered before the check was on)."""
    failed = [v.index + 1 for v in verdicts if v is not None and not v.passed]
    return {
        "limits": asdict(limits),
        "passed": not failed,
        "failed_chunks": failed,
        "chunks": [None if v is None else asdict(v) for v in verdicts],
    }


def flag_text(name: str, verdicts: list[ChunkVerdict | None], limits: CheckLimits) -> str:
    """`<name>.check.txt`: which chunks still failed after the retries, and what was heard."""
    failed = [v for v in verdicts if v is not None and not v.passed]
    lines = [
        f"{len(failed)} of {len(verdicts)} chunks of {name} did not pass the render check "
        f"(character error rate at most {limits.max_cer:g}, speaker similarity at least "
        f"{limits.min_similarity:g}) after {limits.retries} retries; the best attempts were kept.",
        "Listen to them; edit the text (or its seed) to render it again.",
        "",
    ]
    return "\n".join(lines + [verdict.describe() for verdict in failed]) + "\n"
