"""Faults of the machine, made for real: a full disk (a small tmpfs) and a read-only folder
(a read-only bind mount), and a folder an ordinary user may not write to (mode bits, checked
for root too by dropping the capabilities that bypass them). Mounting needs root; elsewhere
those tests skip and say why."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    DaemonProcess,
    cli_main,
    configure,
    imported_clips,
    run_until_idle,
    status,
    wait_for,
    write_wav,
)


@contextlib.contextmanager
def mounted(*arguments: str) -> Iterator[None]:
    target = Path(arguments[-1])
    done = subprocess.run(["mount", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or 'not root'})")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)):
        yield disk


def fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free - leave
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free, 0))
    return filler


def test_a_full_disk_loses_nothing_rejects_nothing_and_imports_once_space_is_freed(
    small_disk, tmp_path
):
    """So full that not even the ledger can record why: the daemon stays up, the clips stay
    where they are, and everything is imported once space is freed."""
    root = small_disk / "root"
    assert cli_main(["init", str(root)]) == 0
    configure(root)
    run_until_idle(root)  # the daemon ran before the disk filled up: its ledger exists
    daemon = DaemonProcess(root, tmp_path / "daemon.log").start()
    try:
        clips = [write_wav(tmp_path / "staged" / f"c{i}.wav", seconds=1.0, seed=i) for i in (1, 2)]
        (root / "inbox" / "tom").mkdir(parents=True)
        filler = fill(small_disk, leave=(64 << 10) + sum(c.stat().st_size for c in clips))
        for clip in clips:
            shutil.copy(clip, root / "inbox" / "tom" / clip.name)
        wait_for(lambda: "disk is full" in daemon.output() or "is full" in daemon.output())
        time.sleep(2)
        assert daemon.process.poll() is None, daemon.output()
        rejected = root / "inbox" / "tom" / "rejected"
        assert not rejected.exists() or list(rejected.iterdir()) == []
        filler.unlink()
        wait_for(lambda: len(imported_clips(root, "tom")) == 2, timeout=120)
    finally:
        assert daemon.stop() == 0
    originals = root / "voices" / "tom" / "originals"
    assert {p.name: p.read_bytes() for p in originals.iterdir()} == {
        clip.name: clip.read_bytes() for clip in clips
    }


def test_a_read_only_voices_folder_makes_imports_wait_not_reject(tmp_path):
    root = tmp_path / "root"
    assert cli_main(["init", str(root)]) == 0
    configure(root)
    clip = write_wav(root / "inbox" / "tom" / "c.wav", seconds=1.0)
    voices = root / "voices"
    with mounted("--bind", str(voices), str(voices)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(voices)], check=True)
        run_until_idle(root)
        (waiting,) = status(root)["voices"]["tom"]["waiting"]
        assert "may not write" in waiting["reason"] and clip.exists()
    run_until_idle(root)
    assert [p.name for p in imported_clips(root, "tom")] == ["c.wav"] and not clip.exists()


def test_a_disk_too_full_to_start_on_gives_one_line_not_a_traceback(small_disk, capsys):
    root = small_disk / "root"
    assert cli_main(["init", str(root)]) == 0
    configure(root)
    capsys.readouterr()
    fill(small_disk, leave=0)
    assert cli_main(["run", "--until-idle", "--root", str(root)]) == 1
    error = capsys.readouterr().err
    assert "voicedrop: cannot start on" in error and "MiB free on its disk" in error
    assert "Traceback" not in error


def as_unprivileged(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`voicedrop ARGS` for which permission bits hold. Root ignores them through three
    capabilities; run as root, the command runs without those (setpriv), so the kernel checks
    mode bits as for any user. (Another user such as `nobody` could not run this checkout's
    Python, which lives under /root here.)"""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root, and setpriv (util-linux) is not installed")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "daemon", *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_a_read_only_voices_folder_as_an_ordinary_user_makes_imports_wait(root):
    """Permission denied by mode bits (EACCES), not by a read-only mount (EROFS)."""
    clip = write_wav(root / "inbox" / "tom" / "c.wav", seconds=1.0)
    kept = clip.read_bytes()
    voices = root / "voices"
    voices.chmod(0o555)
    first = as_unprivileged(root, "run", "--until-idle")
    assert first.returncode == 0, first.stderr
    (waiting,) = status(root)["voices"]["tom"]["waiting"]
    assert "may not write" in waiting["reason"], waiting
    assert clip.read_bytes() == kept and not (clip.parent / "rejected").exists()
    voices.chmod(0o755)
    second = as_unprivileged(root, "run", "--until-idle")
    assert second.returncode == 0, second.stderr
    assert [p.name for p in imported_clips(root, "tom")] == ["c.wav"]
    assert not clip.exists()


def test_an_inbox_folder_the_daemon_may_not_change_keeps_the_clip_and_says_why(root):
    """The clip can be read but not moved out of inbox/<voice>/: nothing is lost or doubled,
    and once the folder is writable the import completes."""
    clip = write_wav(root / "inbox" / "tom" / "c.wav", seconds=1.0)
    kept = clip.read_bytes()
    clip.parent.chmod(0o555)
    try:
        first = as_unprivileged(root, "run", "--until-idle")
    finally:
        clip.parent.chmod(0o755)
    assert first.returncode == 0, first.stderr
    report = status(root)["voices"]["tom"]
    assert clip.read_bytes() == kept and not (clip.parent / "rejected").exists()
    (waiting,) = report["waiting"]
    assert "may not write" in waiting["reason"] and "c.wav" in waiting["reason"], waiting
    second = as_unprivileged(root, "run", "--until-idle")
    assert second.returncode == 0, second.stderr
    assert [p.name for p in imported_clips(root, "tom")] == ["c.wav"] and not clip.exists()
    (original,) = (root / "voices" / "tom" / "originals").iterdir()
    assert original.read_bytes() == kept
