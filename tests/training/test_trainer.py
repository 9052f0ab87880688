"""daemon.training.trainer: a short fine-tune of the tiny models on generated speech."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from loguru import logger
from tortoise.models.autoregressive import UnifiedVoice

from daemon.core.files import file_sha256
from daemon.core.jobs import TrainProgress
from daemon.training.trainer import (
    CANDIDATE,
    CHECKPOINT,
    METRICS,
    TrainingOptions,
    optimizer_batch,
    parameter_groups,
    pick_micro_batch,
    train_voice,
    training_spec,
)
from daemon.tts.checkpoints import build_autoregressive, load_strict
from daemon.tts.engine import Engine, GenerationSettings
from daemon.tts.spec import ModelSpec
from tests.conftest import espeak, wait_for

# short enough for the tiny model's 48 mel codes (~2.2 s)
PHRASES = (
    "Hello there.",
    "Good morning.",
    "Thank you very much.",
    "See you soon.",
    "It is cold today.",
    "Open the door.",
    "Come here now.",
    "I like green tea.",
)
FAST = TrainingOptions(
    epochs=3, learning_rate=1e-3, batch_size=2, lr_schedule=(2,), validate_every=1, save_every=1
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak pieces for every phrase, written once."""
    folder = tmp_path_factory.mktemp("speech")
    for index, phrase in enumerate(PHRASES):
        espeak(folder / f"piece_{index:05d}.wav", phrase, speed=200)
    return folder


def make_voice(root: Path, speech: Path, extra: tuple[str, ...] = ()) -> Path:
    """voices/<voice>/dataset/ as the dataset stage writes it: 6 train and 2 validation lines."""
    voice = root / "voices" / "tester"
    shutil.copytree(speech, voice / "dataset" / "audio")
    lines = [f"audio/piece_{i:05d}.wav|{phrase}" for i, phrase in enumerate(PHRASES)]
    (voice / "dataset" / "train.txt").write_text("\n".join([*lines[:6], *extra]) + "\n")
    (voice / "dataset" / "validation.txt").write_text("\n".join(lines[6:]) + "\n")
    return voice


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines()]


def never() -> bool:
    return False


def test_loss_falls_and_the_model_renders(tiny_models: Path, speech: Path, tmp_path: Path) -> None:
    voice = make_voice(tmp_path, speech)
    options = TrainingOptions(**{**FAST.__dict__, "epochs": 12, "validate_every": 4})
    progress: list[TrainProgress] = []
    result = train_voice(voice, tiny_models, options, "en", never, progress.append)

    assert result.finished and result.step == result.total_steps == 36
    assert result.text_weight == 0.01 and result.codes_computed == 8 and result.warnings == []
    rows = records(result.run_dir)
    assert [r["step"] for r in rows] == list(range(1, 37))
    first, last = rows[:5], rows[-5:]
    assert sum(r["loss_total"] for r in last) < sum(r["loss_total"] for r in first)
    assert {"loss_text", "loss_mel", "lr", "steps_per_s", "epoch"} <= set(rows[0])
    assert [r["step"] for r in rows if "val_loss_total" in r] == [12, 24, 36]
    assert rows[0]["lr"] == 1e-3 and rows[-1]["lr"] == 5e-4  # halved at epoch 2 = step 6
    assert progress[-1].total_steps == 36 and progress[-1].eta_s == 0
    assert (result.run_dir / "loss.png").stat().st_size > 0
    assert (result.run_dir / "lr.png").stat().st_size > 0
    assert not (result.run_dir / CHECKPOINT).exists()  # finished: only the model is kept

    model = result.run_dir / CANDIDATE  # the train stage decides whether renders use it
    assert result.model_path == model and result.model_sha256 == file_sha256(model)
    assert not (voice / "models" / "autoregressive.pth").exists()
    load_strict(build_autoregressive(ModelSpec.tiny()), model)
    stock = UnifiedVoice(**ModelSpec.tiny().autoregressive)  # tortoise's own class, strictly
    stock.load_state_dict(torch.load(model, weights_only=True), strict=True)
    engine = Engine(tiny_models, device="cpu")
    engine.load(autoregressive=model)
    clip = torch.zeros(22050).numpy() + 0.01
    latents = engine.conditioning_latents([clip], autoregressive=model)
    settings = GenerationSettings(candidates=2, diffusion_iterations=4, max_mel_tokens=46)
    audio = engine.render("Hello there.", latents, settings, autoregressive=model)
    assert audio.size > 0

    # a second run reads every line's codes from the cache; a changed piece is encoded again
    again = TrainingOptions(**{**FAST.__dict__, "epochs": 1})
    second = train_voice(voice, tiny_models, again, "en", never, progress.append)
    assert second.codes_computed == 0
    # until its model is decided on (the train stage was killed while scoring), a finished
    # run is handed back as it is instead of being trained again
    undecided = train_voice(voice, tiny_models, again, "en", never, progress.append)
    assert undecided == second
    second.model_path.unlink()  # promoted or kept aside: the run is over
    shutil.copy(speech / "piece_00000.wav", voice / "dataset" / "audio" / "piece_00001.wav")
    assert train_voice(voice, tiny_models, again, "en", never, progress.append).codes_computed == 1


