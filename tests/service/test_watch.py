import os
import threading
import time
from pathlib import Path

import pytest

from daemon.core.config import Settings, WatchSettings
from daemon.core.paths import Root
from daemon.service.watch import (
    StabilityTracker,
    Watcher,
    classify,
    filesystem_type,
    is_ignored,
    needs_polling,
)
from tests.conftest import (
    configure,
    imported_clips,
    run_until_idle,
    status,
    voiced_signal,
    wait_for,
    write_wav,
)


@pytest.mark.parametrize(
    "name",
    [
        ".DS_Store",
        "._clip.wav",
        "Thumbs.db",
        "desktop.ini",
        "@eaDir/clip.wav",
        ".stfolder/x.wav",
        "clip.wav.part",
        "clip.tmp",
        "clip.wav.crdownload",
        ".hidden.wav",
        "clip.wav.reason.txt",
    ],
)
def test_os_litter_and_partial_downloads_are_ignored(name):
    assert is_ignored(Path(name))


def test_user_patterns_are_ignored_too():
    assert is_ignored(Path("draft-1.wav"), ("draft-*",))
    assert not is_ignored(Path("take-1.wav"), ("draft-*",))


def test_classify_takes_clips_and_texts_only_where_they_belong(tmp_path):
    root, settings = Root.at(tmp_path), Settings()
    assert classify(root, tmp_path / "inbox/alice/a.mp3", settings).voice == "alice"
    assert classify(root, tmp_path / "inbox/alice/sub/a.wav", settings).voice == "alice"
    assert classify(root, tmp_path / "outbox/alice/ch1.txt", settings).folder == "outbox"
    for ignored in (
        "inbox/a.wav",
        "inbox/alice/rejected/a.wav",
        "outbox/alice/ch1.wav",
        "outbox/alice/ch1.error.txt",
        "voices/alice/clips/a.wav",
        "outbox/a/b/c.txt",
    ):
        assert classify(root, tmp_path / ignored, settings) is None, ignored


def test_network_filesystems_are_polled():
    for fs_type in ("nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "9p"):
        assert needs_polling(fs_type)
    for fs_type in ("ext4", "xfs", "btrfs", "zfs", "tmpfs", "overlay"):
        assert not needs_polling(fs_type)


def test_filesystem_type_reads_the_mount_table(tmp_path):
    proc = filesystem_type(Path("/proc/self"))
    assert proc == "proc"
    assert filesystem_type(tmp_path) not in ("", "unknown")


def test_tracker_waits_until_size_and_mtime_stop_changing(tmp_path):
    path = tmp_path / "growing.wav"
    path.write_bytes(b"x")
    tracker = StabilityTracker(stable_for=0.3)
    tracker.touch(path)
    for _ in range(4):
        time.sleep(0.2)
        with open(path, "ab") as handle:
            handle.write(b"more")
        assert tracker.due() == []
    wait_for(lambda: tracker.due() == [path], timeout=3, every=0.05)
    assert len(tracker) == 0


def test_tracker_forgets_files_that_vanish(tmp_path):
    path = tmp_path / "gone.wav"
    path.write_bytes(b"x")
    tracker = StabilityTracker(stable_for=0.05)
    tracker.touch(path)
    path.unlink()
    time.sleep(0.1)
    assert tracker.due() == [] and len(tracker) == 0


@pytest.mark.parametrize("mode", ["native", "poll"])
def test_observer_sees_new_files_and_folders(tmp_path, mode):
    root = Root.at(tmp_path)
    settings = Settings(watch=WatchSettings(mode=mode, stable_for=0.2, poll_interval=0.2))
    seen = threading.Event()
    tracker = StabilityTracker(0.2, on_change=seen.set)
    watcher = Watcher(root, settings, tracker)
    watcher.start()
    try:
        staged = tmp_path / "staged"
        staged.mkdir()
        (staged / "a.wav").write_bytes(b"data")
        os.rename(staged, root.inbox / "bob")
        clip = root.inbox / "bob" / "a.wav"
        found = wait_for(lambda: tracker.due(), timeout=10, every=0.05)
        assert found == [clip]
    finally:
        watcher.stop()


def test_slow_writer_is_imported_only_once_complete(root, daemon):
    daemon.start()
    samples = voiced_signal(3.0)
    import soundfile as sf

    staged = root / "staged.wav"
    sf.write(staged, samples, 22050, subtype="PCM_16")
    data = staged.read_bytes()
    target = root / "inbox" / "slow" / "slow.wav"
    target.parent.mkdir()
    pieces = [data[i : i + len(data) // 8 + 1] for i in range(0, len(data), len(data) // 8 + 1)]
    with open(target, "wb") as handle:
        for piece in pieces:
            handle.write(piece)
            handle.flush()
            time.sleep(0.35)
            assert not imported_clips(root, "slow"), "imported while still being written"
    wait_for(lambda: imported_clips(root, "slow"), timeout=30)
    report = status(root)["voices"]["slow"]
    assert report["clips"] == 1 and report["rejected"] == []
    assert abs(report["duration"] - 3.0) < 0.01
    assert (root / "voices/slow/originals/slow.wav").read_bytes() == data


def test_part_file_renamed_when_complete_is_taken_once(root, daemon):
    daemon.start()
    folder = root / "inbox" / "dl"
    folder.mkdir()
    part = write_wav(folder / "clip.wav.part", 2.0, format="WAV")
    time.sleep(1.5)
    assert not imported_clips(root, "dl") and part.exists()
    os.rename(part, folder / "clip.wav")
    wait_for(lambda: imported_clips(root, "dl"), timeout=30)
    time.sleep(1.0)
    assert [p.name for p in imported_clips(root, "dl")] == ["clip.wav"]
    assert status(root)["jobs"]["done"] == 1


def test_deleting_an_error_file_tries_the_text_again_at_once(root, daemon):
    configure(root, {"watch": {"rescan_every": 600}})  # no rescan can be what brings it back
    text = root / "outbox" / "tom" / "bad.txt"
    text.parent.mkdir(parents=True)
    text.write_text("---\ntemperature: 0\n---\nHello.")
    daemon.start()
    error = text.with_suffix(".error.txt")
    wait_for(error.exists, timeout=30)
    error.unlink()
    wait_for(error.exists, timeout=15)
    assert "temperature" in error.read_text()


def test_clips_and_texts_in_the_wrong_folder_are_named_in_the_log_once(root):
    write_wav(root / "inbox" / "loose.wav", 1.0)
    (root / "outbox" / "tom" / "drafts").mkdir(parents=True)
    (root / "outbox" / "tom" / "drafts" / "deep.txt").write_text("Hello.")
    (root / "outbox" / "top.txt").write_text("Hello.")
    log = run_until_idle(root).stderr
    assert "loose.wav lies directly in inbox/: clips go into inbox/<voice>/" in log
    assert log.count("deep.txt is not taken: texts go directly into outbox/<voice>/") == 1
    assert "top.txt is not taken" in log
