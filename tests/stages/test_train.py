"""Fine-tuning through the daemon: a dataset the pipeline prepared from generated speech,
the tiny model set, the training window and the hand-off to rendering."""

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import soundfile as sf

from daemon.core.jobs import JobKind, JobState
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.stages.train import queue_training
from tests.conftest import (
    WHISPER_BASE,
    SteppingClock,
    configure,
    espeak,
    run_daemon,
    run_until_idle,
    status,
    voicedrop,
)

# 5-12 s each: real dataset lines, longer than anything the old tiny model could hold
PHRASES = (
    "Good morning to you, I hope the trip across the valley was pleasant and not too long.",
    "Thank you very much for the flowers, they look lovely on the kitchen table by the window.",
    "See you again soon, and do not forget to bring the old photographs you promised to show me.",
    "It is cold today, so the children are wearing their warm coats and woollen hats to school.",
    "Please open the door for the delivery man, he is carrying three heavy boxes up the stairs.",
    "I like green tea in the afternoon, especially with a slice of lemon and a little honey.",
    "The sky is blue above the harbour and the fishing boats are slowly returning with the tide.",
    "Where is my coat? I am sure I left it on the chair in the hall when I came home last night.",
)
FAST_TEXT = "---\ncandidates: 2\ndiffusion_iterations: 4\n---\nA fine-tuned voice."


def training_settings(**overrides) -> dict:
    values = {
        "epochs": 2,
        "batch_size": 2,
        "learning_rate": 0.001,
        "lr_schedule": [1],
        "validate_every": 1,
        "save_every": 1,
    }
    return {**values, **overrides}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_models) -> Path:
    """A root whose voice `tester` has a dataset prepared by the pipeline (once per module)."""
    from daemon.cli import main as cli_main

    root = tmp_path_factory.mktemp("prepared") / "root"
    assert cli_main(["init", str(root)]) == 0
    configure(root, {"whisper": {"model": str(WHISPER_BASE)}})
    for index, phrase in enumerate(PHRASES):
        espeak(root / "inbox" / "tester" / f"p{index}.wav", phrase, speed=120)
    run_until_idle(root)
    assert (root / "voices" / "tester" / "dataset" / "train.txt").read_text().strip()
    return root


@pytest.fixture
def voice_root(prepared: Path, tmp_path: Path, tiny_models: Path):
    """A fresh copy of the prepared root, configured for a quick tiny fine-tune."""
    root = tmp_path / "root"
    shutil.copytree(prepared, root)

    def setup(**training) -> Path:
        configure(
            root,
            {
                "whisper": {"model": str(WHISPER_BASE)},
                "tts": {"models_dir": str(tiny_models)},
                "training": {
                    **training_settings(),
                    "schedule": "0 0 1 1 *",
                    "catch_up": 0,
                    **training,
                },
            },
        )
        return root

    return setup


def test_train_now_fine_tunes_and_renders_use_the_new_model(voice_root):
    root = voice_root()
    lines = (root / "voices" / "tester" / "dataset" / "train.txt").read_text().splitlines()
    longest = max(
        sf.info(root / "voices/tester/dataset" / line.split("|")[0]).duration for line in lines
    )
    assert 5 < longest <= 11.6
    result = voicedrop("train", "--root", str(root), "tester", "--now", timeout=600)
    assert "fine-tuned" in result.stderr
    (run,) = (root / "voices" / "tester" / "training").glob("*/result.json")
    assert json.loads(run.read_text())["skipped"] == {}  # every line fits the tiny model
    model = root / "voices" / "tester" / "models" / "autoregressive.pth"
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    training = status(root)["voices"]["tester"]["training"]
    assert training["last"]["model_sha256"] == digest
    runs = list((root / "voices" / "tester" / "training").glob("*/loss.png"))
    assert runs, "a loss chart is written per run"
    text = root / "outbox" / "tester" / "hello.txt"
    text.parent.mkdir(parents=True)
    text.write_text(FAST_TEXT)
    run_until_idle(root)
    meta = json.loads(text.with_suffix(".json").read_text())
    assert meta["fine_tuned"] is True
    assert meta["models"]["autoregressive.pth"]["sha256"] == digest


# The window tests run the daemon in this process on a stepping clock, on a day the real clock
# never reaches while tests run (29 February 2028, 02:00), so nothing waits for the wall clock.
LEAP_DAY = "0 2 29 2 *"


def leap_day(hour: int, minute: int) -> datetime:
    return datetime(2028, 2, 29, hour, minute).astimezone()


