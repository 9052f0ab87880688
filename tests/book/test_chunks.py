"""daemon.book.chunks: one sentence a chunk, long ones split, short ones joined."""

from __future__ import annotations

import pytest

from daemon.book.chunks import plan_chunks, sentences_of
from daemon.book.document import Chapter, Document
from daemon.tts.texts import BadText


def words(text: str) -> int:
    """A stand-in token count (the tokenizer's is tested with the engine): one per word."""
    return len(text.split())


def test_each_sentence_is_a_chunk_and_short_ones_ride_with_the_next():
    paragraph = "Yes. The rain had stopped by noon. We walked home along the river. Fine."
    assert sentences_of(paragraph, words, 50) == [
        "Yes. The rain had stopped by noon.",
        "We walked home along the river. Fine.",
    ]


def test_a_prompt_stays_with_the_sentence_it_leads_into():
    assert sentences_of("[I am sad.] My dog ran away this morning.", words, 50) == [
        "[I am sad.] My dog ran away this morning."
    ]


def test_chunks_know_their_chapter_paragraph_and_sentence_and_carry_the_written_text():
    document = Document(
        "Book",
        (
            Chapter("One", ("The first paragraph has one sentence.",)),
            Chapter(
                "Two",
                (
                    "A second chapter begins here. It has two sentences.",
                    "This sentence is far too long for the model, so it is cut at its comma",
                ),
            ),
        ),
    )
    chunks = plan_chunks(document, str.upper, words, 9)
    assert [(c.chapter, c.paragraph, c.sentence) for c in chunks] == [
        (0, 0, 0),  # the title, read first
        (0, 1, 0),
        (1, 0, 0),
        (1, 1, 0),
        (1, 1, 1),
        (1, 2, 0),
        (1, 2, 0),
    ]
    assert [c.spoken for c in chunks[:2]] == ["ONE", "THE FIRST PARAGRAPH HAS ONE SENTENCE."]
    assert chunks[5].written.startswith("This sentence is far too long") and chunks[6].written == ""
    assert chunks[5].spoken == "THIS SENTENCE IS FAR TOO LONG FOR THE MODEL,"


def test_a_word_longer_than_the_model_can_say_is_a_clear_error():
    document = Document("Book", (Chapter(None, ("Pneumonoultramicroscopic",)),))
    with pytest.raises(BadText, match="alone is longer than the model can speak"):
        plan_chunks(document, str, lambda text: 100, 10)
