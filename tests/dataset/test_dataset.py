"""Dataset preparation with the real packaged Whisper model on real speech."""

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import (
    SENTENCES,
    WHISPER_BASE,
    configure,
    espeak,
    imported_clips,
    run_until_idle,
    status,
    tortoise_clips,
    voicedrop,
    word_error_rate,
)

MORE_SENTENCES = (
    "A gentle rain fell on the rooftops while the town slept peacefully.",
    "The old library keeps thousands of books about history and science.",
    "Our neighbours painted their front door a bright shade of yellow.",
    "The train to the city leaves from the second platform every hour.",
    "He wrote a long letter to his sister who lives far away in the north.",
    "After dinner we played cards and told stories by the warm fire.",
)
LINE = re.compile(r"^audio/[^|/]+\.wav\|[^|\n]+$")


@pytest.fixture
def root(root: Path) -> Path:
    """The shared test root, pointed at the Whisper model `make setup` assembled."""
    assert (WHISPER_BASE / "model.bin").is_file(), "run `make setup` first"
    configure(root, {"whisper": {"model": str(WHISPER_BASE)}})
    return root


def dataset(root: Path, voice: str) -> Path:
    return root / "voices" / voice / "dataset"


def transcripts(root: Path, voice: str) -> dict:
    return json.loads((dataset(root, voice) / "whisper.json").read_text())


def all_lines(root: Path, voice: str) -> list[str]:
    folder = dataset(root, voice)
    return (folder / "train.txt").read_text().splitlines() + (
        folder / "validation.txt"
    ).read_text().splitlines()


def assert_pieces_valid(root: Path, voice: str, min_seconds=0.6, max_seconds=11.6) -> None:
    lines = all_lines(root, voice)
    assert lines
    for line in lines:
        assert LINE.match(line), line
        audio = dataset(root, voice) / line.split("|")[0]
        info = sf.info(audio)
        assert info.samplerate == 22050 and info.channels == 1
        assert min_seconds <= info.duration <= max_seconds, (line, info.duration)
        assert info.frames < 255995


def test_generated_speech_is_transcribed_accurately(root):
    for index, sentence in enumerate(SENTENCES):
        espeak(root / "inbox" / "robot" / f"s{index}.wav", sentence)
    run_until_idle(root)
    entries = transcripts(root, "robot")
    hypotheses = [entries[f"s{i}.wav"]["text"] for i in range(len(SENTENCES))]
    assert word_error_rate(list(SENTENCES), hypotheses) <= 0.2, hypotheses
    assert_pieces_valid(root, "robot")
    report = status(root)["voices"]["robot"]["dataset"]
    assert report["language"] == "en"
    assert report["train"] + report["validation"] == len(all_lines(root, "robot"))
    assert report["transcribed"] == len(SENTENCES) and report["to_transcribe"] == 0
    assert report["problems"] == []
    audit = json.loads((dataset(root, "robot") / "audit.json").read_text())["pieces"]
    assert sorted(f"audio/{p['file']}" for p in audit) == sorted(
        line.split("|")[0] for line in all_lines(root, "robot")
    )
    # Heard again, a piece said right differs from its transcript by a word at most (up to
    # 0.13 here: faster-whisper's int8 kernels differ between CPUs); another sentence is 0.7+
    assert report["suspect"] == [] and all(p["cer"] <= 0.2 for p in audit), audit


def test_tortoise_clips_become_a_dataset_with_language_detected_once(root):
    (root / "inbox" / "tom").mkdir()
    for clip in tortoise_clips("tom"):
        shutil.copy(clip, root / "inbox" / "tom" / clip.name)
    result = run_until_idle(root)
    assert result.stderr.count("voice tom speaks 'en'") == 1
    language = json.loads((dataset(root, "tom") / "language.json").read_text())
    assert language["language"] == "en" and language["from"]
    entries = transcripts(root, "tom")
    assert sorted(entries) == sorted(c.name for c in tortoise_clips("tom"))
    for entry in entries.values():
        assert entry["language"] == "en" and entry["segments"] and entry["pieces"]
        assert all(s["words"] for s in entry["segments"])
    assert_pieces_valid(root, "tom")
    assert "paramount studios" in " ".join(all_lines(root, "tom")).lower()
    for name in ("train.txt", "validation.txt"):
        assert_loads_like_dl_art_school(dataset(root, "tom") / name)


