"""daemon.service.intake in this process, over a real root and ledger: what a stable drop
becomes (an import or render job, a rejection with its reason, or nothing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.core.config import load_settings
from daemon.core.jobs import ImportData, JobKind, JobState, RenderData
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.service.intake import Intake
from daemon.service.watch import classify
from tests.conftest import write_wav


@pytest.fixture
def intake(root: Path):
    ledger = Ledger(Root.at(root).ledger_file)
    yield Intake(Root.at(root), load_settings(root / "config.yaml"), ledger)
    ledger.close()


def take(intake: Intake, path: Path) -> bool:
    drop = classify(intake.root, path, intake.settings)
    assert drop is not None, path
    return intake.take(drop)


def reason(root: Path, voice: str, name: str) -> str:
    return (root / "inbox" / voice / "rejected" / f"{name}.reason.txt").read_text()


def test_a_clip_is_queued_once_for_its_voice(root: Path, intake: Intake) -> None:
    clip = write_wav(root / "inbox" / "anna" / "a.wav")
    assert take(intake, clip) is True
    assert take(intake, clip) is False, "the same file, still queued, is not queued twice"
    (job,) = intake.ledger.jobs()
    assert (job.kind, job.voice, job.input_path, job.state) == (
        JobKind.IMPORT,
        "anna",
        clip,
        JobState.PENDING,
    )


def test_the_same_audio_under_another_name_is_rejected_as_a_duplicate(root, intake) -> None:
    first = write_wav(root / "inbox" / "anna" / "a.wav")
    copy = root / "inbox" / "anna" / "copy.wav"
    copy.write_bytes(first.read_bytes())
    take(intake, first)
    (job,) = intake.ledger.jobs()
    original = root / "voices" / "anna" / "originals" / "a.wav"
    intake.ledger.finish(job.id, ImportData(original=original))
    assert take(intake, copy) is False
    assert not copy.exists()
    assert "already imported as voices/anna/originals/a.wav" in reason(root, "anna", "copy.wav")
    assert len(intake.ledger.jobs()) == 1


def test_a_clip_that_failed_is_queued_again_when_dropped_again(root, intake) -> None:
    clip = write_wav(root / "inbox" / "anna" / "a.wav")
    take(intake, clip)
    (job,) = intake.ledger.jobs()
    intake.ledger.fail(job.id, "decoder crashed")
    assert take(intake, clip) is True
    assert intake.ledger.get(job.id).state == "pending"


def test_a_type_not_in_the_import_list_is_rejected_with_the_allowed_ones(root, intake) -> None:
    text = root / "inbox" / "anna" / "notes.txt"
    text.parent.mkdir(parents=True)
    text.write_text("hello")
    assert take(intake, text) is False
    why = reason(root, "anna", "notes.txt")
    assert why.startswith(".txt is not an audio file type voicedrop imports (allowed: ")
    assert "import.extensions" in why
    assert intake.ledger.jobs() == []


def test_a_symlink_is_moved_aside_and_its_target_never_touched(root, intake, tmp_path) -> None:
    target = write_wav(tmp_path / "elsewhere" / "real.wav")
    before = target.read_bytes()
    link = root / "inbox" / "anna" / "link.wav"
    link.parent.mkdir(parents=True)
    os.symlink(target, link)
    assert take(intake, link) is False
    assert target.read_bytes() == before
    moved = root / "inbox" / "anna" / "rejected" / "link.wav"
    assert moved.is_symlink() and os.readlink(moved) == str(target)
    assert "symbolic link" in reason(root, "anna", "link.wav")
    assert intake.ledger.jobs() == []


def test_a_text_is_queued_for_rendering_until_its_wav_matches_it(root, intake) -> None:
    text = root / "outbox" / "anna" / "story.txt"
    text.parent.mkdir(parents=True)
    text.write_text("Once upon a time.")
    assert take(intake, text) is True
    assert take(intake, text) is False, "queued already"
    (job,) = intake.ledger.jobs()
    assert (job.kind, job.voice) == (JobKind.RENDER, "anna")
    intake.ledger.finish(job.id, RenderData())
    assert take(intake, text) is True, "done, but its wav is missing: render again"


def test_a_refused_voice_folder_queues_nothing_and_is_named_once(root, intake, tmp_path) -> None:
    outside = tmp_path / "outside"
    write_wav(outside / "a.wav")
    os.symlink(outside, root / "inbox" / "escape")
    intake.check_voice_folders()
    intake.check_voice_folders()
    assert intake.warned_voices == {"escape"}
    assert take(intake, root / "inbox" / "escape" / "a.wav") is False
    assert intake.ledger.jobs() == []
    assert (outside / "a.wav").exists()
