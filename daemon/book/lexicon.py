"""Pronunciation lexicon: words the voice says wrong, respelled the way they should sound.

Two files, both optional, each a flat YAML mapping `word: respelling`: `<root>/lexicon.yaml`
for every voice and `voices/<voice>/lexicon.yaml` for one voice, whose entries replace the
global ones written the same way. Rules (README, "Pronunciation lexicon"):

- whole words only: "cat" never changes "catalogue"; a word boundary is anything that is not
  a letter, digit or underscore in any script, so "Smith" still matches in "Smith's";
- an entry written in lower case matches any case ("cia" matches "cia", "Cia", "CIA"); an
  entry with a capital matches exactly that case ("CIA" matches "CIA" only);
- an entry of several words matches them across any spacing or line break ("New York"),
  though not across a blank line between paragraphs;
- the longest entry wins where entries overlap, and an exact-case entry before a lower-case
  one of the same length; the respelling is used exactly as written;
- one pass: a respelling is never looked up again, so entries cannot chain or loop.

The lexicon is applied before numbers are read (`prepare_for_speech`), so a respelling of
"1984" or "Dr." wins over the number and abbreviation rules. A file that cannot be used
raises LexiconError, a ConfigError, naming the file and the entry: like a broken voice.yaml,
it stops the voice's texts until the file is fixed rather than rendering them unfixed.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.book.normalise import speakable
from daemon.core.config import MAX_YAML_BYTES, ConfigError, load_small_yaml, shorten
from daemon.core.paths import VoicePaths

LEXICON_FILE = "lexicon.yaml"
MAX_ENTRIES = 2000  # per file: a long book's names and terms, far from a dictionary
MAX_WORD_CHARACTERS = 100
MAX_RESPELLING_CHARACTERS = 200
WORD_RUN = re.compile(r"\w+")
PARAGRAPH_BREAK = re.compile(r"(\n\s*\n)")  # no entry spans one


class LexiconError(ConfigError):
    """A lexicon.yaml that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Entry:
    word: str  # as written in the file, its spacing made single
    respelling: str

    @property
    def exact_case(self) -> bool:
        return self.word != self.word.lower()

    def pattern(self) -> str:
        """The entry's words with any whitespace between them; case-blind when lower case."""
        words = r"\s+".join(re.escape(word) for word in self.word.split())
        return words if self.exact_case else f"(?i:{words})"


