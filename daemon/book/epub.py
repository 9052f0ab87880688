"""EPUB as a Document, with ebooklib: the spine's reading order, chapter titles from the table
of contents, the cover, title, author and language. Only the words a reader reads are kept:
footnote markers, footnotes, page numbers, scripts and styles are not spoken.

Nothing in the file is trusted: the archive is checked before ebooklib reads it (it reads
every member into memory), DRM and damage are refused with what to do, XHTML is parsed
without entities, DTDs or network, and the text is bounded by render.max_chars."""

from __future__ import annotations

import html.entities
import io
import posixpath
import re
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import ebooklib
from ebooklib import epub
from lxml import etree

from daemon.book.document import BadDocument, Chapter, Cover, Document

# ebooklib holds every member in memory: a member or an archive bigger than any real book's
# (illustrated ones included) is refused before anything is decompressed.
MAX_MEMBER_BYTES = 64 * 2**20
MAX_ARCHIVE_BYTES = 256 * 2**20
COPY_CHUNK = 2**20
# encryption.xml also lists fonts merely obfuscated (not DRM) with these algorithms.
FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
DRM_FILES = {
    "META-INF/rights.xml": "Adobe ADEPT, META-INF/rights.xml",
    "META-INF/license.lcpl": "Readium LCP, META-INF/license.lcpl",
    "META-INF/sinf.xml": "Apple FairPlay, META-INF/sinf.xml",
}
XMLENC = "{http://www.w3.org/2001/04/xmlenc#}"
CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
OPS_TYPE = "{http://www.idpf.org/2007/ops}type"
PACKAGE_TYPE = "application/oebps-package+xml"

BLOCKS = {
    *("p", "div", "li", "blockquote", "section", "article", "header", "footer", "main"),
    *("figure", "figcaption", "pre", "dl", "dd", "dt", "ul", "ol", "table", "tr", "td", "th"),
    *("caption", "hr", "address", "body", "center", "h1", "h2", "h3", "h4", "h5", "h6"),
}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
NOT_READ = {"head", "script", "style", "template", "aside", "nav", "rt", "rp", "svg", "math"}
NOT_READ_TYPES = {
    *("noteref", "footnote", "endnote", "rearnote", "note", "footnotes", "endnotes"),
    *("rearnotes", "pagebreak", "page-list"),
}
NOT_READ_ROLES = {
    *("doc-noteref", "doc-footnote", "doc-endnote", "doc-endnotes", "doc-pagebreak"),
    "doc-backlink",
}
PAGE_NUMBER_CLASSES = {"pagenum", "pagenumber", "page-number", "page_number", "pagebreak"}
PAGE_ID = re.compile(r"(page|pg)[-_.]?\d+", re.IGNORECASE)
# A note marker: what a <sup> holds (a number, a symbol, either in brackets), and what a bare
# link to a note reads ("[12]", "(a)", "*"; never a bare number or word, which may be text).
NOTE_MARK = re.compile(r"\d{1,4}|[*†‡§¶]+|[\[(](\d{1,4}|[a-z]{1,2}|[*†‡§¶]+)[\])]", re.I)
LINKED_NOTE_MARK = re.compile(r"[*†‡§¶]+|[\[(](\d{1,4}|[a-z]{1,2}|[*†‡§¶]+)[\])]", re.I)
WHITESPACE = re.compile(r"\s+")


def read_epub(path: Path, max_chars: int) -> Document:
    """The book in `path`, or BadDocument saying why not and what to do."""
    book = load_book(path.name, unpack(path))
    chapters = read_chapters(book, path.name, max_chars)
    if not chapters:
        raise BadDocument(
            f"{path.name} has no text to speak: its pages are only images (a scanned or comic "
            "book?) or empty; voicedrop reads an EPUB's text, not its pictures"
        )
    return Document(
        title=metadata(book, "title") or path.stem,
        chapters=chapters,
        author=author(book),
        cover=cover(book),
        language=metadata(book, "language"),
    )


