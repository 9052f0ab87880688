"""daemon.quality.audit: the transcribe stage (this process, the packaged Whisper model) hears
every piece again; a piece whose audio does not say its text is suspect, listed in audit.json
and `status`, and left out of the lists with dataset.drop_suspect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from daemon.core.config import load_settings, load_voice_settings
from daemon.core.jobs import JobKind
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.core.worker import StageContext
from daemon.dataset.lists import Transcripts, write_lists
from daemon.dataset.whisper import Whisper
from daemon.quality.audit import AUDIT_VERSION, hear_pieces, read_audit, record_clip
from daemon.stages.transcribe import TranscribeStage
from tests.conftest import (
    SENTENCES,
    WHISPER_BASE,
    configure,
    espeak,
    status,
    tortoise_clips,
    voicedrop,
)
from tests.quality.speech import spoken

IMPOSTOR = "Seven green parrots argued loudly about the price of tomatoes."


@pytest.fixture(scope="module")
def whisper() -> Whisper:
    return Whisper()


def transcribe_stage(root: Path, whisper: Whisper) -> TranscribeStage:
    configure(root, {"whisper": {"model": str(WHISPER_BASE), "language": "en"}})
    stage = TranscribeStage(StageContext(Root.at(root), load_settings(root / "config.yaml")))
    stage.whisper = whisper
    return stage


@pytest.fixture
def stage(root: Path, whisper: Whisper) -> TranscribeStage:
    return transcribe_stage(root, whisper)


@pytest.fixture(scope="module")
def transcribed(tmp_path_factory: pytest.TempPathFactory, whisper: Whisper) -> Path:
    """A root whose voice `anna` of three espeak clips the stage has transcribed (and
    audited): made once per module, copied by `voice`."""
    from daemon.cli import main as cli_main

    root = tmp_path_factory.mktemp("transcribed") / "root"
    assert cli_main(["init", str(root)]) == 0
    stage = transcribe_stage(root, whisper)
    voice = stage.root.voice("anna")
    ledger = Ledger(stage.root.ledger_file)
    try:
        for index, sentence in enumerate(SENTENCES[:3]):
            clip = espeak(voice.clips / f"s{index}.wav", sentence)
            ledger.enqueue(JobKind.TRANSCRIBE, voice.name, clip, f"sha-{index}")
            stage.run(ledger.claim({JobKind.TRANSCRIBE: 0}), ledger)
    finally:
        ledger.close()
    return root


@pytest.fixture
def voice(stage: TranscribeStage, transcribed: Path) -> VoicePaths:
    """A voice of three espeak clips, transcribed (and audited) by the stage: the module's
    copy, with the ledger that transcribed it."""
    voice = stage.root.voice("anna")
    shutil.copytree(transcribed / "voices" / "anna", voice.home)
    shutil.copyfile(Root.at(transcribed).ledger_file, stage.root.ledger_file)
    return voice


def lines(voice: VoicePaths) -> list[str]:
    return [
        line.split("|")[0]
        for name in ("train.txt", "validation.txt")
        for line in (voice.dataset / name).read_text(encoding="utf-8").splitlines()
    ]


def swap_in_another_sentence(stage: TranscribeStage, voice: VoicePaths) -> str:
    """s1's first piece now says IMPOSTOR; it is heard again as the stage hears a clip."""
    entry = Transcripts(voice).entries["s1.wav"]
    piece = entry["pieces"][0]
    audio, rate = spoken(IMPOSTOR)
    sf.write(voice.dataset / "audio" / piece["file"], audio, rate, subtype="FLOAT")
    heard = hear_pieces(
        stage.whisper, voice, "s1.wav", entry["pieces"], "en", stage.piece_speaker(voice)
    )
    record_clip(voice, "s1.wav", heard)
    return piece["file"]


def rewrite_lists(stage: TranscribeStage, voice: VoicePaths, **dataset: object) -> None:
    """The lists as the next transcription or prune writes them, with these dataset settings."""
    if dataset:
        (voice.home / "voice.yaml").write_text(json.dumps({"dataset": dataset}), encoding="utf-8")
    settings = load_voice_settings(stage.settings, voice.config_file)
    write_lists(voice, Transcripts(voice), settings)


def test_every_piece_is_heard_again_and_speech_that_says_its_text_passes(voice) -> None:
    audit = json.loads((voice.dataset / "audit.json").read_text(encoding="utf-8"))
    assert audit["version"] == AUDIT_VERSION and audit["max_cer"] == 0.3
    pieces = [p for e in Transcripts(voice).entries.values() for p in e["pieces"]]
    assert [p["file"] for p in audit["pieces"]] == [p["file"] for p in pieces]
    for piece in audit["pieces"]:
        assert piece["heard"] and piece["cer"] <= 0.1 and not piece["suspect"], piece
        assert piece["similarity"] > 0.9, piece  # espeak's voice, like the voice's clips
    assert status(voice.root.path, "anna")["voices"]["anna"]["dataset"]["suspect"] == []


