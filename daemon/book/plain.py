"""Plain text and Markdown as Documents. A .txt is one chapter of hard-wrapped paragraphs; a
.md is parsed with markdown-it (never regexes) so that no Markdown syntax is ever spoken:
its top headings start chapters, and only the words a reader sees are kept.

Both return the front matter as-is (the caller validates it) and may return a Document with
no chapters (an empty file): the caller refuses that as it refuses an empty text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from daemon.book.document import Chapter, Document
from daemon.tts.texts import read_text, split_front_matter

BLANK_LINE = re.compile(r"\n[ \t]*\n")
WHITESPACE = re.compile(r"\s+")


def footnote_marker(state: StateInline, silent: bool) -> bool:
    """`[^label]`, a footnote marker (Pandoc, GitHub): a token with no text, never read."""
    start, src = state.pos, state.src
    end = src.find("]", start + 2, state.posMax)
    label = src[start + 2 : end]
    if not src.startswith("[^", start) or end < 0 or not label or " " in label:
        return False
    if not silent:
        state.push("footnote_ref", "", 0)
    state.pos = end + 1
    return True


def footnote_body(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    """`[^label]: text` and the lines that continue it (indented ones after a blank line too):
    a footnote's body, dropped as an EPUB's are."""
    line = state.src[state.bMarks[start_line] + state.tShift[start_line] : state.eMarks[start_line]]
    label, colon, _ = line.partition("]:")
    if state.sCount[start_line] - state.blkIndent >= 4 or not colon:
        return False
    if not label.startswith("[^") or len(label) == 2 or " " in label:
        return False
    if silent:
        return True
    following = start_line + 1
    while following < end_line:
        indented = state.sCount[following] - state.blkIndent >= 4
        if state.isEmpty(following):
            if following + 1 >= end_line or state.sCount[following + 1] - state.blkIndent < 4:
                break
        elif not indented and state.src.startswith("[^", state.bMarks[following]):
            break
        following += 1
    state.push("footnote_body", "", 0)  # no inline run: never read
    state.line = following
    return True


# What markdown-it-py parses: CommonMark, tables and ~~strikethrough~~ (so that their pipes and
# tildes are syntax, not text), footnotes, and raw HTML as tokens of its own (so that it can be
# dropped).
MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
MARKDOWN.inline.ruler.before("link", "footnote_marker", footnote_marker)
MARKDOWN.block.ruler.before(
    "reference", "footnote_body", footnote_body, {"alt": ["paragraph", "reference"]}
)


def read_plain(path: Path) -> tuple[dict[str, Any], Document]:
    """A .txt: one untitled chapter whose paragraphs are split at blank lines; the line
    breaks inside a paragraph are the file's wrapping, not pauses, so they become spaces."""
    front_matter, body = split_front_matter(read_text(path), path.name)
    lines = body.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = tuple(p for p in (one_line(b) for b in BLANK_LINE.split(lines)) if p)
    chapters = (Chapter(None, paragraphs),) if paragraphs else ()
    return front_matter, Document(
        title=front_matter_string(front_matter, "title") or path.stem,
        chapters=chapters,
        author=front_matter_string(front_matter, "author"),
    )


def read_markdown(path: Path) -> tuple[dict[str, Any], Document]:
    """A .md: chapters at its top headings (see `chapter_level_of`), paragraphs of plain text.

    The title is the front matter's `title:`, else the file's title heading (a lone top
    heading over lower ones, or the only heading level with one heading: the file is one
    titled chapter), else the file's stem."""
    front_matter, body = split_front_matter(read_text(path), path.name)
    tokens = MARKDOWN.parse(body)
    levels = heading_levels(tokens)
    titled, chapter_level = chapter_level_of(levels)
    blocks = markdown_blocks(tokens)
    chapters = group_chapters(blocks, chapter_level, titled)
    heading_title = None
    if titled:
        heading_title = next(block.text for block in blocks if block.level is not None)
    elif len(levels) == 1 and len(chapters) == 1 and chapters[0].title is not None:
        heading_title = chapters[0].title
    return front_matter, Document(
        title=front_matter_string(front_matter, "title") or heading_title or path.stem,
        chapters=chapters,
        author=front_matter_string(front_matter, "author"),
    )


def front_matter_string(front_matter: dict[str, Any], key: str) -> str | None:
    """`key:` when it is a non-empty string; anything else is the caller's to refuse."""
    value = front_matter.get(key)
    return one_line(value) or None if isinstance(value, str) else None


def one_line(text: str) -> str:
    return WHITESPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Block:
    """A paragraph of plain text, or a heading (`level` 1-6) with its plain text."""

    text: str
    level: int | None = None


def heading_levels(tokens: list[Token]) -> list[int]:
    """The level of each non-empty heading, in order (an empty `#` is no heading)."""
    return [
        int(token.tag[1])
        for token, inline in pairwise(tokens)
        if token.type == "heading_open" and inline_text(inline)
    ]


def chapter_level_of(levels: list[int]) -> tuple[bool, int | None]:
    """(whether the first heading is the book's title, not a chapter; the chapter level).

    Chapters start at the smallest `#` count present, except that a file opening with a
    lone top heading over lower ones (`# Book` then `## One`, `## Two`) is titled by it and
    its chapters are the next level."""
    if not levels:
        return False, None
    top = min(levels)
    lower = sorted(set(levels) - {top})
    if levels.count(top) == 1 and levels[0] == top and lower:
        return True, lower[0]
    return False, top


def markdown_blocks(tokens: list[Token]) -> list[Block]:
    """Headings and paragraphs in reading order: a list item, a quoted paragraph, a table
    row each a paragraph. Code and HTML blocks have no inline run, so they are never read."""
    blocks: list[Block] = []
    row: list[str] = []
    heading: int | None = None
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            heading = int(token.tag[1])
        elif token.type == "heading_close":
            heading = None
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and any(row):
            blocks.append(Block(", ".join(cell for cell in row if cell)))
        elif token.type == "inline" and tokens[index - 1].type in ("th_open", "td_open"):
            row.append(inline_text(token))
        elif token.type == "inline" and inline_text(token):
            blocks.append(Block(inline_text(token), heading))
    return blocks


def inline_text(token: Token) -> str:
    """The words of an inline run: emphasis, link and code marks gone, link and code text
    kept, images and inline HTML dropped, line breaks as spaces."""
    parts: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return one_line("".join(parts))


def group_chapters(
    blocks: list[Block], chapter_level: int | None, titled: bool
) -> tuple[Chapter, ...]:
    """A chapter per heading at `chapter_level`; text before the first is an untitled
    chapter (dropped if empty), lower headings are paragraphs of their own."""
    chapters: list[PendingChapter] = [PendingChapter(None)]
    title_pending = titled
    for block in blocks:
        if block.level is not None:
            if title_pending:  # the book's title, not a chapter nor spoken text
                title_pending = False
                continue
            if block.level == chapter_level:
                chapters.append(PendingChapter(block.text))
                continue
        chapters[-1].paragraphs.append(block.text)
    if not chapters[0].paragraphs:
        chapters.pop(0)
    return tuple(Chapter(c.title, tuple(c.paragraphs)) for c in chapters)


@dataclass
class PendingChapter:
    title: str | None
    paragraphs: list[str] = field(default_factory=list)
