"""The folders are the truth, the ledger a cache: a damaged or deleted ledger is reported by
`status` and `doctor`, set aside by the daemon and rebuilt from voices/ and outbox/."""

import hashlib
import json
from pathlib import Path

from daemon.core.jobs import JobKind, JobState
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.service.rebuild import pair_originals
from tests.conftest import run_until_idle, status, voicedrop, write_wav

VOICE = "anna"
CLIPS = 4
TRANSCRIBED = ("clip0.wav", "clip1.wav")  # given dataset lines; the others are not


def ledger_file(root: Path) -> Path:
    return root / ".voicedrop" / "ledger.sqlite3"


def imported_root(root: Path) -> Path:
    """A root with a few imported clips, two of them in the dataset, and a text not rendered
    (no TorToiSe weights in tests: it waits for them)."""
    for index in range(CLIPS):
        write_wav(root / "inbox" / VOICE / f"clip{index}.wav", 1.0, seed=index)
    text = root / "outbox" / VOICE / "hello.txt"
    text.parent.mkdir(parents=True, exist_ok=True)
    text.write_text("Hello there.\n", encoding="utf-8")
    run_until_idle(root)
    voice = root / "voices" / VOICE
    entries = {
        name: {
            "clip": name,
            "original": name,
            "source_sha256": hashlib.sha256((voice / "originals" / name).read_bytes()).hexdigest(),
            "options": {},
            "language": "en",
            "duration": 1.0,
            "text": "hello",
            "segments": [],
            "pieces": [],
        }
        for name in TRANSCRIBED
    }
    (voice / "dataset").mkdir(parents=True, exist_ok=True)
    (voice / "dataset" / "whisper.json").write_text(json.dumps(entries), encoding="utf-8")
    return root


def damage(path: Path) -> None:
    """A few KB overwritten in the middle of the file, as a failing disk or a stray write."""
    size = path.stat().st_size
    assert size >= 16384, size
    with open(path, "r+b") as handle:
        handle.seek(size // 2 - 2048)
        handle.write(bytes(range(256)) * 16)


def jobs(root: Path, kind: JobKind) -> dict[str, JobState]:
    ledger = Ledger(ledger_file(root))
    try:
        return {job.input_path.name: job.state for job in ledger.jobs(kind=kind)}
    finally:
        ledger.close()


def assert_rebuilt(root: Path, before: dict) -> None:
    """The same clips and audio as before; only the clips without lines wait for Whisper."""
    after = status(root)["voices"][VOICE]
    assert after["clips"] == before["clips"] == CLIPS
    assert abs(after["duration"] - before["duration"]) < 0.05
    transcriptions = jobs(root, JobKind.TRANSCRIBE)
    assert {name for name, state in transcriptions.items() if state == JobState.DONE} == set(
        TRANSCRIBED
    )
    queued = {n for n, s in transcriptions.items() if s in (JobState.PENDING, JobState.WAITING)}
    assert queued == {f"clip{index}.wav" for index in range(len(TRANSCRIBED), CLIPS)}
    assert jobs(root, JobKind.RENDER) == {"hello.txt": JobState.WAITING}


def test_status_and_doctor_report_a_damaged_ledger(root):
    imported_root(root)
    damage(ledger_file(root))
    for command in (["status"], ["transcribe", VOICE], ["train", VOICE, "--now"]):
        result = voicedrop(*command, "--root", str(root), check=False)
        assert result.returncode == 1
        assert "damaged" in result.stderr and "rebuilds it" in result.stderr
        assert "Traceback" not in result.stderr
    doctor = voicedrop("doctor", "--root", str(root), check=False)
    assert doctor.returncode == 1
    line = next(line for line in doctor.stdout.splitlines() if "job ledger" in line)
    assert line.startswith("fail") and "rebuilds it" in line


def test_run_sets_a_damaged_ledger_aside_and_rebuilds_it_from_the_folders(root):
    imported_root(root)
    before = status(root)["voices"][VOICE]
    damage(ledger_file(root))
    log = run_until_idle(root).stderr
    assert "is damaged" in log and "moved it aside" in log
    kept = list((root / ".voicedrop").glob("ledger.sqlite3.damaged-*"))
    assert [path.name for path in kept if not path.name.endswith(("-wal", "-shm"))]
    assert f"rebuilt the job ledger from the folders: {CLIPS} imported clips" in log
    assert_rebuilt(root, before)
    assert voicedrop("status", "--root", str(root)).returncode == 0


def test_a_deleted_ledger_is_rebuilt_even_after_status_created_an_empty_one(root):
    imported_root(root)
    before = status(root)["voices"][VOICE]
    for path in (root / ".voicedrop").glob("ledger.sqlite3*"):
        path.unlink()
    assert status(root)["voices"][VOICE]["clips"] == 0  # status creates an empty ledger
    log = run_until_idle(root).stderr
    assert "rebuilt the job ledger" in log
    assert_rebuilt(root, before)
    assert "rebuilt the job ledger" not in run_until_idle(root).stderr, "rebuilt only once"


def test_each_clip_finds_its_own_original_after_name_clashes(root):
    """`a.mp3` then `a.wav` dropped: the clips are `a.wav` and `a-2.wav`."""
    voice = Root.at(root).voice(VOICE)
    for name in ("a.mp3", "a.wav", "b.flac"):
        write_wav(voice.originals / name, 0.1, format="WAV")
    for name in ("a.wav", "a-2.wav", "b.wav", "orphan.wav"):
        write_wav(voice.clips / name, 0.1)
    transcripts = {"a-2.wav": {"original": "a.mp3"}}
    pairs = {
        clip.name: original.name for clip, original in pair_originals(voice, transcripts).items()
    }
    assert pairs == {"a-2.wav": "a.mp3", "a.wav": "a.wav", "b.wav": "b.flac"}


def test_a_ledger_restored_from_an_older_backup_learns_the_clips_it_missed(root):
    """A partial loss: the ledger knows two clips, the folders hold four."""
    for index in range(2):
        write_wav(root / "inbox" / VOICE / f"early{index}.wav", 1.0, seed=10 + index)
    run_until_idle(root)
    backup = ledger_file(root).read_bytes()
    imported_root(root)
    before = status(root)["voices"][VOICE]
    for path in (root / ".voicedrop").glob("ledger.sqlite3*"):
        path.unlink()
    ledger_file(root).write_bytes(backup)
    assert status(root)["voices"][VOICE]["clips"] == 2
    log = run_until_idle(root).stderr
    assert f"rebuilt the job ledger from the folders: {CLIPS} imported clips" in log
    after = status(root)["voices"][VOICE]
    assert after["clips"] == before["clips"] == CLIPS + 2
    done = {n for n, s in jobs(root, JobKind.TRANSCRIBE).items() if s == JobState.DONE}
    assert done == set(TRANSCRIBED)
    assert "rebuilt the job ledger" not in run_until_idle(root).stderr, "rebuilt only once"