def test_a_piece_that_says_another_sentence_is_listed_and_kept_by_default(stage, voice) -> None:
    swapped = swap_in_another_sentence(stage, voice)
    rewrite_lists(stage, voice)
    suspect = read_audit(voice).suspects
    assert [p.file for p in suspect] == [swapped]
    assert suspect[0].cer > 0.6 and "parrot" in suspect[0].heard.lower()
    assert f"audio/{swapped}" in lines(voice)  # dataset.drop_suspect is false by default
    report = status(voice.root.path, "anna")["voices"]["anna"]["dataset"]
    assert [p["file"] for p in report["suspect"]] == [f"audio/{swapped}"]
    said = Transcripts(voice).entries["s1.wav"]["pieces"][0]["text"]
    assert report["suspect"][0]["text"] == said and report["suspect"][0]["cer"] > 0.6
    text = voicedrop("status", "--root", str(voice.root.path), "anna").stdout
    assert f"suspect  audio/{swapped}: CER" in text and "parrot" in text.lower()
    assert "dataset.drop_suspect: true leaves it out" in text


def test_drop_suspect_leaves_the_piece_out_of_training_and_validation(stage, voice) -> None:
    everything = lines(voice)
    swapped = swap_in_another_sentence(stage, voice)
    rewrite_lists(stage, voice, drop_suspect=True)
    assert lines(voice) == [line for line in everything if line != f"audio/{swapped}"]
    assert read_audit(voice).drop_suspect
    text = voicedrop("status", "--root", str(voice.root.path), "anna").stdout
    assert f"suspect  audio/{swapped}" in text and "left out of training" in text
    rewrite_lists(stage, voice, drop_suspect=True, max_cer=1.0)  # a looser limit keeps it
    assert lines(voice) == everything and read_audit(voice).suspects == []


def test_pieces_that_leave_the_dataset_leave_the_audit(stage, voice) -> None:
    transcripts = Transcripts(voice)
    del transcripts.entries["s0.wav"]
    transcripts.save()
    rewrite_lists(stage, voice)
    assert {p.clip for p in read_audit(voice).pieces} == {"s1.wav", "s2.wav"}


def test_a_damaged_audit_reads_as_empty_and_is_written_again(stage, voice) -> None:
    (voice.dataset / "audit.json").write_text("{not json", encoding="utf-8")
    assert status(voice.root.path, "anna")["voices"]["anna"]["dataset"]["suspect"] == []
    swap_in_another_sentence(stage, voice)
    rewrite_lists(stage, voice)
    assert [p.clip for p in read_audit(voice).pieces] == ["s1.wav"]
    assert len(read_audit(voice).suspects) == 1


def test_a_voice_without_pieces_writes_no_audit(stage) -> None:
    voice = stage.root.voice("empty")
    rewrite_lists(stage, voice)
    assert (voice.dataset / "train.txt").exists()
    assert not (voice.dataset / "audit.json").exists()


def test_lines_transcribed_before_the_audit_are_named_until_transcribed_again(voice) -> None:
    (voice.dataset / "audit.json").unlink()  # as a dataset made by an earlier version
    root = str(voice.root.path)
    report = status(voice.root.path, "anna")["voices"]["anna"]["dataset"]
    assert report["unheard"] == len(lines(voice)) and report["suspect"] == []
    text = voicedrop("status", "--root", root, "anna").stdout
    assert f"{len(lines(voice))} lines were transcribed before" in text
    assert "`voicedrop transcribe anna` checks them" in text
    voicedrop("transcribe", "--root", root, "anna")
    assert status(voice.root.path, "anna")["voices"]["anna"]["dataset"]["unheard"] == 0
    assert len(read_audit(voice).pieces) == len(lines(voice))


def test_a_piece_of_another_speaker_saying_its_own_line_is_suspect_by_speaker(stage) -> None:
    """Real speech: a voice of tom's clips (shipped with tortoise-tts) whose first piece is
    replaced by espeak-ng saying that piece's very words: Whisper hears the right text, the
    speaker encoder hears someone else."""
    voice = stage.root.voice("tom")
    ledger = Ledger(stage.root.ledger_file)
    try:
        for index, source in enumerate(tortoise_clips("tom")[:2]):
            clip = voice.clips / source.name
            clip.parent.mkdir(parents=True, exist_ok=True)
            clip.write_bytes(source.read_bytes())
            ledger.enqueue(JobKind.TRANSCRIBE, voice.name, clip, f"tom-{index}")
            stage.run(ledger.claim({JobKind.TRANSCRIBE: 0}), ledger)
    finally:
        ledger.close()
    own = read_audit(voice).pieces
    assert own and all(p.similarity is not None and p.similarity > 0.7 for p in own), own
    name, entry = next(iter(Transcripts(voice).entries.items()))
    piece = entry["pieces"][0]
    audio, rate = spoken(piece["text"])
    sf.write(voice.dataset / "audio" / piece["file"], audio, rate, subtype="FLOAT")
    speaker = stage.piece_speaker(voice)
    record_clip(
        voice, name, hear_pieces(stage.whisper, voice, name, entry["pieces"], "en", speaker)
    )
    rewrite_lists(stage, voice, drop_suspect=True)
    (suspect,) = read_audit(voice).suspects
    assert suspect.file == piece["file"] and suspect.cer <= 0.3 and suspect.similarity < 0.5
    assert f"audio/{piece['file']}" not in lines(voice)
    text = voicedrop("status", "--root", str(voice.root.path), "tom").stdout
    assert f"suspect  audio/{piece['file']}: CER" in text and "speaker similarity 0." in text
