"""voices/<voice>/dataset/ in the format ai-voice-cloning and DL-Art-School read:

    audio/<clip stem>_<NNNNN>.wav     22050 Hz pieces of 0.6-11.6 s
    train.txt, validation.txt         lines "audio/<file>.wav|<text>"
    whisper.json                      raw segments and pieces, keyed by source clip
    language.json                     the language detected once for the voice
    audit.json                        each piece heard again: its CER, suspect or not

No torch, no audio decoding: `status` reads this module.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Collection
from typing import Any

from loguru import logger

from daemon.core import atomic
from daemon.core.config import Settings
from daemon.core.paths import UNSAFE_CHARACTERS, VoicePaths
from daemon.quality.audit import judge
from daemon.quality.held import held_clips

CLIP_RATE = 22050
UNKNOWN_TOKEN = 1


class Transcripts:
    """whisper.json: everything known about each source clip's transcription."""

    def __init__(self, voice: VoicePaths) -> None:
        self.path = voice.dataset / "whisper.json"
        self.entries: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        )

    def save(self) -> None:
        atomic.write_text(self.path, json.dumps(self.entries, indent=1, ensure_ascii=False))


def dataset_lines(
    transcripts: Transcripts,
    settings: Settings,
    held: Collection[str] = (),
    left_out: frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """Every piece of every clip but the `held` clips (another speaker, until kept) and the
    pieces `left_out` (by file), split deterministically into train and validation. The
    format has no escaping: a piece whose file name holds `|` or a line break (cut before
    names were made safe) is left out rather than corrupting the list, and such characters in
    a transcript become spaces."""
    lines: dict[str, list[str]] = {"train": [], "validation": []}
    for clip in sorted(transcripts.entries.values(), key=lambda e: e["clip"]):
        if clip["clip"] in held:
            continue
        for piece in clip["pieces"]:
            if piece["file"] in left_out:
                continue
            if UNSAFE_CHARACTERS.search(piece["file"]):
                logger.warning("left out of the dataset lists: piece {!r}", piece["file"])
                continue
            text = " ".join(UNSAFE_CHARACTERS.sub(" ", piece["text"]).split())
            line = f"audio/{piece['file']}|{text}"
            split = "validation" if is_validation(piece, settings) else "train"
            lines[split].append(line)
    return lines


def is_validation(piece: dict[str, Any], settings: Settings) -> bool:
    """A stable share chosen by hash of the file name, plus ai-voice-cloning's rule that lines
    too short to learn from (text or audio) are only used for validation. This is the voice's
    hold-out set: never trained on, and what a new fine-tune must score on no worse than the
    current model (daemon.quality.promotion); the hash keeps a line on its side as clips are
    added, so it stays held out from every run."""
    rules = settings.dataset
    if len(piece["text"]) < rules.validation_text_length:
        return True
    if piece["end"] - piece["start"] < rules.validation_audio_length:
        return True
    digest = hashlib.sha256(piece["file"].encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rules.validation_share


def write_lists(voice: VoicePaths, transcripts: Transcripts, settings: Settings) -> dict[str, int]:
    """train.txt and validation.txt, without held clips, and with audit.json's verdicts
    judged by the same settings: suspect pieces are left out when dataset.drop_suspect asks."""
    pieces = [piece for entry in transcripts.entries.values() for piece in entry["pieces"]]
    audit = judge(voice, pieces, settings.dataset)
    dropped = audit.suspects if settings.dataset.drop_suspect else []
    left_out = frozenset(piece.file for piece in dropped)
    lines = dataset_lines(transcripts, settings, held_clips(voice), left_out)
    for split, rows in lines.items():
        atomic.write_text(voice.dataset / f"{split}.txt", "".join(f"{row}\n" for row in rows))
    return {split: len(rows) for split, rows in lines.items()}


def clean_text(text: str) -> str:
    """One line, no field separator: the list format has no escaping."""
    return " ".join(text.replace("|", " ").split())


@functools.cache
def tortoise_tokenizer() -> Any:
    from tortoise.utils.tokenizer import VoiceBpeTokenizer

    return VoiceBpeTokenizer()


def unknown_characters(text: str) -> str:
    """Characters TorToiSe's tokenizer maps to [UNK]: DLAS drops such lines silently."""
    tokenizer = tortoise_tokenizer()
    if UNKNOWN_TOKEN not in tokenizer.encode(text):
        return ""
    return "".join(sorted({c for c in text if UNKNOWN_TOKEN in tokenizer.encode(f"a{c}b")}))


def remove_piece_files(voice: VoicePaths, entry: dict[str, Any] | None) -> None:
    for piece in (entry or {}).get("pieces", []):
        (voice.dataset / "audio" / piece["file"]).unlink(missing_ok=True)


def removed_clips(voice: VoicePaths, transcripts: Transcripts) -> list[str]:
    return sorted(
        name
        for name, entry in transcripts.entries.items()
        if not (voice.originals / entry["original"]).exists()
    )


def known_language(voice: VoicePaths, settings: Settings) -> str | None:
    """The configured language, else the one detected once for the voice; None before its
    first transcription."""
    if settings.whisper.language:
        return settings.whisper.language
    detected = voice.dataset / "language.json"
    if detected.exists():
        return json.loads(detected.read_text(encoding="utf-8"))["language"]
    return None
