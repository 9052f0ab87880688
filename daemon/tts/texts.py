"""Reading a dropped text: encoding checks, YAML front matter, and chunks that fit the model."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.core.config import load_small_yaml

DESIRED_CHARACTERS = 200
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n\s*\n|\n")
CLAUSE_END = re.compile(r"(?<=[,;:])\s+")
WORD_GAP = re.compile(r"\s+")


def split_outside_brackets(pattern: re.Pattern[str], text: str) -> list[str]:
    """pattern.split, ignoring matches inside [brackets]."""
    pieces, start, depth_at = [], 0, _bracket_depths(text)
    for match in pattern.finditer(text):
        if depth_at[match.start()] == 0:
            pieces.append(text[start : match.start()])
            start = match.end()
    pieces.append(text[start:])
    return pieces


def _bracket_depths(text: str) -> list[int]:
    depths, depth = [], 0
    for char in text:
        depth += char == "["
        depths.append(depth)
        depth -= char == "]" and depth > 0
    return [*depths, depth]


def only_prompt(text: str) -> bool:
    """True when all of `text` is [bracketed]: it must not become a chunk of its own."""
    return "[" in text and not re.sub(r"\[[^\]]*\]", "", text).strip()


def attach_prompts(
    units: list[str], count_tokens: Callable[[str], int], max_tokens: int
) -> list[str]:
    """Join a unit that is only a [prompt] to the unit after it (the one before, at the end)."""
    joined: list[str] = []
    for unit in units:
        if joined and only_prompt(joined[-1]):
            joined[-1] = f"{joined[-1]} {unit}"
        else:
            joined.append(unit)
    if len(joined) > 1 and only_prompt(joined[-1]):
        joined[-2:] = [f"{joined[-2]} {joined[-1]}"]
    for unit in joined:
        if count_tokens(unit) > max_tokens:
            raise BadText(
                f"the [bracketed] prompt and the text it leads into ({unit[:40]!r}…) are "
                "longer than the model can speak at once; shorten the prompt"
            )
    return joined


class BadText(Exception):
    """A text that cannot be rendered as it is; the message says how to fix it."""


# Longest first: UTF-32-LE's BOM begins with UTF-16-LE's.
UNICODE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def read_text(path: Path) -> str:
    """UTF-8 (a BOM is fine), or UTF-16/32 with their BOM (what Windows Notepad saves as
    "Unicode"); anything else is refused with the offending byte."""
    data = path.read_bytes()
    for bom, encoding in UNICODE_BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError:
                message = f"{path.name} starts as {encoding} but is not; save it as UTF-8"
                raise BadText(message) from None
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
        values = load_small_yaml(header) or {}
    except ValueError as exc:
        raise BadText(f"{name}: front matter: {exc}") from None
    if not isinstance(values, dict):
        raise BadText(f"{name}: front matter must be 'key: value' lines")
    return values, body


def chunk_text(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """Sentences packed into chunks of about 200 characters, never over `max_tokens`.

    A [bracketed prompt] is never split and stays in one chunk with the text it leads into,
    since it is cut from that chunk's audio."""
    pieces = [s.strip() for s in split_outside_brackets(SENTENCE_END, text) if s.strip()]
    units = [part for piece in pieces for part in fit(piece, count_tokens, max_tokens)]
    units = attach_prompts(units, count_tokens, max_tokens)
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
    clauses = [c for c in split_outside_brackets(CLAUSE_END, sentence) if c]
    if len(clauses) > 1:
        return [part for clause in clauses for part in fit(clause, count_tokens, max_tokens)]
    words = [w for w in split_outside_brackets(WORD_GAP, sentence) if w]
    if len(words) == 1:
        what = "the [bracketed] prompt" if "[" in sentence else "the word"
        raise BadText(f"{what} {sentence[:40]!r}… alone is longer than the model can speak")
    middle = len(words) // 2
    halves = (" ".join(words[:middle]), " ".join(words[middle:]))
    return [part for half in halves for part in fit(half, count_tokens, max_tokens)]