def test_outside_the_window_a_requested_fine_tune_waits(voice_root):
    root = voice_root(schedule=LEAP_DAY, catch_up=3600, until="04:00")
    queued = voicedrop("train", "--root", str(root), "tester")
    assert "runs it in the next window (2028-02-29 02:00)" in queued.stdout
    log = run_daemon(root, now=SteppingClock(leap_day(1, 30)))
    assert "fine-tuning voice" not in log
    training = status(root)["voices"]["tester"]["training"]
    assert training["state"] == "waiting"
    note = training["note"]
    assert "fine-tuning runs in the training window (next start 2028-02-29T02:00" in note
    assert not (root / "voices" / "tester" / "models" / "autoregressive.pth").exists()


def test_a_start_missed_while_down_is_caught_up_and_trains_changed_voices(voice_root):
    root = voice_root(schedule=LEAP_DAY, catch_up=3600, until="04:00")
    log = run_daemon(root, now=SteppingClock(leap_day(2, 10)))
    assert "catching up the training start missed at 2028-02-29T02:00" in log
    assert "fine-tuning voice tester" in log
    assert (root / "voices" / "tester" / "models" / "autoregressive.pth").exists()
    again = run_daemon(root, now=SteppingClock(leap_day(2, 20)))
    assert "catching up" not in again and "fine-tuning voice" not in again


def test_a_start_missed_longer_ago_than_catch_up_is_not_caught_up(voice_root):
    root = voice_root(schedule=LEAP_DAY, catch_up=3600, until="04:00")
    log = run_daemon(root, now=SteppingClock(leap_day(3, 30)))  # 90 min after the start
    assert "catching up" not in log and "fine-tuning voice" not in log
    assert status(root)["voices"]["tester"]["training"]["state"] is None
    assert not (root / "voices" / "tester" / "models" / "autoregressive.pth").exists()


def test_the_window_end_checkpoints_and_waits_for_the_next_night(voice_root):
    root = voice_root(epochs=400, schedule=LEAP_DAY, catch_up=3600, until="02:06")
    # 5 s a reading: the window (02:05 to 02:06) closes after a dozen readings, a few steps in
    log = run_daemon(root, now=SteppingClock(leap_day(2, 5), step=5))
    assert "fine-tuning voice tester (400 epochs)" in log
    assert "training window closed, checkpointed" in log
    training = status(root)["voices"]["tester"]["training"]
    assert training["state"] == "waiting"
    assert "the training window closed at 02:06" in training["note"]
    assert list((root / "voices" / "tester" / "training").glob("*/checkpoint.pt"))
    assert not (root / "voices" / "tester" / "models" / "autoregressive.pth").exists()


class OpenUntilRendered:
    """The window's clock: inside it until `rendered` exists and `more` readings went by
    (the resumed run trains a few steps), then past its end, which ends the run."""

    def __init__(self, rendered: Path, more: int = 4) -> None:
        self.rendered = rendered
        self.more = more

    def __call__(self) -> datetime:
        if self.rendered.exists():
            self.more -= 1
        return leap_day(2, 5) if self.more > 0 else leap_day(7, 0)


def test_renders_are_served_between_training_steps(voice_root):
    root = voice_root(epochs=400, schedule=LEAP_DAY, catch_up=3600, until="07:00")
    text = root / "outbox" / "tester" / "meanwhile.txt"
    text.parent.mkdir(parents=True)
    text.write_text(FAST_TEXT)  # queued once stable, after the window's start queued training
    log = run_daemon(root, now=OpenUntilRendered(text.with_suffix(".json")))
    paused = log.index("training paused (renders are waiting for the device)")
    rendered = log.index("rendered meanwhile.txt")
    resumed = log.index("fine-tuning voice tester", rendered)
    assert log.index("fine-tuning voice tester") < paused < rendered < resumed
    assert log.index("training window closed, checkpointed", resumed)
    assert text.with_suffix(".wav").exists()
    training = status(root)["voices"]["tester"]["training"]
    assert training["state"] == "waiting" and "window closed" in training["note"]


def test_training_is_queued_only_when_the_dataset_changed(tmp_path: Path) -> None:
    root = Root.at(tmp_path)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    dataset = root.voice("anna").dataset
    assert queue_training(root, ledger, "anna") is False  # no dataset yet
    dataset.mkdir(parents=True)
    (dataset / "train.txt").write_text("audio/a.wav|Hello there.\n")
    assert queue_training(root, ledger, "anna") is True
    assert queue_training(root, ledger, "anna") is False  # the same lists: one job
    (dataset / "validation.txt").write_text("audio/b.wav|Good night.\n")
    assert queue_training(root, ledger, "anna") is True
    jobs = ledger.jobs(kind=JobKind.TRAIN, voice="anna")
    assert [job.state for job in jobs] == [JobState.PENDING, JobState.PENDING]
    assert queue_training(root, ledger, "anna", now=True) is True
    assert ledger.get(jobs[-1].id).data.now is True
