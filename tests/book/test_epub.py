"""EPUBs read as a listener expects: the spine's order, the contents' titles, the cover and
metadata, and none of the footnotes or page numbers; bad EPUBs refused with what to do."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from ebooklib import epub
from PIL import Image

from daemon.book.document import BadDocument, Chapter, read_document
from daemon.book.epub import MAX_MEMBER_BYTES, read_epub

MAX_CHARS = 200_000


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 6), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def page(uid: str, body: str) -> epub.EpubHtml:
    item = epub.EpubHtml(uid=uid, file_name=f"{uid}.xhtml", lang="en")
    item.content = f"<html><body>{body}</body></html>"
    return item


CHAPTER_ONE = """<h1>The Harbour</h1>
<p>The ships came in at dawn.<sup><a epub:type="noteref" href="#fn1">1</a></sup> Gulls cried
over the <em>grey</em> water.</p>
<p>Nobody<span epub:type="pagebreak" id="page_12" title="12">12</span> waited on the quay.</p>
<aside epub:type="footnote" id="fn1"><p>A footnote that is never spoken.</p></aside>
<div>Loose words in a div.<p>A paragraph inside it.</p></div>
<script>var spoken = false;</script>"""


def book_epub(path: Path, cover: bytes | None = None) -> Path:
    """Three chapters (the second split across two files), a cover, metadata, a footnote, a
    page number, and a document that is not in the spine."""
    book = epub.EpubBook()
    book.set_identifier("voicedrop-test-1")
    book.set_title("The Sea Book")
    book.set_language("en-GB")
    book.add_author("Mary Shore")
    book.add_author("Ian Inks", role="ill", uid="illustrator")
    book.set_cover("cover.png", png() if cover is None else cover)
    one = page("one", CHAPTER_ONE)
    two_a = page("two-a", "<h2>Storm</h2><p>The wind rose.</p>")
    two_b = page("two-b", "<p>The mast broke in the night.</p>")
    three = page(
        "three",
        '<h1>Home</h1><p>They came home<sup>[2]</sup> at last<a role="doc-noteref" href="#n3">3'
        '</a>.<span class="pagenum">[Pg 40]</span></p><section role="doc-endnotes"><p>An endnote'
        "</p></section>",
    )
    stray = page("stray", "<p>A stray page not in the spine.</p>")
    for item in (one, two_a, two_b, three, stray):
        book.add_item(item)
    book.toc = [
        epub.Link("one.xhtml", "Chapter 1: The Harbour", "one"),
        epub.Link("two-a.xhtml", "Chapter 2: Storm", "two"),
        epub.Link("three.xhtml#top", "Chapter 3: Home", "three"),
    ]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", one, two_a, two_b, three]
    epub.write_epub(str(path), book)
    return path


def test_an_epub_is_read_in_spine_order_with_its_contents_titles(tmp_path: Path) -> None:
    document = read_epub(book_epub(tmp_path / "sea.epub"), MAX_CHARS)
    assert (document.title, document.author, document.language) == (
        "The Sea Book",
        "Mary Shore",
        "en-GB",
    )
    assert document.chapters == (
        Chapter(
            "Chapter 1: The Harbour",
            (
                "The Harbour",
                "The ships came in at dawn. Gulls cried over the grey water.",
                "Nobody waited on the quay.",
                "Loose words in a div.",
                "A paragraph inside it.",
            ),
        ),
        Chapter("Chapter 2: Storm", ("Storm", "The wind rose.", "The mast broke in the night.")),
        Chapter("Chapter 3: Home", ("Home", "They came home at last.")),
    )
    spoken = " ".join(p for c in document.chapters for p in c.paragraphs)
    for never in ("footnote", "12", "1 ", "[2]", "3", "40", "endnote", "stray", "spoken"):
        assert never not in spoken


def test_the_cover_is_the_image_the_epub_names(tmp_path: Path) -> None:
    document = read_epub(book_epub(tmp_path / "sea.epub"), MAX_CHARS)
    assert document.cover is not None
    assert (document.cover.data, document.cover.mime) == (png(), "image/png")
    gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"  # not a cover an audiobook can carry
    assert read_epub(book_epub(tmp_path / "gif.epub", cover=gif), MAX_CHARS).cover is None


def test_read_document_reads_an_epub_without_front_matter(tmp_path: Path) -> None:
    front_matter, document = read_document(book_epub(tmp_path / "Sea.EPUB"), MAX_CHARS)
    assert front_matter == {}
    assert len(document.chapters) == 3


def test_a_book_longer_than_max_chars_is_refused_with_the_setting(tmp_path: Path) -> None:
    with pytest.raises(BadDocument, match=r"more than 50 characters.*render\.max_chars"):
        read_epub(book_epub(tmp_path / "sea.epub"), 50)


def test_a_truncated_epub_is_refused_as_damaged(tmp_path: Path) -> None:
    whole = book_epub(tmp_path / "whole.epub").read_bytes()
    cut = tmp_path / "cut.epub"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadDocument, match=r"not a ZIP archive.*download or export it again"):
        read_epub(cut, MAX_CHARS)


def rezip(source: Path, target: Path, drop: str = "", add: dict[str, bytes] | None = None) -> Path:
    """A copy of an EPUB without `drop` and with `add`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for member in old.infolist():
            if member.filename != drop:
                new.writestr(member, old.read(member))
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return target


