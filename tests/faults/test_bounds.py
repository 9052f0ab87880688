"""Inputs a user can make as large as they like are bounded: clip size and length, YAML."""

from __future__ import annotations

import resource

from tests.conftest import configure, ffmpeg_encode, imported_clips, run_until_idle, write_wav


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
