"""daemon.core.files: the one sha256 helper, moves and rejections, on real files."""

import hashlib
import os
from pathlib import Path

from daemon.core.files import cached_sha256, file_sha256, reject_file
from daemon.core.paths import Root


def test_cached_sha256_is_the_full_hash_and_follows_changes(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(b"first")
    assert cached_sha256(path) == hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"second!")
    os.utime(path, ns=(1, 1))
    assert cached_sha256(path) == hashlib.sha256(b"second!").hexdigest()


def test_a_dropped_file_is_hashed_afresh_even_with_the_same_size_and_mtime(tmp_path: Path):
    """`cp -p` can replace a file keeping both; a clip must never be taken for another."""
    path = tmp_path / "clip.wav"
    path.write_bytes(b"aaaa")
    os.utime(path, ns=(5, 5))
    assert file_sha256(path) == cached_sha256(path) == hashlib.sha256(b"aaaa").hexdigest()
    path.write_bytes(b"bbbb")
    os.utime(path, ns=(5, 5))
    assert file_sha256(path) == hashlib.sha256(b"bbbb").hexdigest()


def test_a_rejected_file_keeps_its_content_beside_its_reason(tmp_path: Path) -> None:
    voice = Root.at(tmp_path).voice("tom")
    for content in (b"one", b"two"):
        dropped = tmp_path / "inbox" / "tom" / "a.txt"
        dropped.parent.mkdir(parents=True, exist_ok=True)
        dropped.write_bytes(content)
        kept = reject_file(voice, dropped, "not audio")
        assert kept.read_bytes() == content and not dropped.exists()
        assert kept.with_name(kept.name + ".reason.txt").read_text() == "not audio\n"
    assert sorted(p.name for p in voice.rejected.iterdir()) == [
        "a-2.txt",
        "a-2.txt.reason.txt",
        "a.txt",
        "a.txt.reason.txt",
    ]