def unpack(path: Path) -> io.BytesIO:
    """The EPUB repacked uncompressed in memory once its sizes are sane, then checked for DRM
    and the package ebooklib needs. ebooklib reads the copy: zipfile inflates a whole member
    in one call when read at once, so a member that lies about its size would exhaust memory
    if ebooklib read the file itself; copied in chunks it never yields more than declared."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadDocument(
            f"{path.name} is not a valid EPUB: it is not a ZIP archive ({exc}), so it is "
            "damaged or was cut short; download or export it again"
        ) from None
    copy = io.BytesIO()
    try:
        with archive, zipfile.ZipFile(copy, "w") as repacked:
            check_sizes(path.name, archive.infolist())
            for member in archive.infolist():
                with archive.open(member) as source, repacked.open(member.filename, "w") as target:
                    shutil.copyfileobj(source, target, COPY_CHUNK)
        with zipfile.ZipFile(copy) as repacked:
            check_drm(path.name, repacked)
            check_package(path.name, repacked)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise damaged(path.name, exc) from None
    return copy


def damaged(name: str, exc: Exception) -> BadDocument:
    return BadDocument(f"{name} is a damaged EPUB ({exc}); download or export it again")


def check_sizes(name: str, members: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip bomb from the sizes the archive declares, before anything is
    decompressed; an EPUB's members are stored or deflated (zipfile inflates other methods
    without bound)."""
    for member in members:
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BadDocument(
                f"{name} is not a valid EPUB: {member.filename} is compressed with method "
                f"{member.compress_type}, which EPUB does not allow; export it again"
            )
        if member.file_size > MAX_MEMBER_BYTES:
            raise BadDocument(
                f"{name}: {member.filename} unpacks to {member.file_size} bytes, more than "
                f"an EPUB member may ({MAX_MEMBER_BYTES}); this is not a book voicedrop reads"
            )
    total = sum(member.file_size for member in members)
    if total > MAX_ARCHIVE_BYTES:
        raise BadDocument(
            f"{name} unpacks to {total} bytes, more than an EPUB may ({MAX_ARCHIVE_BYTES}); "
            "this is not a book voicedrop reads"
        )


def check_drm(name: str, archive: zipfile.ZipFile) -> None:
    """DRM schemes leave a licence file, or list the encrypted content in encryption.xml
    (which also lists obfuscated fonts: those are not DRM and the text is readable)."""
    names = set(archive.namelist())
    for file, scheme in DRM_FILES.items():
        if file in names:
            raise protected(name, scheme)
    if "META-INF/encryption.xml" not in names:
        return
    root = parse_xml(archive.read("META-INF/encryption.xml"))
    encrypted = []
    for data in [] if root is None else root.iter(f"{XMLENC}EncryptedData"):
        method = data.find(f"{XMLENC}EncryptionMethod")
        if method is None or method.get("Algorithm") not in FONT_OBFUSCATION:
            encrypted += [r.get("URI", "?") for r in data.iter(f"{XMLENC}CipherReference")]
    if encrypted:
        files = "file" if len(encrypted) == 1 else "files"
        raise protected(name, f"{len(encrypted)} encrypted {files}, such as {encrypted[0]}")


def protected(name: str, how: str) -> BadDocument:
    return BadDocument(
        f"{name} is protected by DRM ({how}); voicedrop cannot read it: use a DRM-free copy"
    )


def check_package(name: str, archive: zipfile.ZipFile) -> None:
    """container.xml and the package (.opf) it names: without them there is no book."""
    names = set(archive.namelist())
    if "META-INF/container.xml" not in names:
        raise BadDocument(
            f"{name} is not a valid EPUB: it has no META-INF/container.xml (which says where "
            "the book is inside the file); export it again from its source"
        )
    root = parse_xml(archive.read("META-INF/container.xml"))
    packages = [
        rootfile.get("full-path", "")
        for rootfile in ([] if root is None else root.iter(f"{CONTAINER}rootfile"))
        if rootfile.get("media-type") == PACKAGE_TYPE
    ]
    if not packages:
        raise BadDocument(
            f"{name} is not a valid EPUB: META-INF/container.xml names no package (.opf) "
            "file; export it again from its source"
        )
    if packages[0] not in names:
        raise BadDocument(
            f"{name} is not a valid EPUB: its package file {packages[0]} (named by "
            "META-INF/container.xml) is missing; export it again from its source"
        )


