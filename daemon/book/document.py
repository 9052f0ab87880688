"""What every input file becomes before it is spoken: a Document of chapters of paragraphs,
with the title, author, cover and language an audiobook is tagged with. A plain text is a
one-chapter document; readers for other formats (plain.py for .txt/.md, epub.py) produce
the same thing, so nothing after reading knows which file a book came in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.tts.texts import BadText

BOOK_SUFFIXES = (".txt", ".md", ".markdown", ".epub")


class BadDocument(BadText):
    """A file that cannot be read as a book (corrupt, DRM-protected, nothing to speak): its
    message goes into `<name>.error.txt` and must say what to do."""


@dataclass(frozen=True)
class Chapter:
    """Paragraphs of plain text to speak (markup, footnote markers and page numbers
    already removed); `title` None for text before a Markdown file's first heading."""

    title: str | None
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class Cover:
    data: bytes
    mime: str  # "image/jpeg" or "image/png"


@dataclass(frozen=True)
class Document:
    title: str
    chapters: tuple[Chapter, ...]
    author: str | None = None
    cover: Cover | None = None
    language: str | None = None  # BCP 47 as the file states it ("en", "en-GB"), if it does

    def characters(self) -> int:
        return sum(len(p) for chapter in self.chapters for p in chapter.paragraphs)


def read_document(path: Path, max_chars: int) -> tuple[dict[str, Any], Document]:
    """The file's front matter (an EPUB has none: `{}`) and its Document, by its suffix in
    any case. `max_chars` bounds what an EPUB may unpack; a text's size the caller bounds
    before reading it."""
    from daemon.book.epub import read_epub  # the readers import the types above
    from daemon.book.plain import read_markdown, read_plain

    suffix = path.suffix.lower()
    if suffix == ".epub":
        return {}, read_epub(path, max_chars)
    if suffix in (".md", ".markdown"):
        return read_markdown(path)
    if suffix == ".txt":
        return read_plain(path)
    raise BadDocument(
        f"{path.name}: voicedrop reads {', '.join(BOOK_SUFFIXES)} files, not {suffix or 'this'}"
    )
