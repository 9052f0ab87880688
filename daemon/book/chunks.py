"""A document cut into the chunks the engine speaks: one sentence each (so sentence pauses
and subtitle cues fall exactly between chunks), a sentence too long for the model split at
clauses or between words, a very short sentence ("Yes.") spoken with the next one of its
paragraph, as TorToiSe reads a lone word poorly. A [bracketed prompt] stays with the text it
leads into."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemon.book.document import Document
from daemon.tts.texts import SENTENCE_END, attach_prompts, fit, split_outside_brackets

MIN_SENTENCE_CHARACTERS = 20


@dataclass(frozen=True)
class Chunk:
    """One piece the engine speaks, and where it belongs. Chunks of one sentence share
    `sentence`; the first carries the sentence as written (for subtitles), the rest ""."""

    chapter: int
    paragraph: int
    sentence: int
    written: str
    spoken: str  # after the lexicon and normalisation: what the engine is asked to say


def sentences_of(paragraph: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """The paragraph's sentences, prompts attached, short ones joined to the next."""
    units = [s.strip() for s in split_outside_brackets(SENTENCE_END, paragraph) if s.strip()]
    units = attach_prompts(units, lambda text: 0, max_tokens)  # lengths are fitted later
    sentences: list[str] = []
    pending = ""
    for unit in units:
        joined = f"{pending} {unit}".strip()
        if len(joined) < MIN_SENTENCE_CHARACTERS:
            pending = joined
        else:
            sentences.append(joined)
            pending = ""
    if pending:
        if sentences and count_tokens(f"{sentences[-1]} {pending}") <= max_tokens:
            sentences[-1] = f"{sentences[-1]} {pending}"
        else:
            sentences.append(pending)
    return sentences


def plan_chunks(
    document: Document,
    speak: Callable[[str], str],
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> list[Chunk]:
    """Every chunk of the document in reading order, each chapter's title read first as a
    paragraph of its own (as an audiobook announces its chapters); `speak` turns written
    text into what the engine says (lexicon, numbers). Raises BadText for a word the model
    cannot say."""
    chunks = []
    for c, chapter in enumerate(document.chapters):
        title = (chapter.title,) if chapter.title else ()
        for p, paragraph in enumerate((*title, *chapter.paragraphs)):
            for s, sentence in enumerate(sentences_of(paragraph, count_tokens, max_tokens)):
                pieces = fit(speak(sentence), count_tokens, max_tokens)
                chunks += [
                    Chunk(c, p, s, sentence if i == 0 else "", piece)
                    for i, piece in enumerate(pieces)
                ]
    return chunks
