"""voices/<voice>/dataset/audit.json: every dataset piece heard again on its own after slicing.

A piece whose audio does not say its line's text (a cut through a word, music, Whisper's own
hallucination) teaches the fine-tune wrong sounds for those letters, and a piece of another
speaker (a second voice in a recording) teaches it the wrong voice. Each piece's character
error rate against its own text and its speaker similarity to the voice are kept; a piece
above `dataset.max_cer` or below `dataset.min_similarity` is suspect, `status` lists it, and
`dataset.drop_suspect` leaves it out of train.txt and validation.txt. The verdicts are made
when the lists are written, with the settings they are written with, so audit.json, the
lists and `status` always agree.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.core import atomic
from daemon.core.config import DatasetSettings
from daemon.core.jobs import build
from daemon.core.paths import VoicePaths

if TYPE_CHECKING:  # lists.py and status read audits without loading the audio stack
    import numpy as np

    from daemon.dataset.whisper import Whisper

AUDIT_VERSION = 1


@dataclass(frozen=True)
class PieceAudit:
    """What Whisper heard in one piece (dataset/audio/<file>) and how far it is from the text."""

    file: str
    clip: str
    text: str
    heard: str
    cer: float
    # Cosine similarity to the voice's reference embedding; None when the piece has too
    # little speech to tell who speaks (or was heard before similarity was measured).
    similarity: float | None = None
    suspect: bool = False


@dataclass(frozen=True)
class Audit:
    """audit.json: the pieces, and the rules their `suspect` verdicts were judged by."""

    pieces: tuple[PieceAudit, ...] = ()
    max_cer: float | None = None
    min_similarity: float | None = None
    drop_suspect: bool = False

    @property
    def suspects(self) -> list[PieceAudit]:
        return [piece for piece in self.pieces if piece.suspect]


def audit_file(voice: VoicePaths) -> Path:
    return voice.dataset / "audit.json"


def read_audit(voice: VoicePaths) -> Audit:
    """The stored audit; a missing or damaged file reads as empty (`status` must not stop on
    it, and the next transcription writes it again)."""
    try:
        raw = json.loads(audit_file(voice).read_text(encoding="utf-8"))
        pieces = tuple(build(PieceAudit, piece) for piece in raw["pieces"])
        return Audit(
            pieces,
            raw.get("max_cer"),
            raw.get("min_similarity"),
            bool(raw.get("drop_suspect", False)),
        )
    except (OSError, ValueError, TypeError, KeyError):
        return Audit()


def write_audit(voice: VoicePaths, audit: Audit) -> None:
    record = {"version": AUDIT_VERSION, **dataclasses.asdict(audit)}
    atomic.write_text(audit_file(voice), json.dumps(record, indent=1, ensure_ascii=False))


def hear_pieces(
    whisper: Whisper,
    voice: VoicePaths,
    clip: str,
    pieces: list[dict[str, Any]],
    language: str | None,
    speaker: Callable[[np.ndarray, int], float | None],
) -> list[PieceAudit]:
    """Each written piece of `clip` heard on its own by the loaded Whisper, and compared
    with the voice by `speaker` (similarity to its reference)."""
    import soundfile as sf

    from daemon.quality.speech import character_error_rate, heard

    audits = []
    for piece in pieces:
        audio, rate = sf.read(voice.dataset / "audio" / piece["file"], dtype="float32")
        said = heard(whisper, audio, rate, language)
        cer = round(character_error_rate(piece["text"], said), 4)
        similarity = speaker(audio, rate)
        audits.append(PieceAudit(piece["file"], clip, piece["text"], said, cer, similarity))
    return audits


def record_clip(voice: VoicePaths, clip: str, audits: list[PieceAudit]) -> None:
    """Replace `clip`'s pieces in audit.json; written before whisper.json lists the pieces,
    so a kill between the two leaves a clip that is transcribed (and heard) again."""
    audit = read_audit(voice)
    kept = [piece for piece in audit.pieces if piece.clip != clip]
    write_audit(voice, dataclasses.replace(audit, pieces=(*kept, *audits)))


def is_suspect(piece: PieceAudit, rules: DatasetSettings) -> bool:
    """Above the CER limit, or below the speaker similarity limit where it was measured."""
    other_speaker = piece.similarity is not None and piece.similarity < rules.min_similarity
    return piece.cer > rules.max_cer or other_speaker


def judge(voice: VoicePaths, pieces: list[dict[str, Any]], rules: DatasetSettings) -> Audit:
    """The audit of the dataset's current `pieces` judged by `rules`, written back: pieces
    no longer in the dataset (pruned, cut again) are forgotten. Returns what it wrote."""
    current = {(piece["file"], piece["text"]) for piece in pieces}
    judged = tuple(
        dataclasses.replace(piece, suspect=is_suspect(piece, rules))
        for piece in read_audit(voice).pieces
        if (piece.file, piece.text) in current
    )
    audit = Audit(judged, rules.max_cer, rules.min_similarity, rules.drop_suspect)
    if audit_file(voice).exists() or judged:
        write_audit(voice, audit)
    return audit