def assert_loads_like_dl_art_school(list_file: Path) -> None:
    """Read a list as DL-Art-School's TextWavLoader does for ai-voice-cloning (fetcher "lj"):
    `path|text` per line, paths relative to the list; audio through scipy's wavfile (float32
    taken as is) at 22050 Hz and 0.6 s to 255995 samples; BPE text of at most 200 tokens with
    neither [UNK] (1) nor [STOP] (0), which its loader asserts. A line it would skip fails."""
    from scipy.io import wavfile
    from tortoise.utils.tokenizer import VoiceBpeTokenizer

    tokenizer = VoiceBpeTokenizer()
    for line in list_file.read_text(encoding="utf-8").splitlines():
        path, text = line.strip().split("|")
        with warnings.catch_warnings():  # libsndfile's PEAK chunk: scipy skips it, as DLAS does
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, audio = wavfile.read(list_file.parent / path)
        assert rate == 22050 and audio.dtype == np.float32 and audio.ndim == 1, line
        assert 0.6 * rate <= audio.shape[-1] <= 255995 and np.abs(audio).max() <= 1, line
        tokens = tokenizer.encode(text)
        assert 0 < len(tokens) <= 200 and 0 not in tokens and 1 not in tokens, line


def test_a_long_clip_is_cut_into_pieces_within_bounds(root, tmp_path):
    parts = [
        sf.read(espeak(tmp_path / f"p{i}.wav", s))[0]
        for i, s in enumerate(SENTENCES + MORE_SENTENCES)
    ]
    pause = np.zeros(int(0.25 * 22050))
    long_clip = np.concatenate([np.concatenate([p, pause]) for p in parts])
    assert len(long_clip) / 22050 >= 40
    (root / "inbox" / "long").mkdir()
    sf.write(root / "inbox" / "long" / "speech.wav", long_clip, 22050)
    run_until_idle(root)
    entry = transcripts(root, "long")["speech.wav"]
    assert entry["duration"] >= 40
    assert len(entry["pieces"]) >= 4
    assert_pieces_valid(root, "long")
    covered = sum(p["end"] - p["start"] for p in entry["pieces"])
    assert covered >= 0.7 * entry["duration"]


def test_reruns_are_incremental_and_removed_originals_lose_their_lines(root):
    inbox = root / "inbox" / "inc"
    espeak(inbox / "a.wav", SENTENCES[0])
    espeak(inbox / "b.wav", SENTENCES[1])
    run_until_idle(root)
    before = transcripts(root, "inc")
    espeak(inbox / "c.wav", SENTENCES[2])
    second = run_until_idle(root)
    assert second.stderr.count("transcribed ") == 1 and "transcribed c.wav" in second.stderr
    after = transcripts(root, "inc")
    assert {k: after[k] for k in before} == before
    third = run_until_idle(root)
    assert "transcribed " not in third.stderr
    (root / "voices" / "inc" / "originals" / "a.wav").unlink()
    run_until_idle(root)
    assert sorted(transcripts(root, "inc")) == ["b.wav", "c.wav"]
    assert not any(line.startswith("audio/a_") for line in all_lines(root, "inc"))
    assert not list((dataset(root, "inc") / "audio").glob("a_*.wav"))
    audit = json.loads((dataset(root, "inc") / "audit.json").read_text())["pieces"]
    assert {p["clip"] for p in audit} == {"b.wav", "c.wav"}
    assert [c.name for c in imported_clips(root, "inc")] == ["b.wav", "c.wav"]
    assert status(root)["voices"]["inc"]["clips"] == 2


def test_a_configured_language_is_used_instead_of_detection(root):
    voice = root / "voices" / "deutsch"
    voice.mkdir(parents=True)
    (voice / "voice.yaml").write_text("whisper:\n  language: de\n")
    espeak(root / "inbox" / "deutsch" / "gruss.wav", "Guten Morgen, wie geht es dir heute?", "de")
    result = run_until_idle(root)
    assert "speaks" not in result.stderr
    assert not (dataset(root, "deutsch") / "language.json").exists()
    entry = transcripts(root, "deutsch")["gruss.wav"]
    assert entry["language"] == "de"
    assert "morgen" in entry["text"].lower()
    assert status(root)["voices"]["deutsch"]["dataset"]["language"] == "de"


