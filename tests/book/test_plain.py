"""Plain text and Markdown become chapters of plain paragraphs: what a listener hears."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from daemon.book.document import BOOK_SUFFIXES, Chapter, read_document
from daemon.book.plain import read_markdown, read_plain
from daemon.tts.texts import BadText

MARKDOWN_SYNTAX = ("*", "#", "[", "](", "`", "~~", "|", "<", ">", "_")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_hard_wrapped_text_becomes_paragraphs_of_joined_lines(tmp_path: Path) -> None:
    text = write(
        tmp_path / "walk.txt",
        "It was a bright cold day in April,\nand the clocks were striking thirteen.\n"
        "\n  \n"
        "Winston Smith slipped quickly\r\nthrough the glass\rdoors.\n\n\n",
    )
    front_matter, document = read_plain(text)
    assert front_matter == {}
    assert document.title == "walk"
    assert document.chapters == (
        Chapter(
            None,
            (
                "It was a bright cold day in April, and the clocks were striking thirteen.",
                "Winston Smith slipped quickly through the glass doors.",
            ),
        ),
    )


def test_text_front_matter_is_returned_and_names_the_book(tmp_path: Path) -> None:
    text = tmp_path / "book.txt"
    body = "---\ntitle: The Long Walk\nauthor: Ann Smith\npreset: fast\n---\nOne line.\n"
    text.write_bytes(codecs.BOM_UTF16_LE + body.encode("utf-16-le"))  # Notepad's "Unicode"
    front_matter, document = read_plain(text)
    assert front_matter == {"title": "The Long Walk", "author": "Ann Smith", "preset": "fast"}
    assert (document.title, document.author) == ("The Long Walk", "Ann Smith")
    assert document.chapters == (Chapter(None, ("One line.",)),)


def test_an_empty_text_has_no_chapters(tmp_path: Path) -> None:
    _, document = read_plain(write(tmp_path / "empty.txt", "---\nvoice: x\n---\n\n  \n"))
    assert document.chapters == ()
    assert document.characters() == 0


def test_text_that_is_not_utf8_is_refused_with_the_byte(tmp_path: Path) -> None:
    text = tmp_path / "latin.txt"
    text.write_bytes("café".encode("latin-1"))
    with pytest.raises(BadText, match="0xe9"):
        read_plain(text)


STORY = """---
author: Jo March
---
A note before the first chapter, with *emphasis* and a [link](http://example.com).

# The *First* Chapter

Some **bold** words, `inline code`, and ~~struck~~ text.
An image ![alt text never spoken](cover.png) sits here, with <b>inline html</b> too.

## A section

- first item
- second item with [a link](#x)
  1. nested item

> A quoted line
> that wraps.

```python
print("code is never read")
```

    indented code is not read either

<div>an html block is not read</div>

| Name | Age |
|------|-----|
| Ann  | 30  |

Setext Chapter
==============

Last words\\
after a hard break.[^note]

[^note]: A footnote body,
    never read.
"""


def test_markdown_headings_become_chapters_and_no_syntax_is_spoken(tmp_path: Path) -> None:
    front_matter, document = read_markdown(write(tmp_path / "story.md", STORY))
    assert front_matter == {"author": "Jo March"}
    assert (document.title, document.author) == ("story", "Jo March")
    assert [c.title for c in document.chapters] == [None, "The First Chapter", "Setext Chapter"]
    assert document.chapters[0].paragraphs == (
        "A note before the first chapter, with emphasis and a link.",
    )
    assert document.chapters[1].paragraphs == (
        "Some bold words, inline code, and struck text. An image sits here, with inline html too.",
        "A section",
        "first item",
        "second item with a link",
        "nested item",
        "A quoted line that wraps.",
        "Name, Age",
        "Ann, 30",
    )
    assert document.chapters[2].paragraphs == ("Last words after a hard break.",)
    spoken = " ".join(p for c in document.chapters for p in (c.title or "", *c.paragraphs))
    for mark in MARKDOWN_SYNTAX:
        assert mark not in spoken
    for never in ("alt text", "never read", "indented code", "html block", "http", "footnote"):
        assert never not in spoken


def test_a_lone_top_heading_titles_the_book_and_the_next_level_are_chapters(
    tmp_path: Path,
) -> None:
    text = "An epigraph.\n\n# The Book\n\nA preface.\n\n## One\n\nFirst.\n\n### Scene\n\nMore.\n\n"
    text += "## Two\n\nSecond.\n"
    _, document = read_markdown(write(tmp_path / "novel.md", text))
    assert document.title == "The Book"
    assert document.chapters == (
        Chapter(None, ("An epigraph.", "A preface.")),
        Chapter("One", ("First.", "Scene", "More.")),
        Chapter("Two", ("Second.",)),
    )


def test_a_single_titled_chapter_titles_the_book_unless_front_matter_does(
    tmp_path: Path,
) -> None:
    _, document = read_markdown(write(tmp_path / "poem.md", "# Ode\n\nA line.\n"))
    assert document.title == "Ode"
    assert document.chapters == (Chapter("Ode", ("A line.",)),)
    _, titled = read_markdown(write(tmp_path / "t.md", "---\ntitle: Odes\n---\n# Ode\n\nA.\n"))
    assert titled.title == "Odes"


def test_several_top_headings_leave_the_stem_as_title(tmp_path: Path) -> None:
    _, document = read_markdown(write(tmp_path / "notes.md", "## A\n\nx\n\n## B\n\ny\n"))
    assert document.title == "notes"
    assert document.chapters == (Chapter("A", ("x",)), Chapter("B", ("y",)))


def test_read_document_dispatches_on_the_suffix_in_any_case(tmp_path: Path) -> None:
    assert {".txt", ".md", ".markdown", ".epub"} <= set(BOOK_SUFFIXES)
    _, text = read_document(write(tmp_path / "a.TXT", "# not a heading\n"), 1000)
    assert text.chapters == (Chapter(None, ("# not a heading",)),)
    _, markdown = read_document(write(tmp_path / "b.Markdown", "# Heading\n\nx\n"), 1000)
    assert markdown.chapters == (Chapter("Heading", ("x",)),)
