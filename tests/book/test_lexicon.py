"""daemon.book.lexicon: the global and the voice's lexicon.yaml, whole-word and case rules,
one pass, the entries a text uses, and files that are refused with what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.book.lexicon import (
    MAX_ENTRIES,
    Entry,
    Lexicon,
    LexiconError,
    prepare_for_speech,
)
from daemon.core.config import ConfigError
from daemon.core.paths import Root, VoicePaths


@pytest.fixture
def voice(tmp_path: Path) -> VoicePaths:
    voice = Root.at(tmp_path).voice("tom")
    voice.home.mkdir(parents=True)
    return voice


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def lexicon(**entries: str) -> Lexicon:
    return Lexicon.of(Entry(word, respelling) for word, respelling in entries.items())


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("The cia, Cia and CIA.", "The see eye ay, see eye ay and see eye ay."),
        ("special agents", "special agents"),  # whole words only
        ("ciao and acia", "ciao and acia"),
    ],
)
def test_a_lower_case_entry_matches_any_case_of_the_whole_word(text: str, said: str) -> None:
    assert lexicon(cia="see eye ay").apply(text) == said


def test_an_entry_with_capitals_matches_only_that_case() -> None:
    words = Lexicon.of([Entry("US", "you ess"), Entry("us", "uss")])
    assert words.apply("Tell US about us, Us.") == "Tell you ess about uss, uss."
    assert lexicon(Reading="redding").apply("Reading is reading") == "redding is reading"


def test_words_are_matched_in_any_script_and_beside_punctuation() -> None:
    words = Lexicon.of(
        [Entry("naïve", "nah eve"), Entry("Smith", "Smyth"), Entry("C++", "C plus plus")]
    )
    assert words.apply("naïve, naïveté") == "nah eve, naïveté"
    assert words.apply("Smith's book, (Smith)") == "Smyth's book, (Smyth)"
    assert words.apply("C++ and C++11") == "C plus plus and C++11"


def test_several_words_longest_first_in_one_pass() -> None:
    words = Lexicon.of([Entry("New York", "noo york"), Entry("York", "yawk"), Entry("noo", "NEW")])
    assert words.apply("New\nYork, York, New Yorker") == "noo york, yawk, New Yorker"
    assert words.apply("New\n\nYork") == "New\n\nyawk"  # never across paragraphs


def test_an_empty_lexicon_changes_nothing() -> None:
    assert Lexicon().apply("CIA") == "CIA"


def test_the_voice_lexicon_overrides_the_global_one(voice: VoicePaths) -> None:
    write(voice.root.path / "lexicon.yaml", "cia: see eye ay\nGandalf: gan dolf\n")
    write(
        voice.home / "lexicon.yaml", "# tom says it his way\ngandalf: GAN-dalf\ncia: the company\n"
    )
    words = Lexicon.load(voice)
    assert words.apply("Gandalf met the CIA") == "gan dolf met the the company"
    assert words.apply("gandalf") == "GAN-dalf"  # the exact-case global one does not match


def test_no_files_or_empty_files_are_an_empty_lexicon(voice: VoicePaths) -> None:
    assert Lexicon.load(voice).apply("CIA 1999") == "CIA 1999"
    write(voice.home / "lexicon.yaml", "# nothing yet\n")
    assert Lexicon.load(voice).entries == ()


def test_the_respelling_wins_over_the_number_rules() -> None:
    words = Lexicon.of([Entry("1984", "nineteen eighty-four"), Entry("Dr.", "Drive")])
    said = prepare_for_speech("In 1984 on Elm Dr. it cost $5, Dr. Who said.", words, "en")
    assert said == "In nineteen eighty-four on Elm Drive it cost five dollars, Drive Who said."
    assert prepare_for_speech("Chapter IV", Lexicon(), "en") == "Chapter four"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- cia\n- nato\n", "must be a mapping of `word: respelling`.*not a list"),
        ("a: &x [1]\nb: *x\n", "anchors and aliases"),
        ("cia: [see, eye]\n", "entry 'cia': the respelling must be text"),
        ("no: know\n", "entry False: YAML read this word as a bool; put it in quotes"),
        ("1984: nineteen\n", "entry 1984: .*put it in quotes"),
        ("cia: ''\n", "entry 'cia': the respelling has no letter or digit"),
        ("'...': dots\n", r"entry '\.\.\.': the word has no letter or digit"),
        (f"{'a' * 101}: b\n", "the word is longer than 100 characters"),
        (f"a: {'b' * 201}\n", "the respelling is longer than 200 characters"),
        ('a: "b\\0c"\n', "the respelling contains control characters"),
        ("cia: see: eye\n", "not valid YAML"),
    ],
)
def test_a_damaged_or_hostile_lexicon_is_refused_naming_the_file_and_entry(
    voice: VoicePaths, content: str, message: str
) -> None:
    path = write(voice.home / "lexicon.yaml", content)
    with pytest.raises(LexiconError, match=message) as refused:
        Lexicon.load(voice)
    assert str(refused.value).startswith(f"{path}: ")
    assert isinstance(refused.value, ConfigError)  # a broken settings file, not a bad text


def test_a_billion_laughs_is_refused_before_it_expands(voice: VoicePaths) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [
        f"{b}: &{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    write(voice.root.path / "lexicon.yaml", "\n".join(lines) + "\n")
    with pytest.raises(LexiconError, match="anchors and aliases"):
        Lexicon.load(voice)


def test_oversized_lexicons_are_refused(voice: VoicePaths) -> None:
    path = write(voice.home / "lexicon.yaml", "word: respelling\n" * (1 << 16))  # 1 MiB
    with pytest.raises(LexiconError, match=f"{path}: larger than 64 KiB"):
        Lexicon.load(voice)
    write(path, "".join(f"w{i}: r\n" for i in range(MAX_ENTRIES + 1)))
    with pytest.raises(LexiconError, match=f"{MAX_ENTRIES + 1} entries, at most {MAX_ENTRIES}"):
        Lexicon.load(voice)


def test_a_lexicon_that_is_not_utf8_is_refused(voice: VoicePaths) -> None:
    (voice.home / "lexicon.yaml").write_bytes("café: kaffay\n".encode("latin-1"))
    with pytest.raises(LexiconError, match="not UTF-8"):
        Lexicon.load(voice)


def test_a_large_lexicon_respells_a_book_quickly() -> None:
    """2000 entries over a 300 KB text: each paragraph is matched against only the entries
    whose first word it contains (pytest-timeout stops a slow one; it took 80 s before)."""
    words = Lexicon.of(Entry(f"name{n}", f"respelling {n}") for n in range(MAX_ENTRIES))
    book = "\n\n".join(f"Then name{n} met name{n + 1} at the inn." for n in range(7000))
    said = words.apply(book)
    assert said.count("respelling") == MAX_ENTRIES + MAX_ENTRIES - 1
