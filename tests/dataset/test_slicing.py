import numpy as np

from daemon.dataset.slicing import Piece, adjust, merge_short, plan_pieces, split_long


def words_for(text: str, start: float, step: float, pause_after: dict[int, float] | None = None):
    words, t = [], start
    for index, word in enumerate(text.split()):
        words.append({"start": t, "end": t + step * 0.8, "word": f" {word}"})
        t += step + (pause_after or {}).get(index, 0.0)
    return words


def test_a_long_segment_is_split_between_words_at_the_best_pause():
    words = words_for(
        "one two three four five six seven. eight nine ten eleven twelve", 0, 1.0, {6: 0.6}
    )
    segment = Piece(0, words[-1]["end"], "x")
    parts = split_long(segment, words, max_seconds=8)
    assert [p.text for p in parts] == [
        "one two three four five six seven.",
        "eight nine ten eleven twelve",
    ]
    assert all(p.duration <= 8 for p in parts)


def test_a_very_long_segment_is_split_until_every_part_fits():
    words = words_for(" ".join(f"w{i}" for i in range(60)), 0, 0.5)
    parts = split_long(Piece(0, words[-1]["end"], "x"), words, max_seconds=11.6)
    assert len(parts) >= 3 and all(p.duration <= 11.6 for p in parts)
    assert " ".join(p.text for p in parts) == " ".join(f"w{i}" for i in range(60))


def test_a_long_segment_without_words_cannot_be_cut():
    assert split_long(Piece(0, 20, "no timings"), [], max_seconds=11.6) == []


def test_short_pieces_merge_into_the_closer_neighbour():
    pieces = [Piece(0, 3, "a"), Piece(3.1, 3.4, "b"), Piece(5, 8, "c")]
    assert merge_short(pieces, 0.6, 11.6) == [Piece(0, 3.4, "a b"), Piece(5, 8, "c")]


def test_a_short_piece_that_cannot_merge_is_dropped_by_the_plan():
    segments = [
        {"start": 0, "end": 11.0, "text": "long", "words": []},
        {"start": 11.5, "end": 11.8, "text": "tiny", "words": []},
    ]
    assert plan_pieces(segments, 0.6, 11.6) == [Piece(0, 11.0, "long")]


def test_adjust_trims_silence_and_applies_offsets():
    rate = 22050
    audio = np.zeros(rate * 4, np.float32)
    audio[rate : rate * 3] = 0.5 * np.sin(np.arange(rate * 2) * 0.1)
    piece = adjust(
        Piece(0.2, 3.8, "t"),
        audio,
        rate,
        start_offset=0,
        end_offset=0,
        trim=True,
        min_seconds=0.6,
        max_seconds=11.6,
    )
    assert abs(piece.start - 0.95) < 0.02 and abs(piece.end - 3.05) < 0.02
    widened = adjust(
        Piece(1.0, 3.0, "t"),
        audio,
        rate,
        start_offset=-0.5,
        end_offset=0.25,
        trim=False,
        min_seconds=0.6,
        max_seconds=11.6,
    )
    assert (widened.start, widened.end) == (0.5, 3.25)
    clamped = adjust(
        Piece(0.1, 3.9, "t"),
        audio,
        rate,
        start_offset=-1,
        end_offset=1,
        trim=False,
        min_seconds=0.6,
        max_seconds=11.6,
    )
    assert (clamped.start, clamped.end) == (0.0, 4.0)