def test_an_epub_without_container_xml_is_refused(tmp_path: Path) -> None:
    broken = rezip(book_epub(tmp_path / "a.epub"), tmp_path / "b.epub", "META-INF/container.xml")
    with pytest.raises(BadDocument, match=r"no META-INF/container\.xml"):
        read_epub(broken, MAX_CHARS)


def test_an_epub_without_its_package_file_is_refused(tmp_path: Path) -> None:
    broken = rezip(book_epub(tmp_path / "a.epub"), tmp_path / "b.epub", "EPUB/content.opf")
    with pytest.raises(BadDocument, match=r"package file EPUB/content\.opf .* is missing"):
        read_epub(broken, MAX_CHARS)


ENCRYPTION = """<?xml version="1.0"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
  xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
  <enc:EncryptedData>
    <enc:EncryptionMethod Algorithm="{algorithm}"/>
    <enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData>
  </enc:EncryptedData>
</encryption>"""


def test_a_drm_protected_epub_is_refused(tmp_path: Path) -> None:
    encryption = ENCRYPTION.format(
        algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc", uri="EPUB/one.xhtml"
    )
    locked = rezip(
        book_epub(tmp_path / "a.epub"),
        tmp_path / "locked.epub",
        add={"META-INF/encryption.xml": encryption.encode()},
    )
    with pytest.raises(BadDocument) as refused:
        read_epub(locked, MAX_CHARS)
    assert str(refused.value) == (
        "locked.epub is protected by DRM (1 encrypted file, such as EPUB/one.xhtml); "
        "voicedrop cannot read it: use a DRM-free copy"
    )
    adept = rezip(
        book_epub(tmp_path / "b.epub"), tmp_path / "adept.epub", add={"META-INF/rights.xml": b"x"}
    )
    with pytest.raises(BadDocument, match=r"protected by DRM \(Adobe ADEPT"):
        read_epub(adept, MAX_CHARS)


def test_obfuscated_fonts_are_not_drm(tmp_path: Path) -> None:
    encryption = ENCRYPTION.format(
        algorithm="http://www.idpf.org/2008/embedding", uri="EPUB/font.otf"
    )
    fonts = rezip(
        book_epub(tmp_path / "a.epub"),
        tmp_path / "fonts.epub",
        add={"META-INF/encryption.xml": encryption.encode()},
    )
    assert len(read_epub(fonts, MAX_CHARS).chapters) == 3


def test_an_epub_of_only_images_is_refused(tmp_path: Path) -> None:
    book = epub.EpubBook()
    book.set_identifier("comic")
    book.set_title("Pictures")
    image = epub.EpubImage(uid="p1", file_name="p1.png", media_type="image/png", content=png())
    pages = [page(f"p{n}", f'<div><img src="p1.png" alt="panel {n}"/></div>') for n in (2, 3)]
    for item in (image, *pages):
        book.add_item(item)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = pages
    path = tmp_path / "comic.epub"
    epub.write_epub(str(path), book)
    with pytest.raises(BadDocument, match=r"comic\.epub has no text to speak: its pages are only"):
        read_epub(path, MAX_CHARS)