def test_a_stopped_run_resumes_where_it_stopped_and_ends_the_same(
    tiny_models: Path, speech: Path, tmp_path: Path
) -> None:
    whole = train_voice(
        make_voice(tmp_path / "a", speech), tiny_models, FAST, "en", never, lambda _: None
    )

    voice = make_voice(tmp_path / "b", speech)
    steps: list[int] = []
    stopped = train_voice(
        voice, tiny_models, FAST, "en", lambda: len(steps) >= 4, lambda p: steps.append(p.step)
    )
    assert not stopped.finished and stopped.step == 4 and stopped.model_path is None
    assert (stopped.run_dir / CHECKPOINT).exists()
    resumed = train_voice(voice, tiny_models, FAST, "en", never, lambda p: steps.append(p.step))
    assert steps == list(range(1, 10))
    assert resumed.finished and resumed.run_dir == stopped.run_dir
    assert [r["step"] for r in records(resumed.run_dir)] == list(range(1, 10))
    tuned = torch.load(resumed.model_path, weights_only=True)
    reference = torch.load(whole.model_path, weights_only=True)
    assert all(torch.equal(tuned[name], reference[name]) for name in reference)


KILLED_RUN = """
import sys
from pathlib import Path
from daemon.training.trainer import TrainingOptions, train_voice
options = TrainingOptions(epochs=100, learning_rate=1e-3, batch_size=2, save_every=1,
                          validate_every=100)
train_voice(Path(sys.argv[1]), Path(sys.argv[2]), options, "en", lambda: False,
            lambda p: print(p.step, flush=True))
"""


def test_kill_9_mid_run_resumes_from_the_last_checkpoint(
    tiny_models: Path, speech: Path, tmp_path: Path
) -> None:
    voice = make_voice(tmp_path, speech)
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_RUN), str(voice), str(tiny_models)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: list((voice / "training").glob(f"*/{CHECKPOINT}")), timeout=60)
        for line in process.stdout:
            if int(line) % 3 == 2:  # between two epoch-end checkpoints
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    checkpoint = next((voice / "training").glob(f"*/{CHECKPOINT}"))
    saved = torch.load(checkpoint, weights_only=True)["step"]
    assert saved > 0 and saved % 3 == 0

    options = TrainingOptions(
        epochs=100, learning_rate=1e-3, batch_size=2, save_every=1, validate_every=100
    )
    steps: list[TrainProgress] = []
    result = train_voice(voice, tiny_models, options, "en", lambda: bool(steps), steps.append)
    assert steps[0].step == saved + 1 and result.step == saved + 1
    assert [r["step"] for r in records(result.run_dir)] == list(range(1, saved + 2))


def test_text_weight_is_0_01_for_english_and_1_otherwise() -> None:
    assert TrainingOptions().text_weight("en") == 0.01
    assert TrainingOptions().text_weight("de") == 1.0
    assert TrainingOptions(text_lr_weight=0.3).text_weight("en") == 0.3


def test_skipped_lines_are_counted_and_a_non_english_voice_weighs_text_fully(
    tiny_models: Path, speech: Path, tmp_path: Path
) -> None:
    long_clip = tmp_path / "long.wav"  # over DL-Art-School's 255995 samples (11.6 s)
    espeak(long_clip, " ".join(["This sentence is far too long for one training line."] * 4))
    voice = make_voice(
        tmp_path, speech, ("audio/long.wav|Far too long.", "audio/piece_00001.wav|a_b")
    )
    shutil.copy(long_clip, voice / "dataset" / "audio" / "long.wav")
    options = TrainingOptions(**{**FAST.__dict__, "epochs": 1})
    result = train_voice(voice, tiny_models, options, "de", never, lambda _: None)
    assert result.skipped == {"audio too long": 1, "untokenisable": 1}
    assert "2 dataset lines skipped (1 audio too long, 1 untokenisable)" in result.warnings
    assert result.text_weight == 1.0
    row = records(result.run_dir)[-1]
    assert row["loss_total"] == pytest.approx(row["loss_text"] + row["loss_mel"])


