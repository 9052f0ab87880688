import re

import pytest

from daemon.tts.texts import BadText, chunk_text, read_text, split_front_matter


def word_count(text: str) -> int:
    return len(text.split())


def test_utf8_with_a_bom_is_read(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffHallo Grüße".encode())
    assert read_text(path) == "Hallo Grüße"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("caf\xe9".encode("latin-1"), "not UTF-8 text (byte 0xe9 at position 3)"),
        (b"\x89PNG\r\n\x1a\n\0\0\0", "is a binary file"),
    ],
)
def test_other_encodings_and_binary_files_are_refused(tmp_path, data, message):
    path = tmp_path / "t.txt"
    path.write_bytes(data)
    with pytest.raises(BadText, match=re.escape(message)):
        read_text(path)


def test_front_matter_is_split_from_the_body():
    values, body = split_front_matter("---\nseed: 3\npreset: ultra_fast\n---\nHello.\n", "t.txt")
    assert values == {"seed": 3, "preset": "ultra_fast"}
    assert body == "Hello.\n"
    assert split_front_matter("Just text --- here.", "t.txt") == ({}, "Just text --- here.")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\nseed: 3\nHello.", "no closing --- line"),
        ("---\nseed: [1\n---\nHello.", "not valid YAML"),
        ("---\n- a\n- b\n---\nHello.", "must be 'key: value' lines"),
    ],
)
def test_broken_front_matter_is_explained(text, message):
    with pytest.raises(BadText, match=message):
        split_front_matter(text, "t.txt")


def test_sentences_are_packed_into_chunks_that_fit():
    text = " ".join(f"Sentence number {i} is here." for i in range(30))
    chunks = chunk_text(text, word_count, max_tokens=12)
    assert all(word_count(c) <= 12 for c in chunks)
    assert all(c.endswith(".") for c in chunks)
    assert " ".join(chunks) == text


def test_a_sentence_too_long_for_the_model_is_cut_at_clauses_then_words():
    sentence = "one two three four, five six seven eight; " + " ".join(["word"] * 30) + "."
    chunks = chunk_text(sentence, word_count, max_tokens=8)
    assert all(word_count(c) <= 8 for c in chunks)
    assert " ".join(chunks).split() == sentence.split()


def test_chunks_stay_near_200_characters():
    text = "This is a fairly ordinary sentence of moderate length. " * 20
    chunks = chunk_text(text, word_count, max_tokens=1000)
    assert len(chunks) > 4 and all(len(c) <= 200 for c in chunks)


def test_a_bracketed_prompt_stays_whole_and_with_the_text_it_leads_into():
    text = "[I am angry. Very angry.]\nYou never listen. " + "Short one. " * 30
    chunks = chunk_text(text.strip(), word_count, max_tokens=12)
    assert chunks[0].startswith("[I am angry. Very angry.] You never listen.")
    assert all(c.count("[") == c.count("]") for c in chunks)
    assert " ".join(chunks).split() == text.split()
    ending = chunk_text("Goodbye now.\n[sighs deeply]", word_count, max_tokens=12)
    assert ending == ["Goodbye now. [sighs deeply]"]


def test_a_prompt_too_long_to_speak_with_its_text_is_refused():
    with pytest.raises(BadText, match="bracketed"):
        chunk_text("[" + "very " * 20 + "angry] Hello.", word_count, max_tokens=8)


def test_long_sentences_split_at_the_released_text_limit():
    """The tiny models keep the released max_text_tokens (402, 398 usable): a text is only cut
    to fit when a sentence alone is longer than that."""
    from tortoise.utils.tokenizer import VoiceBpeTokenizer

    tokenizer = VoiceBpeTokenizer()

    def count(text: str) -> int:
        return len(tokenizer.encode(text))

    sentence = ", ".join(f"then the {n}th lantern flickered over the harbour" for n in range(40))
    assert count(sentence) > 398
    chunks = chunk_text(sentence + ".", count, max_tokens=398)
    assert len(chunks) > 1 and all(count(c) <= 398 for c in chunks)
    assert " ".join(chunks).split() == (sentence + ".").split()


BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
)


def test_a_yaml_alias_bomb_in_front_matter_is_refused_before_it_expands():
    with pytest.raises(BadText, match=r"anchors and aliases \(& and \*\) are not accepted"):
        split_front_matter(f"---\n{BILLION_LAUGHS}---\nHello.", "bomb.txt")


def test_front_matter_over_64_kib_is_refused():
    header = "".join(f"# {'x' * 70}\n" for _ in range(1000))
    with pytest.raises(BadText, match="larger than 64 KiB"):
        split_front_matter(f"---\n{header}seed: 1\n---\nHello.", "big.txt")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("a: 1" + "0" * 5000, "digits"),
    ],
)
def test_front_matter_that_would_crash_the_parser_is_refused(header, message):
    with pytest.raises(BadText, match=message):
        split_front_matter(f"---\n{header}\n---\nHello.", "deep.txt")
