"""Hostile names and modes: `|`, newlines and 250-byte names; texts whose outputs collide;
outputs that follow the umask."""

from __future__ import annotations

import os
import stat

import pytest

from daemon.core import atomic
from daemon.core.paths import safe_name
from tests.conftest import imported_clips, run_until_idle, status, write_wav

HOSTILE = ["pipe|name.wav", "new\nline.wav", "tab\there.wav", ("é" * 120) + "x" * 6 + ".wav"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_clip_name_is_imported_under_a_safe_name_and_its_bytes_kept(root, name):
    dropped = write_wav(root / "inbox" / "tom" / name, 1.0)
    kept = dropped.read_bytes()
    run_until_idle(root)
    (clip,) = imported_clips(root, "tom")
    assert "|" not in clip.name and "\n" not in clip.name and "\t" not in clip.name
    assert len(f"{clip.stem}_00000.wav".encode()) <= 255 - 10
    (original,) = (root / "voices" / "tom" / "originals").iterdir()
    assert original.read_bytes() == kept and original.stem == clip.stem
    assert status(root)["voices"]["tom"]["clips"] == 1


def test_long_names_that_differ_only_at_the_end_stay_apart():
    one, two = ("a" * 300) + "1.wav", ("a" * 300) + "2.wav"
    assert safe_name(one) != safe_name(two) and safe_name(one).endswith(".wav")
    assert safe_name("plain take.wav") == "plain take.wav"


def test_texts_whose_outputs_would_collide_or_be_too_long_are_refused_once(root):
    outbox = root / "outbox" / "tom"
    outbox.mkdir(parents=True)
    (outbox / "same.txt").write_text("Hello.")
    (outbox / "same.TXT").write_text("Hello again.")
    (outbox / ("t" * 248 + ".txt")).write_text("Hello.")
    log = run_until_idle(root).stderr + run_until_idle(root).stderr
    assert log.count("not rendering") == 2 * 2  # said once per run, for two texts
    assert "same.TXT already makes same.json and its audio (the names differ only in case" in log
    assert "over 255: shorten its name" in log
    report = status(root)["voices"]["tom"]
    rendering = [j["file"] for j in report["waiting"]]
    assert rendering == ["same.TXT"]  # the first by name keeps it (and waits for weights)
    assert sorted(r["file"] for r in report["refused_texts"]) == sorted(
        ["same.txt", "t" * 248 + ".txt"]
    )
    note = outbox / "same.txt.error.txt"  # same.error.txt would be same.TXT's
    assert "rename or remove same.txt" in note.read_text()
    (outbox / "same.TXT").unlink()  # the rival gone, the refusal goes too
    run_until_idle(root)
    assert not note.exists()
    assert [j["file"] for j in status(root)["voices"]["tom"]["waiting"]] == ["same.txt"]


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        previous, atomic.UMASK = atomic.UMASK, atomic.current_umask()
        atomic.write_text(tmp_path / "out.json", "{}")
    finally:
        atomic.UMASK = previous
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o664