def parse_xml(data: bytes) -> etree._Element | None:
    """XML from the book: no entities expanded, no DTD or network fetched, no huge trees;
    broken markup recovered as far as it goes (None when nothing is left)."""
    parser = etree.XMLParser(
        recover=True,
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None


def load_book(name: str, archive: io.BytesIO) -> epub.EpubBook:
    """ebooklib's reading, its failures said as damage. It fails on a broken package with
    whatever the missing part makes it raise (AttributeError, IndexError…), hence the list."""
    try:
        return epub.read_epub(archive, {"ignore_ncx": True})
    except (epub.EpubException, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise damaged(name, exc) from None
    except KeyError as exc:
        raise damaged(name, f"a file its package lists is missing: {exc}") from None
    except (AttributeError, IndexError, TypeError, ValueError, etree.LxmlError) as exc:
        raise damaged(name, f"its package file cannot be read: {exc!r}") from None


def entries(book: epub.EpubBook, namespace: str, name: str) -> list[tuple[str | None, dict]]:
    """ebooklib's metadata entries (value, attributes), none when the namespace is absent
    (its get_metadata raises KeyError then)."""
    return book.metadata.get(epub.NAMESPACES[namespace], {}).get(name, [])


def metadata(book: epub.EpubBook, name: str) -> str | None:
    """The first non-empty Dublin Core `name` (title, language)."""
    for value, _ in entries(book, "DC", name):
        if value and one_line(value):
            return one_line(value)
    return None


def author(book: epub.EpubBook) -> str | None:
    """The dc:creators who are authors: no role, or "aut" (not the illustrator…), as EPUB 2
    (opf:role) or EPUB 3 (a meta refining the creator) says it."""
    roles = {
        attributes["refines"].removeprefix("#"): one_line(value or "")
        for value, attributes in entries(book, "OPF", "meta")
        if attributes.get("property") == "role" and attributes.get("refines")
    }
    names = []
    for value, attributes in entries(book, "DC", "creator"):
        role = roles.get(attributes.get("id", ""))
        role = next((v for k, v in attributes.items() if k.endswith("role")), role)
        if value and one_line(value) and role in (None, "aut"):
            names.append(one_line(value))
    return ", ".join(names) or None


def cover(book: epub.EpubBook) -> Cover | None:
    """The cover-image item, else the item `<meta name="cover">` names, if JPEG or PNG
    (judged by its bytes: the media type an EPUB declares is often wrong)."""
    candidates = list(book.get_items_of_type(ebooklib.ITEM_COVER))
    for _, attributes in entries(book, "OPF", "meta"):
        if attributes.get("name") == "cover" and attributes.get("content"):
            candidates.append(book.get_item_with_id(attributes["content"]))
    for item in candidates:
        data = item.get_content() if item is not None else b""
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return Cover(data, "image/png")
        if data.startswith(b"\xff\xd8\xff"):
            return Cover(data, "image/jpeg")
    return None


def one_line(text: str) -> str:
    return WHITESPACE.sub(" ", text).strip()


def toc_entries(book: epub.EpubBook) -> list[tuple[str, str | None, str]]:
    """(file, fragment or None, title) for each entry of the table of contents, in order;
    the file as the manifest names it (relative to the package)."""
    found: list[tuple[str, str | None, str]] = []

    def walk(nodes: list) -> None:
        for node in nodes:
            if isinstance(node, tuple):
                section, children = node
                add(getattr(section, "href", ""), getattr(section, "title", ""))
                walk(children)
            else:
                add(getattr(node, "href", ""), getattr(node, "title", ""))

    def add(href: str | None, title: str | None) -> None:
        if href and title and one_line(title):
            file, _, fragment = unquote(href).partition("#")
            found.append((posixpath.normpath(file), fragment or None, one_line(title)))

    # ebooklib makes an empty NCX's contents one Link with no target, not a list.
    walk(book.toc if isinstance(book.toc, list) else [book.toc])
    return found


@dataclass
class Segment:
    """The text of a spine item from where a table-of-contents entry points (or from the
    item's start, `title` None) to the next such place."""

    title: str | None
    paragraphs: list[str] = field(default_factory=list)
    heading: str | None = None  # the first heading's text, the fallback title
    opens_with_heading: bool = False


def read_chapters(book: epub.EpubBook, name: str, max_chars: int) -> tuple[Chapter, ...]:
    """The spine's documents in order, cut into chapters where the table of contents
    points; a document it does not list continues the chapter before it (a chapter split
    across files), or, before the first listed one or without a table of contents, is a
    chapter titled by its first heading (else "Chapter N")."""
    contents = toc_entries(book)
    documents = [(posixpath.normpath(item.file_name), item) for item in spine_documents(book)]
    # Contents that point at no document in the spine are as good as none.
    listed = {file for file, _, _ in contents} & {file for file, _ in documents}
    chapters: list[Segment] = []
    characters = 0
    for file, item in documents:
        starts: dict[str | None, str] = {}
        for entry_file, fragment, title in contents:
            if entry_file == file:
                starts.setdefault(fragment, title)  # a part and its first chapter: the part
        # The bytes as in the file: ebooklib's get_content() re-renders them through an HTML
        # parser, which takes a self-closed <span/> for an open one.
        for segment in segments(item.content, starts):
            characters += sum(len(p) for p in segment.paragraphs)
            if characters > max_chars:
                raise BadDocument(
                    f"{name} has more than {max_chars} characters of text, more than "
                    "render.max_chars: split the book, or raise render.max_chars in config.yaml"
                )
            if segment.title is None and chapters and (listed or not segment.paragraphs):
                chapters[-1].paragraphs.extend(segment.paragraphs)
                continue
            if segment.title is None:
                segment.title = segment.heading or f"Chapter {len(chapters) + 1}"
            chapters.append(segment)
    return tuple(
        Chapter(segment.title, without_title_heading(segment))
        for segment in chapters
        if without_title_heading(segment)
    )


def without_title_heading(segment: Segment) -> tuple[str, ...]:
    """The paragraphs, less an opening heading that only repeats the chapter's title."""
    paragraphs = segment.paragraphs
    title = (segment.title or "").casefold()
    if segment.opens_with_heading and paragraphs and paragraphs[0].casefold() == title:
        paragraphs = paragraphs[1:]
    return tuple(paragraphs)


def spine_documents(book: epub.EpubBook) -> list[epub.EpubHtml]:
    """The XHTML documents of the reading order: not the navigation document, nor items the
    spine marks linear="no" (pop-up notes and the like), nor anything outside the spine."""
    documents = []
    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if (
            isinstance(item, epub.EpubHtml)
            and not isinstance(item, epub.EpubNav)
            and linear != "no"
        ):
            documents.append(item)
    return documents


def segments(data: bytes, starts: dict[str | None, str]) -> list[Segment]:
    """A document's text cut where `starts` (fragment → title; None: the whole file)
    says chapters begin."""
    root = parse_xml(data)
    if root is None:
        return []
    reader = TextReader(found_starts(root, starts))
    reader.read(next((e for e in root.iter() if local_name(e) == "body"), root))
    reader.flush()
    return reader.segments


def found_starts(root: etree._Element, starts: dict[str | None, str]) -> dict[str | None, str]:
    """`starts` less the fragments the document lacks; the first entry pointing into it
    titles its start when its own anchor is missing (a contents entry is never lost)."""
    ids = {element.get("id") for element in root.iter() if element.get("id")}
    found = {key: title for key, title in starts.items() if key is None or key in ids}
    if starts and None not in found and next(iter(starts)) not in ids:
        found[None] = next(iter(starts.values()))
    return found


class TextReader:
    """Paragraphs from XHTML: each block element's own text is one (so the loose text of a
    div between its blocks is one too); inline markup joins into the words around it."""

    def __init__(self, starts: dict[str | None, str]) -> None:
        self.starts = starts
        self.segments = [Segment(starts.get(None))]
        self.words: list[str] = []

    def read(self, element: etree._Element) -> None:
        if not isinstance(element.tag, str):  # an entity, left unexpanded when parsed
            if isinstance(element, etree._Entity):
                self.words.append(html.entities.html5.get(f"{element.name};", ""))
            self.add(element.tail)
            return
        if not_read(element):
            self.add(element.tail)
            return
        anchor = element.get("id")
        if anchor is not None and anchor in self.starts:
            self.flush()
            self.segments.append(Segment(self.starts[anchor]))
        name = local_name(element)
        if name in BLOCKS:
            self.flush()
        if name == "br":
            self.add(" ")
        self.add(element.text)  # a <br> left open holds the words after it
        for child in element:
            self.read(child)
        if name in BLOCKS:
            self.flush(heading=name in HEADINGS)
        self.add(element.tail)

    def add(self, text: str | None) -> None:
        if text:
            self.words.append(text)

    def flush(self, heading: bool = False) -> None:
        """The words so far as a paragraph of the current segment."""
        text = one_line("".join(self.words))
        self.words = []
        if not text:
            return
        segment = self.segments[-1]
        if heading and segment.heading is None:
            segment.heading = text
            segment.opens_with_heading = not segment.paragraphs
        segment.paragraphs.append(text)


def local_name(element: etree._Element) -> str:
    """ "p" for {xhtml}p, P or p; "switch" for an epub:switch whose prefix was never declared
    (recovered markup keeps it in the tag, which lxml's QName refuses)."""
    if not isinstance(element.tag, str):
        return ""
    return element.tag.rpartition("}")[2].rpartition(":")[2].lower()


def not_read(element: etree._Element) -> bool:
    """Footnote markers and bodies, page numbers, and what is not text at all."""
    name = local_name(element)
    types = set((element.get(OPS_TYPE) or element.get("epub:type") or "").split())
    roles = set((element.get("role") or "").split())
    classes = set((element.get("class") or "").lower().split())
    if name in NOT_READ or types & NOT_READ_TYPES or roles & NOT_READ_ROLES:
        return True
    if name in ("span", "a") and (
        PAGE_ID.fullmatch(element.get("id") or "") or classes & PAGE_NUMBER_CLASSES
    ):
        return True
    if name == "sup":
        return any(local_name(e) == "a" for e in element.iter()) or bool(
            NOTE_MARK.fullmatch(one_line("".join(element.itertext())))
        )
    return (
        name == "a"
        and "#" in (element.get("href") or "")
        and bool(LINKED_NOTE_MARK.fullmatch(one_line("".join(element.itertext()))))
    )