@dataclass(frozen=True)
class Lexicon:
    """Entries in the order they are tried: longest first, exact case first among equals."""

    entries: tuple[Entry, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> Lexicon:
        return cls(tuple(sorted(entries, key=lambda e: (-len(e.word), not e.exact_case))))

    @classmethod
    def load(cls, voice: VoicePaths) -> Lexicon:
        """The global lexicon with the voice's own entries over it; LexiconError if either
        file cannot be used."""
        merged = {entry.word: entry for entry in read_lexicon(voice.root.path / LEXICON_FILE)}
        merged |= {entry.word: entry for entry in read_lexicon(voice.home / LEXICON_FILE)}
        return cls.of(merged.values())

    @functools.cached_property
    def by_first_word(self) -> dict[str, tuple[int, ...]]:
        """Entries by their first run of letters and digits, case folded: a text is only
        matched against the entries whose first word it contains, so a lexicon of
        thousands costs no more than the few entries a paragraph uses."""
        index: dict[str, list[int]] = {}
        for number, entry in enumerate(self.entries):
            first = WORD_RUN.search(entry.word.casefold())
            assert first is not None  # checked_entry: every word has a letter or digit
            index.setdefault(first[0], []).append(number)
        return {word: tuple(numbers) for word, numbers in index.items()}

    def candidates(self, paragraph: str) -> tuple[Entry, ...]:
        """The entries that may occur in `paragraph`, in the order they are tried."""
        words = set(WORD_RUN.findall(paragraph.casefold()))
        numbers = {n for word in words for n in self.by_first_word.get(word, ())}
        return tuple(self.entries[n] for n in sorted(numbers))

    def apply(self, text: str) -> str:
        """`text` with every entry's words replaced by its respelling, in one pass."""
        return "".join(
            respelled(paragraph, self.candidates(paragraph))
            for paragraph in PARAGRAPH_BREAK.split(text)
        )


def respelled(paragraph: str, entries: tuple[Entry, ...]) -> str:
    if not entries:
        return paragraph
    return matcher(entries).sub(lambda match: which(entries, match).respelling, paragraph)


def which(entries: tuple[Entry, ...], match: re.Match[str]) -> Entry:
    assert match.lastindex is not None  # every alternative of matcher() is a group
    return entries[match.lastindex - 1]


@functools.lru_cache(maxsize=1024)
def matcher(entries: tuple[Entry, ...]) -> re.Pattern[str]:
    """One alternation, one group per entry: a match's group says which entry it was."""
    alternatives = "|".join(f"({entry.pattern()})" for entry in entries)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def lexicon_digest(voice: VoicePaths) -> str:
    """A hash of both lexicon files as they are now, for the sidecar: when it changes, the
    voice's texts are rendered again, and only the chunks whose spoken words changed are
    rendered anew (the chunk cache is keyed by what is spoken)."""
    digest = hashlib.sha256()
    for path in (voice.root.path / LEXICON_FILE, voice.home / LEXICON_FILE):
        try:
            with open(path, "rb") as handle:
                digest.update(handle.read(MAX_YAML_BYTES + 1))
        except OSError:
            digest.update(b"none")
        digest.update(b"\0")
    return digest.hexdigest()


def prepare_for_speech(text: str, lexicon: Lexicon, language: str) -> str:
    """What is spoken for `text`: the lexicon's respellings first (a user's respelling wins
    over the number rules), then `speakable()`."""
    return speakable(lexicon.apply(text), language)


def read_lexicon(path: Path) -> list[Entry]:
    """The entries of one lexicon.yaml; none when there is no such file."""
    if not path.is_file():
        return []
    if path.stat().st_size > MAX_YAML_BYTES:
        raise LexiconError(
            f"{path}: larger than {MAX_YAML_BYTES >> 10} KiB; a lexicon is a list of words "
            f"and their respellings, at most {MAX_ENTRIES}"
        )
    try:
        data = load_small_yaml(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise LexiconError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except ValueError as exc:
        raise LexiconError(f"{path}: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise LexiconError(
            f"{path}: must be a mapping of `word: respelling`, one a line, "
            f"not a {type(data).__name__}"
        )
    if len(data) > MAX_ENTRIES:
        raise LexiconError(f"{path}: {len(data)} entries, at most {MAX_ENTRIES} are read")
    return [checked_entry(path, word, respelling) for word, respelling in data.items()]


def checked_entry(path: Path, word: Any, respelling: Any) -> Entry:
    """An entry whose word and respelling are plain text of bounded length."""
    where = f"{path}: entry {shorten(repr(word), 60)}"
    if not isinstance(word, str):
        raise LexiconError(
            f"{where}: YAML read this word as a {type(word).__name__}; put it in quotes "
            f'("{word}": …) to respell it'
        )
    if not isinstance(respelling, str):
        raise LexiconError(
            f"{where}: the respelling must be text (quote it if YAML reads it as a number, "
            f"yes/no or null), got {shorten(repr(respelling), 60)}"
        )
    word, respelling = " ".join(word.split()), " ".join(respelling.split())
    for what, text, limit in (
        ("word", word, MAX_WORD_CHARACTERS),
        ("respelling", respelling, MAX_RESPELLING_CHARACTERS),
    ):
        if not any(character.isalnum() for character in text):
            raise LexiconError(f"{where}: the {what} has no letter or digit")
        if len(text) > limit:
            raise LexiconError(f"{where}: the {what} is longer than {limit} characters")
        if any(unicodedata.category(character) == "Cc" for character in text):
            raise LexiconError(f"{where}: the {what} contains control characters")
    return Entry(word, respelling)
