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
    wait_for,
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
HOLD_OUT = {"validation_share": 0.3}


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
    # a larger hold-out share than the default 5 %, so these few clips give hold-out lines
    configure(root, {"whisper": {"model": str(WHISPER_BASE)}, "dataset": HOLD_OUT})
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
                "dataset": HOLD_OUT,
                # hold-out renders as quick as FAST_TEXT's
                "tts": {"models_dir": str(tiny_models), "candidates": 2, "diffusion_iterations": 4},
                "training": {
                    **training_settings(),
                    "schedule": "0 0 1 1 *",
                    "catch_up": 0,
                    "promote_texts": 2,
                    **training,
                },
            },
        )
        return root

    return setup


def test_train_now_fine_tunes_and_renders_use_the_new_model(voice_root):
    # The tiny set babbles: both models' renders are heard (CER, similarity) but differ by
    # chance, so only the validation loss may decide here.
    root = voice_root(promote_max_cer_rise=1.0, promote_max_similarity_drop=1.0)
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
    assert training["last"]["promoted"] is True
    runs = list((root / "voices" / "tester" / "training").glob("*/loss.png"))
    assert runs, "a loss chart is written per run"

    # the production scorer: both models' real validation loss on the hold-out lines, and
    # the same hold-out texts rendered by each with the same seeds, kept to listen to
    promotion = json.loads((run.parent / "promotion.json").read_text())
    assert json.loads(run.read_text())["promotion"] == promotion
    candidate, base = promotion["candidate"], promotion["current"]
    assert base["model"] == "base" and candidate["sha256"] == digest
    assert candidate["validation_loss"] < base["validation_loss"]
    assert promotion["decision"]["promote"] is True
    assert "validation loss" in promotion["decision"]["reason"]
    for scores in (candidate, base):  # heard by Whisper, compared by the speaker encoder
        assert 0 <= scores["cer"] <= 1 and -1 <= scores["similarity"] <= 1
        assert all(text["cer"] is not None for text in scores["texts"])
    seeds = [(text["text"], text["seed"]) for text in candidate["texts"]]
    assert len(seeds) == 2 and seeds == [(text["text"], text["seed"]) for text in base["texts"]]
    assert len(list((run.parent / "promotion").glob("*.wav"))) == 4
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
    paused = log.index("training paused (renders or speech requests are waiting for the device)")
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


class StandInScorer:
    """A stand-in for the production scorer (RenderScorer), whose character error rate and
    speaker similarity need TorToiSe's released weights, a Whisper model and a speaker
    encoder: real weights cannot exist here. Its validation loss is the real one, from the
    trainer on the tiny model; the candidate's character error rate is `candidate_cer`
    against 0.10 for the current model, so a test decides which one scores worse."""

    def __init__(self, voice, models_dir: Path, candidate_cer: float, calls: list) -> None:
        self.voice, self.models_dir = voice, models_dir
        self.candidate_cer = candidate_cer
        self.calls = calls

    def score(self, model, voice, holdout):
        from daemon.core.files import cached_sha256
        from daemon.quality.promotion import ModelScores
        from daemon.training.trainer import TrainingOptions, holdout_loss

        self.calls.append((model, holdout))
        options = TrainingOptions(device="cpu")
        loss = holdout_loss(voice.home, self.models_dir, model, options, "en")
        is_candidate = model is not None and model.name == "candidate.pth"
        path = model or self.models_dir / "autoregressive.pth"
        cer = self.candidate_cer if is_candidate else 0.10
        return ModelScores(str(model or "base"), cached_sha256(path), cer, None, loss)

    def release(self) -> None:
        """Nothing loaded to free."""


@pytest.fixture
def stand_in(monkeypatch, tiny_models: Path):
    """The train stage scores with a StandInScorer whose candidate CER is set by the test."""
    from daemon.stages.train import TrainStage

    picked = {"cer": 0.10}
    calls: list = []

    def scorer(stage, voice, settings, result, options, models_dir, dvae):
        return StandInScorer(voice, tiny_models, picked["cer"], calls)

    monkeypatch.setattr(TrainStage, "scorer", scorer)

    def train(root: Path, candidate_cer: float, epochs: int) -> dict:
        """One fine-tune, scored with the candidate's CER; its run's promotion.json."""
        picked["cer"] = candidate_cer
        configure_epochs(root, epochs)
        voicedrop("train", "--root", str(root), "tester", "--now", timeout=600)
        runs = sorted((root / "voices" / "tester" / "training").glob("*/promotion.json"))
        return json.loads(runs[-1].read_text())

    train.calls = calls
    return train


