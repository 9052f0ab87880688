"""The prune stage through the real daemon: deleting an original takes its clip out of the
voice (clips/, so latents and `status`), not only its dataset lines, transcribed or not."""

from tests.conftest import imported_clips, run_until_idle, status, write_wav


def test_deleting_the_original_of_a_clip_not_yet_transcribed_removes_the_clip(root):
    inbox = root / "inbox" / "gone"
    write_wav(inbox / "keep.wav", 2.0, seed=1)
    write_wav(inbox / "drop.wav", 2.0, seed=2)
    run_until_idle(root)  # no Whisper model in test roots: the transcriptions wait
    assert status(root)["voices"]["gone"]["clips"] == 2
    (root / "voices" / "gone" / "originals" / "drop.wav").unlink()
    log = run_until_idle(root).stderr
    assert "removed drop.wav and its lines (originals deleted)" in log
    assert [clip.name for clip in imported_clips(root, "gone")] == ["keep.wav"]
    report = status(root)
    assert report["voices"]["gone"]["clips"] == 1 and report["jobs"]["failed"] == 0
    assert "originals deleted" not in run_until_idle(root).stderr, "pruned once, not again"
