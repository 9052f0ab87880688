"""Reading a dropped text: encoding checks, YAML front matter, and chunks that fit the model."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

DESIRED_CHARACTERS = 200
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n\s*\n|\n")
CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


class BadText(Exception):
    """A text that cannot be rendered as it is; the message says how to fix it."""


def read_text(path: Path) -> str:
    """UTF-8 (a BOM is fine); anything else is refused with the offending byte."""
    data = path.read_bytes()
    if b"\0" in data:
        raise BadText(f"{path.name} is a binary file, not text; save it as plain UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadText(
            f"{path.name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at position "
            f"{exc.start}); save it as UTF-8"
        ) from None


def split_front_matter(text: str, name: str) -> tuple[dict[str, Any], str]:
    """`---` YAML `---` at the very top overrides settings for this file only."""
    if not text.startswith("---"):
        return {}, text
    lines = text.splitlines(keepends=True)
    if lines[0].strip() != "---":
        return {}, text
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            header, body = "".join(lines[1:index]), "".join(lines[index + 1 :])
            break
    else:
        raise BadText(f"{name}: front matter starts with --- but has no closing --- line")
    try:
        values = yaml.safe_load(header) or {}
    except yaml.YAMLError as exc:
        raise BadText(f"{name}: front matter is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise BadText(f"{name}: front matter must be 'key: value' lines")
    return values, body


def chunk_text(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """Sentences packed into chunks of about 200 characters, never over `max_tokens`."""
    pieces = [s.strip() for s in SENTENCE_END.split(text) if s.strip()]
    units = [part for piece in pieces for part in fit(piece, count_tokens, max_tokens)]
    chunks: list[str] = []
    for unit in units:
        candidate = f"{chunks[-1]} {unit}" if chunks else unit
        if (
            chunks
            and len(candidate) <= DESIRED_CHARACTERS
            and count_tokens(candidate) <= max_tokens
        ):
            chunks[-1] = candidate
        else:
            chunks.append(unit)
    return chunks


def fit(sentence: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """Split a sentence the model cannot take in one go at clauses, then between words."""
    if count_tokens(sentence) <= max_tokens:
        return [sentence]
    clauses = [c for c in CLAUSE_END.split(sentence) if c]
    if len(clauses) > 1:
        return [part for clause in clauses for part in fit(clause, count_tokens, max_tokens)]
    words = sentence.split()
    if len(words) == 1:
        raise BadText(f"the word {sentence[:40]!r}… alone is longer than the model can speak")
    middle = len(words) // 2
    halves = (" ".join(words[:middle]), " ".join(words[middle:]))
    return [part for half in halves for part in fit(half, count_tokens, max_tokens)]
