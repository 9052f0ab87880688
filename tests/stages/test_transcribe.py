"""daemon.dataset.whisper and the transcribe stage in this process: the packaged Whisper model
(loaded once for the module), espeak speech with a known text, a real root and ledger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from daemon.core.config import load_settings
from daemon.core.jobs import JobKind, JobState, Outcome
from daemon.core.ledger import Job, Ledger
from daemon.core.paths import Root
from daemon.core.worker import Blocked, StageContext
from daemon.dataset.whisper import Whisper, WhisperOptions, load_for_whisper
from daemon.stages.transcribe import TranscribeStage
from tests.conftest import SENTENCES, WHISPER_BASE, configure, espeak, normalised_words


@pytest.fixture(scope="module")
def whisper() -> Whisper:
    """One Whisper for the module: the stage keeps its model while the options are the same."""
    return Whisper()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("speech")
    return [espeak(folder / f"s{i}.wav", sentence) for i, sentence in enumerate(SENTENCES[:3])]


@pytest.fixture
def stage(root: Path, whisper: Whisper) -> TranscribeStage:
    configure(root, {"whisper": {"model": str(WHISPER_BASE)}})
    stage = TranscribeStage(StageContext(Root.at(root), load_settings(root / "config.yaml")))
    stage.whisper = whisper  # one loaded model for the module
    return stage


@pytest.fixture
def ledger(root: Path):
    ledger = Ledger(Root.at(root).ledger_file)
    yield ledger
    ledger.close()


def imported(stage: TranscribeStage, ledger: Ledger, voice: str, clip: Path) -> Job:
    """The clip as the import stage leaves it (in voices/<voice>/clips/), with its job."""
    target = stage.root.voice(voice).clips / clip.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, target)
    ledger.enqueue(JobKind.TRANSCRIBE, voice, target, f"sha-{clip.name}")
    return ledger.claim({JobKind.TRANSCRIBE: 0})


def entries(stage: TranscribeStage, voice: str) -> dict:
    return json.loads((stage.root.voice(voice).dataset / "whisper.json").read_text())


def test_whisper_detects_the_language_and_times_every_word(whisper, stage, speech) -> None:
    options = WhisperOptions.from_settings(stage.settings, stage.root)
    audio = load_for_whisper(speech[0])
    language, probability = whisper.detect_language(options, [audio])
    assert language == "en" and probability > 0.5
    progress: list[float] = []
    transcript = whisper.transcribe(options, audio, "en", progress.append)
    heard = " ".join(normalised_words(transcript.text))
    assert "quick" in heard and "fox" in heard and "lazy dog" in heard, transcript.text
    assert abs(transcript.duration - sf.info(speech[0]).duration) < 0.1
    assert progress == sorted(progress) and 0.5 < progress[-1] <= 1.01  # up to the last word
    words = [word for segment in transcript.segments for word in segment["words"]]
    assert len(words) >= len(SENTENCES[0].split()) - 2
    assert all(0 <= w["start"] <= w["end"] <= transcript.duration + 0.1 for w in words)
    assert json.loads(json.dumps(transcript.segments)) == transcript.segments  # plain JSON


def test_a_clip_becomes_dataset_lines_and_is_not_redone_unchanged(stage, ledger, speech) -> None:
    job = imported(stage, ledger, "anna", speech[0])
    stage.run(job, ledger)
    done = ledger.get(job.id)
    assert done.state == JobState.DONE and done.data.outcome == Outcome.TRANSCRIBED
    voice = stage.root.voice("anna")
    assert json.loads((voice.dataset / "language.json").read_text())["language"] == "en"
    entry = entries(stage, "anna")["s0.wav"]
    assert entry["source_sha256"] == "sha-s0.wav" and entry["language"] == "en"
    assert done.data.pieces == len(entry["pieces"]) >= 1
    lines = (voice.dataset / "train.txt").read_text().splitlines() + (
        voice.dataset / "validation.txt"
    ).read_text().splitlines()
    assert [line.split("|")[0] for line in lines] == [
        f"audio/{piece['file']}" for piece in entry["pieces"]
    ]
    assert all((voice.dataset / "audio" / piece["file"]).is_file() for piece in entry["pieces"])

    ledger.requeue(job.id, job.input_path)
    stage.run(ledger.claim({JobKind.TRANSCRIBE: 0}), ledger)
    assert ledger.get(job.id).data.outcome == Outcome.UNCHANGED
    assert entries(stage, "anna")["s0.wav"] == entry


def test_language_is_detected_once_per_voice(stage, ledger, speech, monkeypatch) -> None:
    stage.run(imported(stage, ledger, "anna", speech[0]), ledger)
    detections: list[int] = []
    real = stage.whisper.detect_language
    monkeypatch.setattr(
        stage.whisper, "detect_language", lambda *a: detections.append(1) or real(*a)
    )
    stage.run(imported(stage, ledger, "anna", speech[1]), ledger)
    assert detections == [], "the stored language.json is used for the voice's next clips"
    assert entries(stage, "anna")["s1.wav"]["language"] == "en"


def test_noise_gives_no_lines_and_says_why(stage, ledger, tmp_path) -> None:
    noise = tmp_path / "noise.wav"
    rng = np.random.default_rng(3)
    sf.write(noise, (0.1 * rng.standard_normal(22050 * 3)).astype(np.float32), 22050)
    configure(stage.root.path, {"whisper": {"model": str(WHISPER_BASE), "language": "en"}})
    stage.settings = load_settings(stage.root.path / "config.yaml")
    job = imported(stage, ledger, "quiet", noise)
    stage.run(job, ledger)
    done = ledger.get(job.id).data
    assert done.outcome == Outcome.NO_SPEECH and done.pieces == 0
    assert done.problem.startswith("no speech found in noise.wav")


def test_a_clip_deleted_before_its_turn_is_done_without_whisper(stage, ledger, speech) -> None:
    job = imported(stage, ledger, "anna", speech[2])
    job.input_path.unlink()
    stage.run(job, ledger)
    assert ledger.get(job.id).data.outcome == Outcome.REMOVED
    assert not (stage.root.voice("anna").dataset / "whisper.json").exists()


def test_a_missing_model_blocks_the_job_with_its_path(stage, ledger, speech) -> None:
    configure(stage.root.path, {"whisper": {"model": "models/not-there"}})
    stage.settings = load_settings(stage.root.path / "config.yaml")
    with pytest.raises(Blocked, match="models/not-there does not exist"):
        stage.run(imported(stage, ledger, "anna", speech[0]), ledger)


def test_a_transcription_given_up_leaves_no_orphan_pieces_and_says_how_to_retry(
    stage, ledger, speech
) -> None:
    """What three kills mid-transcription leave behind: a piece written, whisper.json not."""
    job = imported(stage, ledger, "anna", speech[0])
    audio = stage.root.voice("anna").dataset / "audio"
    audio.mkdir(parents=True)
    orphan = audio / f"{speech[0].stem}_00000.wav"
    shutil.copy(speech[0], orphan)
    other = audio / "another-clip_00000.wav"
    shutil.copy(speech[0], other)
    stage.give_up(job, "the daemon stopped 3 times while this ran")
    assert not orphan.exists() and other.exists()
    note = stage.root.voice("anna").dataset / f"{speech[0].stem}.error.txt"
    assert "`voicedrop transcribe anna` tries every clip" in note.read_text()


def test_every_piece_is_heard_again_and_a_cut_through_its_words_is_suspect(
    stage, ledger, speech
) -> None:
    """dataset.end_offset -1.5 cuts the last words off each piece: what Whisper then hears
    in the piece is no longer its line's text."""
    voice = stage.root.voice("cut")
    voice.home.mkdir(parents=True)
    (voice.home / "voice.yaml").write_text("dataset:\n  end_offset: -1.5\n")
    job = imported(stage, ledger, "cut", speech[0])
    stage.run(job, ledger)
    piece = entries(stage, "cut")["s0.wav"]["pieces"][0]
    audit = json.loads((voice.dataset / "audit.json").read_text())["pieces"]
    assert [p["file"] for p in audit] == [piece["file"]] and audit[0]["suspect"]
    assert audit[0]["cer"] > 0.3 and "fox" in audit[0]["heard"].lower()
    assert "lazy dog" in piece["text"] and "lazy dog" not in audit[0]["heard"].lower()
    lines = (voice.dataset / "train.txt").read_text() + (
        voice.dataset / "validation.txt"
    ).read_text()
    assert f"audio/{piece['file']}|" in lines  # listed, not dropped: drop_suspect is false
    done = ledger.get(job.id).data
    assert 0 < done.heard_seconds < done.seconds  # the voice's ETA counts the audit too