def configure_epochs(root: Path, epochs: int) -> None:
    """Another epoch count: another run (its settings are part of what it trains on)."""
    import yaml

    config = yaml.safe_load((root / "config.yaml").read_text())
    config["training"]["epochs"] = epochs
    (root / "config.yaml").write_text(yaml.safe_dump(config))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_worse_fine_tune_is_kept_aside_and_a_better_one_promoted(voice_root, stand_in):
    root = voice_root()
    models = root / "voices" / "tester" / "models"
    active = models / "autoregressive.pth"
    first = stand_in(root, candidate_cer=0.05, epochs=1)  # better than the base model
    assert first["decision"]["promote"] is True and first["current"]["model"] == "base"
    promoted = sha256(active)

    worse = stand_in(root, candidate_cer=0.30, epochs=2)
    assert worse["decision"]["promote"] is False
    reason = worse["decision"]["reason"]
    assert "character error rate 0.100 -> 0.300 (training.promote_max_cer_rise 0.02)" in reason
    assert sha256(active) == promoted  # renders go on with the model they had
    assert worse["current"]["sha256"] == promoted
    kept = models / "rejected" / f"{worse['run']}.pth"
    assert sha256(kept) == worse["candidate"]["sha256"]
    assert json.loads(kept.with_suffix(".json").read_text())["decision"]["reason"] == reason
    run = root / "voices" / "tester" / "training" / worse["run"]
    assert json.loads((run / "result.json").read_text())["promotion"] == worse
    assert not (run / "candidate.pth").exists()
    # the real validation loss of both models, on the same hold-out texts and seeds
    assert worse["candidate"]["validation_loss"] > 0 and worse["current"]["validation_loss"] > 0
    (candidate_call, current_call) = stand_in.calls[-2:]
    assert candidate_call[1] == current_call[1] and current_call[0] == active

    training = status(root)["voices"]["tester"]["training"]
    assert training["last"]["promoted"] is False and training["last"]["decision"] == reason
    text = voicedrop("status", "--root", str(root)).stdout
    assert f"not promoted the last fine-tune, kept as {kept}: {reason}" in text

    better = stand_in(root, candidate_cer=0.05, epochs=3)
    assert better["decision"]["promote"] is True
    assert sha256(active) == better["candidate"]["sha256"]
    (previous,) = (models / "previous").glob("*.pth")
    assert sha256(previous) == promoted  # the replaced model is kept
    text = voicedrop("status", "--root", str(root)).stdout
    assert "promoted the last fine-tune: not worse than the current model" in text


def test_models_rollback_restores_the_previous_model_byte_for_byte(voice_root, stand_in):
    root = voice_root()
    active = root / "voices" / "tester" / "models" / "autoregressive.pth"
    refused = voicedrop("models", "rollback", "--root", str(root), "tester", check=False)
    assert refused.returncode == 1
    assert "voice tester has no previous model to go back to" in refused.stderr

    stand_in(root, candidate_cer=0.05, epochs=1)
    first = sha256(active)
    stand_in(root, candidate_cer=0.05, epochs=2)
    second = sha256(active)
    assert first != second

    rolled = voicedrop("models", "rollback", "--root", str(root), "tester")
    assert "renders with its previous model again" in rolled.stdout
    assert sha256(active) == first
    provenance = json.loads(active.with_name("autoregressive.json").read_text())
    assert provenance["origin"] == "rollback" and provenance["sha256"] == first
    assert "/training/" in provenance["source"]  # the run it was first trained in
    voicedrop("models", "rollback", "--root", str(root), "tester")  # undoes the rollback
    assert sha256(active) == second


def test_models_rollback_refuses_while_the_voice_is_training(voice_root, stand_in):
    from daemon.service.lock import InstanceLock

    root = voice_root()
    stand_in(root, candidate_cer=0.05, epochs=1)
    stand_in(root, candidate_cer=0.05, epochs=2)
    before = sha256(root / "voices" / "tester" / "models" / "autoregressive.pth")
    lock = InstanceLock(Root.at(root))  # as the daemon holds it while it runs the job
    lock.acquire()
    ledger = Ledger(Root.at(root).ledger_file)
    try:
        queue_training(Root.at(root), ledger, "tester", now=True)
        assert ledger.claim({JobKind.TRAIN: 10}).kind == JobKind.TRAIN
        refused = voicedrop("models", "rollback", "--root", str(root), "tester", check=False)
    finally:
        ledger.close()
        lock.release()
    assert refused.returncode == 1 and "tester is being fine-tuned" in refused.stderr
    assert sha256(root / "voices" / "tester" / "models" / "autoregressive.pth") == before


def test_a_kill_while_scoring_scores_again_and_never_installs_half_decided(voice_root, tmp_path):
    import signal
    import subprocess
    import sys

    root = voice_root()
    log = tmp_path / "train.log"
    command = [sys.executable, "-m", "daemon", "train", "--root", str(root), "tester", "--now"]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "scoring tester: candidate model, hold-out text 2/2" in log.read_text())
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    models = root / "voices" / "tester" / "models"
    (run,) = (root / "voices" / "tester" / "training").glob("*/result.json")
    assert not (models / "autoregressive.pth").exists()
    assert (run.parent / "candidate.pth").exists() and not (run.parent / "promotion.json").exists()

    again = voicedrop("train", "--root", str(root), "tester", "--now", timeout=600)
    assert "fine-tuning tester: step" not in again.stderr  # trained already: only scored
    assert "scoring tester: candidate model, hold-out text 1/2" in again.stderr
    promotion = json.loads((run.parent / "promotion.json").read_text())
    assert promotion["decision"]["promote"] is True
    assert sha256(models / "autoregressive.pth") == promotion["candidate"]["sha256"]
    assert not (run.parent / "candidate.pth").exists()
