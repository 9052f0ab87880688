"""The daemon as a whole: bursts, kill -9, one instance per root, clean shutdown."""

import hashlib
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from daemon.core.files import file_sha256
from daemon.core.jobs import JobKind
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from tests.conftest import (
    DaemonProcess,
    configure,
    imported_clips,
    run_until_idle,
    status,
    voicedrop,
    voicedrop_process,
    wait_for,
    write_wav,
)


def stage_clips(folder: Path, count: int, seconds: float = 0.8) -> dict[str, str]:
    """Distinct small clips written outside the inbox; returns name → sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 22050)) / 22050
    hashes = {}
    for index in range(count):
        tone = 0.3 * np.sin(2 * np.pi * (120 + index) * t) + 0.01 * rng.standard_normal(t.size)
        path = folder / f"clip{index:04d}.wav"
        sf.write(path, tone.astype(np.float32), 22050, subtype="PCM_16")
        hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def drop_all(staged: Path, inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for path in sorted(staged.iterdir()):
        os.rename(path, inbox / path.name)


def assert_each_imported_once(root: Path, voice: str, hashes: dict[str, str]) -> None:
    originals = root / "voices" / voice / "originals"
    found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in originals.iterdir()}
    assert found == hashes, "an original is missing, renamed, doubled or changed"
    clips = imported_clips(root, voice)
    assert sorted(p.name for p in clips) == sorted(hashes), "clips do not match the originals"
    for clip in clips:
        assert abs(sf.info(clip).duration - 0.8) < 0.01, f"{clip.name} is half-written"
    leftovers = [p for p in (root / "inbox" / voice).rglob("*") if p.is_file()]
    assert leftovers == [], leftovers
    report = status(root)
    assert report["jobs"]["done"] == len(hashes)
    assert report["jobs"]["failed"] == report["jobs"]["pending"] == report["jobs"]["running"] == 0
    temp = [p for p in (root / "voices").rglob("*") if p.name.startswith(".voicedrop-tmp")]
    assert temp == []


def settled(report: dict) -> bool:
    """Nothing left to run: each transcription queued after an import waits for Whisper."""
    return report["jobs"]["pending"] == report["jobs"]["running"] == 0


# Intake and the ledger under load, not who speaks: the speaker check (tests/quality) would
# encode every one of the clips, a minute of this test on two cores.
NO_SPEAKER_CHECK = {"import": {"min_speaker_similarity": 0}}


def test_a_burst_of_500_files_is_imported_exactly_once(root, daemon, tmp_path):
    configure(root, NO_SPEAKER_CHECK)
    hashes = stage_clips(tmp_path / "staged", 500)
    daemon.start()
    drop_all(tmp_path / "staged", root / "inbox" / "burst")
    wait_for(lambda: status(root)["jobs"]["done"] == 500, timeout=300, every=1)
    wait_for(lambda: settled(status(root)), timeout=120, every=1)  # transcriptions wait
    assert_each_imported_once(root, "burst", hashes)


def test_kill_9_during_a_burst_loses_nothing_and_doubles_nothing(root, tmp_path):
    configure(root, NO_SPEAKER_CHECK)
    hashes = stage_clips(tmp_path / "staged", 300)
    drop_all(tmp_path / "staged", root / "inbox" / "crash")
    log = tmp_path / "daemon.log"
    rng = random.Random(9)
    for _ in range(3):
        daemon = DaemonProcess(root, log).start()
        done = len(imported_clips(root, "crash"))
        wait_for(
            lambda d=done: len(imported_clips(root, "crash")) > d + 20, timeout=120, every=0.01
        )
        time.sleep(rng.uniform(0, 0.3))
        daemon.kill()
    assert len(imported_clips(root, "crash")) < 300, "the kills came too late to test anything"
    result = run_until_idle(root)
    assert "recovered from an unclean stop" in log.read_text() + result.stderr
    assert_each_imported_once(root, "crash", hashes)


def test_a_second_daemon_on_the_same_root_refuses(root, daemon):
    daemon.start()
    second = voicedrop_process("run", "--root", str(root), check=False, timeout=60)
    assert second.returncode == 1
    assert f"already running on {root}" in second.stderr
    assert f"(pid {daemon.process.pid})" in second.stderr
    assert status(root)["daemon"] == {
        "running": True,
        "pid": daemon.process.pid,
        "config_changed": False,
    }


def test_sigterm_lets_the_current_job_finish_and_exits_0(root, daemon, tmp_path):
    hashes = stage_clips(tmp_path / "staged", 40)
    daemon.start()
    drop_all(tmp_path / "staged", root / "inbox" / "term")
    wait_for(lambda: imported_clips(root, "term"), timeout=60, every=0.01)
    assert daemon.stop(signal.SIGTERM) == 0
    assert "voicedrop stopped" in daemon.output()
    report = status(root)
    assert report["jobs"]["running"] == 0 and report["daemon"]["running"] is False
    run_until_idle(root)
    assert_each_imported_once(root, "term", hashes)


def test_sigint_stops_cleanly_too(root, daemon):
    daemon.start()
    assert daemon.stop(signal.SIGINT) == 0


def test_voice_folders_that_escape_the_root_are_refused(root, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(b"RIFF not touched")
    os.symlink(outside, root / "inbox" / "escape")
    (root / "inbox" / "bad\x07bell").mkdir()
    (root / "inbox" / "bad\x07bell" / "clip.wav").write_bytes(b"RIFF")
    log = run_until_idle(root).stderr  # a scan, a rescan's worth of looking, then idle
    assert (outside / "secret.wav").read_bytes() == b"RIFF not touched"
    assert list(outside.iterdir()) == [outside / "secret.wav"]
    assert (root / "inbox" / "bad\x07bell" / "clip.wav").read_bytes() == b"RIFF"
    assert not (root / "voices" / "escape").exists()
    refused = status(root)["refused_voices"]
    assert "outside the root" in refused["escape"]
    assert "control characters" in refused["bad\x07bell"]
    assert log.count("refusing voice folder 'escape'") == 1
    assert sum(status(root)["jobs"].values()) == 0, "nothing was queued from a refused folder"


def test_cli_refuses_voice_names_that_escape(root):
    for name in ("../etc", "..", ".hidden", "a/b"):
        result = voicedrop("status", "--root", str(root), name, check=False)
        assert result.returncode == 2, name
        assert "voice name" in result.stderr


def test_a_file_that_killed_the_daemon_every_time_is_filed_away_and_not_queued_again(root):
    """Three kills during one import are a stand-in: the ledger is left as three `kill -9`s
    mid-import leave it (the job running, its attempts spent) rather than killing three times."""
    clip = write_wav(root / "inbox" / "tom" / "poison.wav", seconds=1.0)
    ledger = Ledger(Root.at(root).ledger_file)
    ledger.enqueue(JobKind.IMPORT, "tom", clip, file_sha256(clip))
    ledger.db.execute("UPDATE jobs SET state = 'running', attempts = 3")
    ledger.close()
    run_until_idle(root)
    rejected = root / "inbox" / "tom" / "rejected" / "poison.wav"
    assert rejected.exists() and not clip.exists()
    assert "stopped 3 times while this ran" in Path(f"{rejected}.reason.txt").read_text()
    run_until_idle(root)
    assert rejected.exists() and imported_clips(root, "tom") == []
    assert [j["kind"] for j in status(root)["failed"]] == ["import"]


def test_a_transcription_the_daemon_died_in_is_given_up_then_tried_again_a_day_later(
    root, monkeypatch
):
    """A clip is never left out of the dataset for good by the crash guard: three kills may
    have had another cause. Stand-ins as above for the kills, and for the day (the delay)."""
    from daemon.stages.transcribe import TranscribeStage

    write_wav(root / "inbox" / "tom" / "unlucky.wav", seconds=1.0)
    run_until_idle(root)  # imported; its transcription waits (no Whisper model in test roots)
    ledger = Ledger(Root.at(root).ledger_file)
    ledger.db.execute("UPDATE jobs SET state = 'running', attempts = 3 WHERE kind = 'transcribe'")
    ledger.close()
    log = run_until_idle(root).stderr
    assert "stopped 3 times while this ran" in log and "tried again by itself in 24 h" in log
    note = root / "voices" / "tom" / "dataset" / "unlucky.error.txt"
    assert "tried again by itself" in note.read_text()
    assert [j["kind"] for j in status(root)["failed"]] == ["transcribe"]
    run_until_idle(root)
    assert [j["kind"] for j in status(root)["failed"]] == ["transcribe"], "not before a day"
    monkeypatch.setattr(TranscribeStage, "retry_after_crash", 0.0)
    assert "transcribing unlucky.wav again after its crashes" in run_until_idle(root).stderr
    assert status(root)["failed"] == []


def test_an_edited_config_says_a_restart_is_needed_in_status_and_the_log(root, daemon):
    daemon.start()
    wait_for(lambda: status(root)["daemon"]["running"])
    assert status(root)["daemon"]["config_changed"] is False
    configure(root, {"import": {"min_seconds": 0.5}})
    assert status(root)["daemon"]["config_changed"] is True
    assert "config.yaml changed since it started" in voicedrop("status", "--root", str(root)).stdout
    wait_for(lambda: "config.yaml changed since voicedrop started" in daemon.output(), timeout=30)