def test_silence_and_noise_give_no_lines_and_a_clear_reason(root):
    rng = np.random.default_rng(3)
    inbox = root / "inbox" / "quiet"
    inbox.mkdir()
    sf.write(inbox / "noise.wav", (0.1 * rng.standard_normal(22050 * 4)).astype(np.float32), 22050)
    room = 0.003 * rng.standard_normal(22050 * 4)
    sf.write(inbox / "room.wav", room.astype(np.float32), 22050)
    run_until_idle(root)
    report = status(root)["voices"]["quiet"]
    assert report["clips"] == 2
    assert report["dataset"]["train"] == report["dataset"]["validation"] == 0
    problems = report["dataset"]["problems"]
    assert len(problems) == 2 and all("no speech found" in p for p in problems)
    text = voicedrop("status", "--root", str(root), "quiet").stdout
    assert "no speech found in noise.wav" in text


def test_text_the_tortoise_tokenizer_cannot_read_is_flagged(root):
    espeak(root / "inbox" / "pct" / "pct.wav", "Prices went up by fifty percent last year.")
    run_until_idle(root)
    flagged = status(root)["voices"]["pct"]["dataset"]["unknown_tokens"]
    assert flagged and "'%' map to [UNK]" in flagged[0]


def test_transcribe_command_rebuilds_a_voice(root):
    espeak(root / "inbox" / "redo" / "a.wav", SENTENCES[3])
    run_until_idle(root)
    lines = all_lines(root, "redo")
    (dataset(root, "redo") / "train.txt").unlink()  # a rebuild writes the lists anew
    rebuilt = voicedrop("transcribe", "--root", str(root), "redo")
    assert "transcribed a.wav" in rebuilt.stderr
    assert "voice redo speaks 'en'" in rebuilt.stderr
    assert "transcribed 1 clips of redo" in rebuilt.stdout
    assert lines and all_lines(root, "redo") == lines


def test_a_missing_whisper_model_makes_transcription_wait(root):
    configure(root, {"whisper": {"model": "models/not-there"}})
    espeak(root / "inbox" / "wait" / "a.wav", SENTENCES[0])
    run_until_idle(root)
    report = status(root)
    assert report["jobs"]["waiting"] == 1
    assert "models/not-there does not exist" in report["voices"]["wait"]["waiting"][0]["reason"]


def test_lines_whose_audio_does_not_say_their_text_are_listed_and_can_be_left_out(root):
    """An end_offset that cuts the last words off every piece: each piece is heard again, is
    suspect, and with dataset.drop_suspect no line is left to train on."""
    voice = root / "voices" / "clipped"
    voice.mkdir(parents=True)
    (voice / "voice.yaml").write_text("dataset:\n  end_offset: -1.5\n  drop_suspect: true\n")
    espeak(root / "inbox" / "clipped" / "a.wav", SENTENCES[4])
    espeak(root / "inbox" / "clipped" / "b.wav", SENTENCES[5])
    result = run_until_idle(root)
    assert result.stderr.count(") is suspect: CER") == 2
    report = status(root)["voices"]["clipped"]["dataset"]
    assert len(report["suspect"]) == 2 and report["suspect_left_out"]
    assert all(s["cer"] > 0.3 for s in report["suspect"])
    assert report["train"] == report["validation"] == 0
    text = voicedrop("status", "--root", str(root), "clipped").stdout
    assert text.count("left out of training") == 2


def test_lists_never_carry_a_field_separator_or_a_line_break(root):
    """A whisper.json written before names were made safe may still hold `pipe|name_00000`;
    Whisper may hear a `|`. The list format has no escaping, so neither may reach a line."""
    from daemon.core.config import Settings
    from daemon.core.paths import Root
    from daemon.dataset.lists import Transcripts, dataset_lines

    transcripts = Transcripts(Root.at(root).voice("tom"))
    transcripts.entries = {
        "old|name.wav": {
            "clip": "old|name.wav",
            "pieces": [{"file": "old|name_00000.wav", "text": "Lost.", "duration": 3.0}],
        },
        "fine.wav": {
            "clip": "fine.wav",
            "pieces": [{"file": "fine_00000.wav", "text": "A | B\nC.", "duration": 3.0}],
        },
    }
    lines = dataset_lines(transcripts, Settings(), held=set())
    every = lines["train"] + lines["validation"]
    assert every == ["audio/fine_00000.wav|A B C."]
