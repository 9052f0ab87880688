"""The whole attack corpus against a running daemon, killed with -9 in the middle and started
again: afterwards every dropped clip is byte for byte in exactly one place, every text is
untouched, no temp file is left, and the daemon stops cleanly."""

from __future__ import annotations

import time

from tests.conftest import DaemonProcess, status, wait_for
from tests.faults import corpus


def test_the_attack_corpus_with_a_kill_9_loses_nothing(root, tmp_path):
    daemon = DaemonProcess(root, tmp_path / "first.log").start()
    dropped, texts = corpus.drop(root, tmp_path / "staging")
    time.sleep(1.5)
    daemon.kill()
    daemon = DaemonProcess(root, tmp_path / "second.log").start()
    try:
        wait_for(lambda: corpus.settled(root), timeout=120, every=0.5)
        peak_mib = corpus.peak_rss_mib(daemon.process.pid)
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert corpus.kept_clips(root) == dropped
    assert {path: path.read_bytes() for path in texts} == texts
    assert corpus.temp_files(root) == []
    report = status(root)
    assert report["voices"][corpus.VOICE]["clips"] == 4  # good, pipe, newline, long name
    refused = {p.name for p in (root / "outbox" / corpus.VOICE).glob("*.error.txt")}
    assert {"bomb.error.txt", "book.error.txt", "emoji.error.txt", "binary.error.txt"} <= refused
    # The fourth clip of a voice is compared with the others by the speaker encoder, which
    # brings torch (about 500 MB): the bound holds with it (bench/RESULTS.md, attack corpus).
    assert peak_mib < 1024, f"the daemon's peak RSS was {peak_mib:.0f} MiB"
