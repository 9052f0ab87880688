"""voices/<voice>/dataset/audit.json: every dataset piece heard again on its own after slicing.

A piece whose audio does not say its line's text (a cut through a word, music, another
speaker, Whisper's own hallucination) teaches the fine-tune wrong sounds for those letters.
Its character error rate against its own text is kept per piece; a piece above
`dataset.max_cer` is suspect, `status` lists it, and `dataset.drop_suspect` leaves it out of
train.txt and validation.txt. The verdicts are made when the lists are written, with the
settings they are written with, so audit.json, the lists and `status` always agree.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.core import atomic
from daemon.core.config import DatasetSettings
from daemon.core.jobs import build
from daemon.core.paths import VoicePaths

if TYPE_CHECKING:  # lists.py and status read audits without loading the audio stack
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
    # Speaker similarity to the voice: the speaker encoder (quality/speaker.py, another change
    # of issue 11) fills it in once it is wired in here; None until then, never suspect.
    similarity: float | None = None
    suspect: bool = False


@dataclass(frozen=True)
class Audit:
    """audit.json: the pieces, and the rules their `suspect` verdicts were judged by."""

    pieces: tuple[PieceAudit, ...] = ()
    max_cer: float | None = None
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
        return Audit(pieces, raw.get("max_cer"), bool(raw.get("drop_suspect", False)))
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
) -> list[PieceAudit]:
    """Each written piece of `clip` heard on its own by the loaded Whisper."""
    import soundfile as sf

    from daemon.quality.speech import character_error_rate, heard

    audits = []
    for piece in pieces:
        audio, rate = sf.read(voice.dataset / "audio" / piece["file"], dtype="float32")
        said = heard(whisper, audio, rate, language)
        cer = round(character_error_rate(piece["text"], said), 4)
        audits.append(PieceAudit(piece["file"], clip, piece["text"], said, cer))
    return audits


def record_clip(voice: VoicePaths, clip: str, audits: list[PieceAudit]) -> None:
    """Replace `clip`'s pieces in audit.json; written before whisper.json lists the pieces,
    so a kill between the two leaves a clip that is transcribed (and heard) again."""
    audit = read_audit(voice)
    kept = [piece for piece in audit.pieces if piece.clip != clip]
    write_audit(voice, dataclasses.replace(audit, pieces=(*kept, *audits)))


def is_suspect(piece: PieceAudit, rules: DatasetSettings) -> bool:
    """Above the voice's CER limit (speaker similarity joins in with the speaker encoder)."""
    return piece.cer > rules.max_cer


def judge(voice: VoicePaths, pieces: list[dict[str, Any]], rules: DatasetSettings) -> Audit:
    """The audit of the dataset's current `pieces` judged by `rules`, written back: pieces
    no longer in the dataset (pruned, cut again) are forgotten. Returns what it wrote."""
    current = {(piece["file"], piece["text"]) for piece in pieces}
    judged = tuple(
        dataclasses.replace(piece, suspect=is_suspect(piece, rules))
        for piece in read_audit(voice).pieces
        if (piece.file, piece.text) in current
    )
    audit = Audit(judged, rules.max_cer, rules.drop_suspect)
    if audit_file(voice).exists() or judged:
        write_audit(voice, audit)
    return audit