def test_a_zip_bomb_member_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.epub"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("mimetype", "application/epub+zip")
        with archive.open("EPUB/huge.xhtml", "w", force_zip64=True) as member:
            zeros = bytes(2**20)
            for _ in range(MAX_MEMBER_BYTES // len(zeros) + 1):
                member.write(zeros)
    assert bomb.stat().st_size < MAX_MEMBER_BYTES // 100
    with pytest.raises(BadDocument, match=r"EPUB/huge\.xhtml unpacks to \d+ bytes"):
        read_epub(bomb, MAX_CHARS)


def test_chapters_start_where_the_contents_point_inside_a_file(tmp_path: Path) -> None:
    book = epub.EpubBook()
    book.set_identifier("anchors")
    book.set_title("Anchors")
    body = '<p>Title page.</p><h2 id="c1">One</h2><p>First.</p><h2 id="c2">Two</h2><p>Second.</p>'
    whole = page("whole", body)
    book.add_item(whole)
    book.toc = [
        epub.Link("whole.xhtml#c1", "One", "c1"),
        epub.Link("whole.xhtml#c2", "Two", "c2"),
        epub.Link("whole.xhtml#gone", "Missing anchor", "c3"),
    ]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = [whole]
    epub.write_epub(str(tmp_path / "anchors.epub"), book)
    document = read_epub(tmp_path / "anchors.epub", MAX_CHARS)
    assert document.chapters == (
        Chapter("Chapter 1", ("Title page.",)),
        Chapter("One", ("First.",)),
        Chapter("Two", ("Second.",)),
    )


def test_a_member_that_lies_about_its_size_is_never_unpacked_whole(tmp_path: Path) -> None:
    """A chapter's headers declare 1000 bytes; it inflates to 32 MiB. Read at once (as
    ebooklib reads), zipfile would inflate it all before cutting it to the declared size."""
    liar = rezip(book_epub(tmp_path / "a.epub"), tmp_path / "liar.epub", "EPUB/two-b.xhtml")
    with zipfile.ZipFile(liar, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("EPUB/two-b.xhtml", bytes(32 * 2**20))
    data = bytearray(liar.read_bytes())
    name = b"EPUB/two-b.xhtml"
    # The uncompressed size: 8 bytes before the name in the local header, 22 in the central.
    for size_at in (data.find(name) - 8, data.rfind(name) - 22):
        data[size_at : size_at + 4] = (1000).to_bytes(4, "little")
    liar.write_bytes(data)
    with zipfile.ZipFile(liar) as archive:
        assert archive.getinfo("EPUB/two-b.xhtml").file_size == 1000
    tracemalloc.start()
    try:
        with pytest.raises(BadDocument, match=r"liar\.epub is a damaged EPUB \(Bad CRC-32"):
            read_epub(liar, MAX_CHARS)
        assert tracemalloc.get_traced_memory()[1] < 8 * 2**20
    finally:
        tracemalloc.stop()


def test_an_epub2_contents_ncx_with_parts_titles_the_chapters(tmp_path: Path) -> None:
    book = epub.EpubBook()
    book.set_identifier("ncx")
    book.set_title("Parts")
    book.add_metadata("DC", "creator", "Ann Author", {"{http://www.idpf.org/2007/opf}role": "aut"})
    book.add_metadata("DC", "creator", "Ed Itor", {"{http://www.idpf.org/2007/opf}role": "edt"})
    part, one, two = (
        page("part", "<h1>Part One</h1>"),
        page("c1", "<p>Alpha.</p>"),
        page("c2", "<p>Beta.</p>"),
    )
    for item in (part, one, two):
        book.add_item(item)
    book.toc = [
        (
            epub.Section("Part One", "part.xhtml"),
            [epub.Link("c1.xhtml", "First", "c1"), epub.Link("c2.xhtml", "Second", "c2")],
        )
    ]
    book.add_item(epub.EpubNcx())
    book.spine = [part, one, two]
    epub.write_epub(str(tmp_path / "parts.epub"), book)
    with zipfile.ZipFile(tmp_path / "parts.epub") as archive:
        assert "EPUB/nav.xhtml" not in archive.namelist()
    document = read_epub(tmp_path / "parts.epub", MAX_CHARS)
    assert document.author == "Ann Author"
    assert document.language is None
    assert document.chapters == (Chapter("First", ("Alpha.",)), Chapter("Second", ("Beta.",)))


def test_without_contents_each_document_is_a_chapter_titled_by_its_heading(
    tmp_path: Path,
) -> None:
    book = epub.EpubBook()
    book.set_identifier("bare")
    documents = [page("a", "<h2>Dawn</h2><p>Light.</p>"), page("b", "<p>No heading.</p>")]
    for item in (*documents, epub.EpubNcx()):  # an empty NCX
        book.add_item(item)
    book.spine = documents
    epub.write_epub(str(tmp_path / "bare.epub"), book)
    document = read_epub(tmp_path / "bare.epub", MAX_CHARS)
    assert document.title == "bare"
    assert document.chapters == (
        Chapter("Dawn", ("Light.",)),
        Chapter("Chapter 2", ("No heading.",)),
    )


def test_entities_are_named_characters_and_never_fetch_or_expand(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET", encoding="utf-8")
    chapter = f"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html [
  <!ENTITY xxe SYSTEM "file://{secret}">
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"><body>
<p>Wait&nbsp;for&#160;it&mdash;now.&xxe;&lol2;</p>
<p>Unclosed <br> markup <b>still read.</p>
<p>Before a page break<span epub:type="pagebreak" id="page_7" title="7"/> and after it.</p>
<p>An <ops:switch>undeclared prefix</ops:switch> is read.</p>
</body></html>""".encode()
    raw = rezip(
        book_epub(tmp_path / "a.epub"),
        tmp_path / "raw.epub",
        "EPUB/two-b.xhtml",
        add={"EPUB/two-b.xhtml": chapter},
    )
    document = read_epub(raw, MAX_CHARS)
    assert document.chapters[1].paragraphs[-4:] == (
        "Wait for it\u2014now.",
        "Unclosed markup still read.",
        "Before a page break and after it.",
        "An undeclared prefix is read.",
    )
