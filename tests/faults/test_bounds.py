"""Inputs a user can make as large as they like are bounded: clip size and length, YAML."""

from __future__ import annotations

import codecs
import resource

import pytest

from daemon.tts.texts import read_text
from tests.conftest import (
    configure,
    ffmpeg,
    ffmpeg_encode,
    imported_clips,
    run_until_idle,
    write_wav,
)
from tests.tts.test_texts import BILLION_LAUGHS


def reason(root, voice: str, name: str) -> str:
    return (root / "inbox" / voice / "rejected" / f"{name}.reason.txt").read_text()


def test_a_2_gb_wav_is_rejected_by_its_size_without_being_read(root):
    huge = write_wav(root / "inbox" / "tom" / "huge.wav", 1.0)
    with open(huge, "r+b") as handle:
        handle.truncate(2 << 30)  # sparse: 2 GB on paper, nothing on disk
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run_until_idle(root)
    assert "huge.wav is 2147 MB, more than import.max_bytes (1074 MB)" in reason(
        root, "tom", "huge.wav"
    )
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mib < 200


def test_a_clip_longer_than_max_duration_is_rejected_before_or_while_decoding(root):
    configure(root, {"import": {"max_duration": 5}})
    write_wav(root / "inbox" / "tom" / "long.wav", 8.0)  # the header says 8 s
    write_wav(root / "inbox" / "tom" / "long.flac", 8.0, format="FLAC")
    source = write_wav(root / "long-source.wav", 8.0)
    ffmpeg_encode(source, root / "inbox" / "tom" / "long.aac")  # no length in its header
    write_wav(root / "inbox" / "tom" / "short.wav", 2.0)
    run_until_idle(root)
    for name in ("long.wav", "long.flac", "long.aac"):
        assert "is longer than import.max_duration (5 s)" in reason(root, "tom", name)
    assert [clip.name for clip in imported_clips(root, "tom")] == ["short.wav"]


def test_a_small_file_that_decodes_to_gigabytes_is_rejected_before_it_does(root):
    """Silence in 8 channels at 384 kHz: a FLAC of a few MB that would decode to ~1.5 GB of
    samples; as ADTS AAC (no length in its header) it is stopped while decoding."""
    inbox = root / "inbox" / "tom"
    inbox.mkdir(parents=True)
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=384000:cl=7.1", "-t", "120", str(inbox / "wide.flac"))
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=96000:cl=5.1", "-t", "300", str(inbox / "wide.aac"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run_until_idle(root)
    assert "would take 1406 MiB of memory to decode (8 channels at 384000 Hz for 120 s" in (
        reason(root, "tom", "wide.flac")
    )
    assert "export it as mono or stereo at 48 kHz or less" in reason(root, "tom", "wide.aac")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mib < 1100


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("book.txt", "A sentence to say. " * 55_000, "more than render.max_chars (1000000"),
        ("emoji.txt", "🎉🎉 🙂!!", "nothing a voice can speak"),
        ("inf.txt", "---\ntemperature: .inf\n---\nHello.", "temperature: expected a number"),
        ("seed.txt", "---\nseed: 99999999999999999999999\n---\nHi.", "must be below 4294967296"),
        ("bomb.txt", f"---\n{BILLION_LAUGHS}---\nHello.", "anchors and aliases"),
    ],
)
def test_hostile_texts_are_refused_at_once_with_a_short_reason(root, name, content, message):
    text = root / "outbox" / "tom" / name
    text.parent.mkdir(parents=True)
    text.write_text(content)
    log = run_until_idle(root).stderr
    error = text.with_suffix(".error.txt").read_text()
    assert message in error and len(error) < 1000
    assert "retrying in" not in log


def test_a_utf16_text_with_a_bom_is_read(tmp_path):
    text = tmp_path / "notepad.txt"
    text.write_bytes(codecs.BOM_UTF16_LE + "Hello from Notepad.".encode("utf-16-le"))
    assert read_text(text) == "Hello from Notepad."