def test_out_of_memory_halves_the_micro_batch_and_goes_on(
    tiny_models: Path, speech: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import daemon.training.trainer

    real = daemon.training.trainer.losses

    def small_batches_only(model, batch):
        if len(batch) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, batch)

    monkeypatch.setattr(daemon.training.trainer, "losses", small_batches_only)
    voice = make_voice(tmp_path, speech)
    options = TrainingOptions(**{**FAST.__dict__, "epochs": 2, "batch_size": 4})
    result = train_voice(voice, tiny_models, options, "en", never, lambda _: None)
    assert result.finished
    rows = records(result.run_dir)
    assert [r["micro_batch"] for r in rows] == [1, 1]  # halved until it fitted, then kept
    assert [r["batch_size"] for r in rows] == [4, 4]  # the optimizer batch never changes


def test_weight_decay_skips_biases_norms_and_embeddings() -> None:
    model = build_autoregressive(ModelSpec.tiny())
    decayed, plain = parameter_groups(model)
    names = {id(p): name for name, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert "text_embedding.weight" not in decayed_names
    assert "mel_pos_embedding.emb.weight" not in decayed_names
    assert not any(name.endswith(".bias") for name in decayed_names)
    assert "text_head.weight" in decayed_names
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_the_batch_is_the_optimizer_batch_and_memory_caps_only_the_micro_batch() -> None:
    """ai-voice-cloning's semantics: 128 lines per step (never more than there are), and what
    fits in memory picks how many go through the model at once."""
    assert optimizer_batch(TrainingOptions(), 1000) == 128
    assert optimizer_batch(TrainingOptions(), 40) == 40
    assert optimizer_batch(TrainingOptions(batch_size="auto"), 200) == 128
    assert optimizer_batch(TrainingOptions(batch_size=16), 100) == 16
    assert pick_micro_batch(TrainingOptions(), 128, cap=8) == 8  # 16 accumulation steps
    assert pick_micro_batch(TrainingOptions(), 40, cap=128) == 40
    assert pick_micro_batch(TrainingOptions(), 10, cap=4) == 4  # 3 steps: 4 + 4 + 2
    assert pick_micro_batch(TrainingOptions(micro_batch=3), 128, cap=128) == 3
    assert pick_micro_batch(TrainingOptions(micro_batch=64), 10, cap=4) == 10


def test_the_partial_last_batch_of_an_epoch_is_dropped(
    tiny_models: Path, speech: Path, tmp_path: Path
) -> None:
    voice = make_voice(tmp_path, speech, ("audio/piece_00006.wav|Come here now.",))
    options = TrainingOptions(**{**FAST.__dict__, "epochs": 2, "batch_size": 3})
    result = train_voice(voice, tiny_models, options, "en", never, lambda _: None)
    assert result.total_steps == 4  # 7 lines: 2 whole batches of 3 per epoch, not 3 batches


def test_gradient_checkpointing_saves_memory_without_changing_the_model(
    tiny_models: Path, speech: Path, tmp_path: Path
) -> None:
    """On by default on CUDA; here it is switched on by hand on the CPU: same weights."""
    options = TrainingOptions(**{**FAST.__dict__, "epochs": 1})
    plain = train_voice(make_voice(tmp_path / "a", speech), tiny_models, options, "en", never, id)
    checkpointed = train_voice(
        make_voice(tmp_path / "b", speech),
        tiny_models,
        dataclasses.replace(options, checkpointing=True),
        "en",
        never,
        id,
    )
    one = torch.load(plain.model_path, weights_only=True)
    other = torch.load(checkpointed.model_path, weights_only=True)
    assert all(torch.allclose(one[name], other[name], atol=1e-6) for name in one)
    spec = training_spec(ModelSpec.tiny(), options, torch.device("cuda"))
    assert spec.autoregressive["checkpointing"] is True
    assert build_autoregressive(spec).gpt.gradient_checkpointing


def test_a_run_left_by_other_settings_is_not_resumed_and_is_named_in_the_log(
    tiny_models: Path, speech: Path, tmp_path: Path
) -> None:
    """An unfinished run from an earlier version (other saved keys, other options) starts
    over cleanly instead of failing to load, and the log says where its checkpoint stays."""
    voice = make_voice(tmp_path, speech)
    old_run = voice / "training" / "20260101-010000"
    old_run.mkdir(parents=True)
    (old_run / "run.json").write_text(json.dumps({"fingerprint": "from an older version"}))
    torch.save({"step": 7, "grad_accum": 4, "model": {}}, old_run / CHECKPOINT)
    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        options = TrainingOptions(**{**FAST.__dict__, "epochs": 1})
        result = train_voice(voice, tiny_models, options, "en", never, lambda _: None)
    finally:
        logger.remove(sink)
    assert result.finished and result.run_dir != old_run and result.step == 3
    assert any("20260101-010000" in m and str(old_run) in m for m in messages), messages
    assert (old_run / CHECKPOINT).exists()  # the user's to delete, not silently lost
