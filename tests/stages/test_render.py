"""Rendering through the real daemon with the tiny model set (real tortoise classes)."""

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
from loguru import logger

from daemon.core.config import load_settings
from daemon.core.jobs import ImportData, JobKind, JobState
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.core.worker import YIELD_FOR, StageContext, Worker
from daemon.report.status import collect
from daemon.service.intake import Intake
from daemon.stages.render import RenderStage
from tests.conftest import (
    FAST,
    WHISPER_BASE,
    DaemonProcess,
    configure,
    run_until_idle,
    status,
    tortoise_clips,
    voicedrop,
    wait_for,
    write_wav,
)
from tests.faults.test_environment import mounted

WHISPER = WHISPER_BASE
LONG_TEXT = FAST + " ".join(
    f"This is sentence number {n}, and it carries on for a little while longer." for n in range(8)
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecar(text: Path) -> dict:
    return json.loads(text.with_suffix(".json").read_text())


def test_a_dropped_text_comes_back_as_speech_with_a_sidecar(tts_root, daemon, tiny_models):
    daemon.start()
    text = tts_root / "outbox" / "tom" / "hello.txt"
    text.write_text(FAST + "Hello there, this is a test.")
    wait_for(lambda: text.with_suffix(".json").exists(), timeout=180)
    info = sf.info(text.with_suffix(".wav"))
    assert info.samplerate == 24000 and info.channels == 1 and info.frames > 0
    meta = sidecar(text)
    assert meta["text_sha256"] == sha256(text) and meta["voice"] == "tom"
    assert set(meta["models"]) >= {"autoregressive.pth", "clvp2.pth", "diffusion_decoder.pth"}
    for name, model in meta["models"].items():
        assert model["sha256"] == sha256(tiny_models / name)
    assert meta["seed"] == 0 and meta["settings"]["candidates"] == 2
    assert meta["settings"]["diffusion_iterations"] == 4 and meta["settings"]["preset"] == "fast"
    assert len(meta["chunks"]) == 1 and meta["fine_tuned"] is False
    assert meta["output"] == "hello.wav" and text.with_suffix(".srt").exists()
    (chunk,) = meta["chunks"]
    assert chunk["text"] == "Hello there, this is a test." and chunk["start"] == 0
    assert chunk["end"] == pytest.approx(meta["audio_seconds"], abs=0.01)
    assert abs(meta["audio_seconds"] - info.frames / info.samplerate) < 0.01
    assert meta["real_time_factor"] > 0
    assert not text.with_suffix(".error.txt").exists()


def test_the_same_text_seed_settings_and_model_give_identical_audio(tts_root, tmp_path):
    text = tmp_path / "line.txt"
    text.write_text(FAST + "The same words twice.")
    for name in ("a.wav", "b.wav"):
        voicedrop(
            "render",
            "--root",
            str(tts_root),
            "tom",
            "--file",
            str(text),
            "-o",
            str(tmp_path / name),
        )
    assert sha256(tmp_path / "a.wav") == sha256(tmp_path / "b.wav")
    text.write_text(FAST.replace("---\n", "---\nseed: 7\n", 1) + "The same words twice.")
    voicedrop(
        "render", "--root", str(tts_root), "tom", "--file", str(text), "-o", str(tmp_path / "c.wav")
    )
    assert sha256(tmp_path / "c.wav") != sha256(tmp_path / "a.wav")


def test_front_matter_overrides_settings_for_one_file(tts_root):
    text = tts_root / "outbox" / "tom" / "custom.txt"
    text.write_text(
        "---\nseed: 5\ncandidates: 2\noutput_sample_rate: 16000\ndecoder: hifigan\n"
        "temperature: 0.5\n---\nCustom settings here."
    )
    run_until_idle(tts_root)
    meta = sidecar(text)
    assert meta["seed"] == 5 and meta["settings"]["decoder"] == "hifigan"
    assert (
        meta["settings"]["temperature"] == 0.5 and meta["settings"]["output_sample_rate"] == 16000
    )
    assert "hifidecoder.pth" in meta["models"]
    assert sf.info(text.with_suffix(".wav")).samplerate == 16000


def test_diffusion_temperature_from_config_voice_yaml_and_front_matter(tts_root, tiny_models):
    """Each level's value reaches the sidecar and the diffusion decoder: the same words with
    the same seed sound different at another temperature."""
    configure(tts_root, {"tts": {"models_dir": str(tiny_models), "diffusion_temperature": 0.5}})
    outbox = tts_root / "outbox" / "tom"
    (outbox / "config.txt").write_text(FAST + "Warm words.")
    text = FAST.replace("---\n", "---\ndiffusion_temperature: 0.125\n", 1) + "Warm words."
    (outbox / "text.txt").write_text(text)
    run_until_idle(tts_root)
    voice_yaml = tts_root / "voices" / "tom" / "voice.yaml"
    voice_yaml.write_text("tts:\n  diffusion_temperature: 0.25\n")
    (outbox / "voice.txt").write_text(FAST + "Warm words.")
    run_until_idle(tts_root)
    for name, temperature in (("config", 0.5), ("voice", 0.25), ("text", 0.125)):
        assert sidecar(outbox / f"{name}.txt")["settings"]["diffusion_temperature"] == temperature
    wavs = {sha256(outbox / f"{name}.wav") for name in ("config", "voice", "text")}
    assert len(wavs) == 3


def test_a_bracketed_prompt_is_spoken_and_the_render_completes(tts_root, tmp_path, tiny_models):
    """The prompt reaches the AR (the audio differs from the text without it); random weights
    say no words, so no cut point is found: the chunk is kept whole, logged and recorded."""
    whisper = {"model": str(WHISPER)}
    configure(tts_root, {"tts": {"models_dir": str(tiny_models)}, "whisper": whisper})
    text = tmp_path / "angry.txt"
    text.write_text(FAST + "[I am really angry.] Hello there my friend.")
    result = voicedrop(
        "render", "--root", str(tts_root), "tom", "--file", str(text), "-o", str(tmp_path / "a.wav")
    )
    assert "could not find where the [bracketed] words end" in result.stderr
    meta = sidecar(tmp_path / "a.wav")
    assert meta["redaction"] == ["kept"] and len(meta["chunks"]) == 1
    plain = tmp_path / "plain.txt"
    plain.write_text(FAST + "Hello there my friend.")
    plain_wav = str(tmp_path / "b.wav")
    voicedrop("render", "--root", str(tts_root), "tom", "--file", str(plain), "-o", plain_wav)
    assert sidecar(tmp_path / "b.wav")["redaction"] == ["none"]
    assert sha256(tmp_path / "a.wav") != sha256(tmp_path / "b.wav")


def test_hifigan_renders_from_a_folder_without_clvp_or_diffusion(root, tmp_path, tiny_models):
    """tortoise's fast API needs only the AR and hifidecoder.pth; the sidecar records every
    setting, the generation limit and the latents method included."""
    models = tmp_path / "fast-models"
    models.mkdir()
    for name in ("autoregressive.pth", "hifidecoder.pth", "spec.json"):
        shutil.copy(tiny_models / name, models)
    tts = {"models_dir": str(models), "decoder": "hifigan", "latents": "tortoise"}
    configure(root, {"tts": {**tts, "max_mel_tokens": 20}})
    (root / "inbox" / "tom").mkdir()
    for clip in tortoise_clips("tom")[:2]:
        shutil.copy(clip, root / "inbox" / "tom" / clip.name)
    text = root / "outbox" / "tom" / "fast.txt"
    text.parent.mkdir()
    text.write_text("Hello there, this is the fast decoder.")
    run_until_idle(root)
    assert not text.with_suffix(".error.txt").exists()
    meta = sidecar(text)
    assert set(meta["models"]) == {"autoregressive.pth", "hifidecoder.pth"}
    assert meta["settings"]["decoder"] == "hifigan" and meta["settings"]["latents"] == "tortoise"
    assert meta["settings"]["max_mel_tokens"] == 20 == meta["settings"]["generated_mel_tokens"]
    assert meta["audio_seconds"] <= 22 * 1024 / 22050 + 0.1
    text.write_text("---\nmax_mel_tokens: 40\n---\nHello there, this is the fast decoder.")
    run_until_idle(root)
    longer = sidecar(text)
    assert longer["settings"]["max_mel_tokens"] == 40
    assert longer["audio_seconds"] > meta["audio_seconds"]
    configure(root, {"tts": {**tts, "decoder": "diffusion"}})
    text.write_text("Now with diffusion.")
    run_until_idle(root)
    error = text.with_suffix(".error.txt").read_text()
    assert "clvp2.pth" in error and "diffusion_decoder.pth" in error and "vocoder.pth" in error
    assert "hifidecoder.pth" not in error


BAD_TEXTS = [  # (name, content, what its error file says)
    ("empty.txt", b"", "has no text to speak"),
    ("only_front.txt", b"---\nseed: 1\n---\n\n", "has no text to speak"),
    ("binary.txt", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "is a binary file"),
    ("latin.txt", "Caf\xe9 au lait".encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    ("typo.txt", b"---\ntemprature: 0.5\n---\nHi.", "temprature: unknown key (did you mean"),
    ("badvalue.txt", b"---\ncandidates: many\n---\nHi.", "front matter.candidates: expected"),
    ("badrange.txt", b"---\ntop_p: 3\n---\nHi.", "front matter.top_p: must be in (0, 1]"),
    ("nocodes.txt", b"---\nmax_mel_tokens: 0\n---\nHi.", "max_mel_tokens: must be 1-602"),
    (
        "frozen.txt",
        b"---\ndiffusion_temperature: 0\n---\nHi.",
        "front matter.diffusion_temperature: must be more than 0",
    ),
    ("unclosed.txt", b"Hello [there friend.", "is never closed"),
    ("prompt_only.txt", b"[I am really angry.]", "nothing would be left to hear"),
    ("nested.txt", b"Hi [a [b] c] there.", "brackets cannot nest"),
]


def test_bad_texts_get_an_error_file(tts_root):
    """Every bad text of BAD_TEXTS dropped at once: each gets its own reason, no audio, and
    stays as it was."""
    for name, content, _ in BAD_TEXTS:
        (tts_root / "outbox" / "tom" / name).write_bytes(content)
    run_until_idle(tts_root)
    for name, content, message in BAD_TEXTS:
        text = tts_root / "outbox" / "tom" / name
        error = text.with_suffix(".error.txt")
        assert message in error.read_text(), (name, error.read_text())
        assert not text.with_suffix(".wav").exists(), name
        assert text.read_bytes() == content, name


def test_a_voice_without_clips_waits_with_an_error_file(tts_root):
    text = tts_root / "outbox" / "nobody" / "hi.txt"
    text.parent.mkdir()
    text.write_text(FAST + "Hello?")
    run_until_idle(tts_root)
    assert "voice nobody has no clips yet" in text.with_suffix(".error.txt").read_text()
    (waiting,) = collect(Root.at(tts_root))["voices"]["nobody"]["waiting"]
    assert waiting["kind"] == "render" and waiting["file"] == "hi.txt"
    assert "no clips yet" in waiting["reason"]


def test_missing_weights_wait_then_render_once_installed(root, daemon, tmp_path, tiny_models):
    models = tmp_path / "weights"
    # waiting jobs are probed every rescan: every second here
    configure(root, {"tts": {"models_dir": str(models)}, "watch": {"rescan_every": 1}})
    (root / "inbox" / "tom").mkdir()
    shutil.copy(tortoise_clips("tom")[0], root / "inbox" / "tom" / "1.wav")
    text = root / "outbox" / "tom" / "later.txt"
    text.parent.mkdir()
    text.write_text(FAST + "Weights arrive later.")
    daemon.start()
    error = text.with_suffix(".error.txt")
    wait_for(error.exists, timeout=60)
    message = error.read_text()
    for name in ("autoregressive.pth", "diffusion_decoder.pth", "vocoder.pth", "clvp2.pth"):
        assert name in message
    assert str(models) in message
    report = status(root)
    assert any(w["file"] == "later.txt" for w in report["voices"]["tom"]["waiting"])
    check = voicedrop("doctor", "--root", str(root), check=False).stdout
    assert "tts models: missing autoregressive.pth" in check
    shutil.copytree(tiny_models, models)
    wait_for(text.with_suffix(".json").exists, timeout=120)
    assert not error.exists()


def test_latents_are_reused_and_recomputed_after_a_new_clip_or_model(cold_tts_root, tiny_models):
    tts_root = cold_tts_root
    outbox = tts_root / "outbox" / "tom"
    first = outbox / "one.txt"
    first.write_text(FAST + "First text.")
    run_until_idle(tts_root)
    second = outbox / "two.txt"
    second.write_text(FAST + "Second text.")
    run_until_idle(tts_root)
    assert sidecar(first)["timings"]["latents_seconds"] > 0
    assert sidecar(second)["timings"]["latents_seconds"] == 0
    assert sidecar(second)["latents"] == sidecar(first)["latents"]
    shutil.copy(tortoise_clips("tom")[2], tts_root / "inbox" / "tom" / "3.wav")
    third = outbox / "three.txt"
    third.write_text(FAST + "Third text.")
    run_until_idle(tts_root)
    assert sidecar(third)["latents"] != sidecar(second)["latents"]
    fine_tune = tts_root / "voices" / "tom" / "models" / "autoregressive.pth"
    fine_tune.parent.mkdir(parents=True)
    state = torch.load(tiny_models / "autoregressive.pth", weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, fine_tune)
    fourth = outbox / "four.txt"
    fourth.write_text(FAST + "Fourth text.")
    run_until_idle(tts_root)
    meta = sidecar(fourth)
    assert meta["fine_tuned"] is True
    assert meta["models"]["autoregressive.pth"]["sha256"] == sha256(fine_tune)
    assert meta["latents"] != sidecar(third)["latents"]
    assert len(list((tts_root / "voices" / "tom" / "latents").glob("*.pth"))) == 1


def test_edited_texts_and_deleted_wavs_are_rendered_again(tts_root):
    text = tts_root / "outbox" / "tom" / "story.txt"
    text.write_text(FAST + "Version one.")
    assert "rendered story.txt" in run_until_idle(tts_root).stderr
    first = sidecar(text)["text_sha256"]
    assert "rendered story.txt" not in run_until_idle(tts_root).stderr, "rendered needlessly"
    text.write_text(FAST + "Version two, edited.")
    assert "rendered story.txt" in run_until_idle(tts_root).stderr
    assert sidecar(text)["text_sha256"] == sha256(text) != first
    wav = text.with_suffix(".wav")
    wav.unlink()
    assert "rendered story.txt" in run_until_idle(tts_root).stderr
    assert wav.exists()


def test_a_long_text_killed_mid_way_resumes_at_the_next_chunk(tts_root, tmp_path):
    text = tts_root / "outbox" / "tom" / "long.txt"
    text.write_text(LONG_TEXT)
    log = tmp_path / "daemon.log"
    first = DaemonProcess(tts_root, log).start()
    try:
        wait_for(lambda: "rendering long.wav: chunk 2/" in log.read_text(), timeout=300, every=0.05)
    finally:
        first.kill()
    assert not text.with_suffix(".wav").exists()
    finished = log.read_text().count("rendering long.wav: chunk")
    resumed = run_until_idle(tts_root).stderr
    meta = sidecar(text)
    chunks = len(meta["chunks"])
    assert chunks >= 3
    found = re.search(r"rendering long.wav: (\d+) of \d+ chunks were rendered before", resumed)
    reused = int(found.group(1))
    assert finished <= reused < chunks
    assert resumed.count("rendering long.wav: chunk") == chunks - reused
    clean = tmp_path / "clean.wav"
    voicedrop("render", "--root", str(tts_root), "tom", "--file", str(text), "-o", str(clean))
    assert sha256(clean) == sha256(text.with_suffix(".wav"))


def test_a_wrong_checkpoint_waits_with_the_file_named(root, tmp_path, tiny_models):
    models = tmp_path / "weights"
    shutil.copytree(tiny_models, models)
    torch.save({"not": torch.zeros(1)}, models / "clvp2.pth")
    configure(root, {"tts": {"models_dir": str(models)}})
    (root / "inbox" / "tom").mkdir()
    shutil.copy(tortoise_clips("tom")[0], root / "inbox" / "tom" / "1.wav")
    text = root / "outbox" / "tom" / "hi.txt"
    text.parent.mkdir()
    text.write_text(FAST + "Hello.")
    run_until_idle(root)
    message = text.with_suffix(".error.txt").read_text()
    assert "clvp2.pth" in message and "unexpected" in message
    waiting = collect(Root.at(root))["voices"]["tom"]["waiting"]
    renders = [job for job in waiting if job["kind"] == "render"]
    assert [job["file"] for job in renders] == ["hi.txt"] and "clvp2.pth" in renders[0]["reason"]


def test_models_are_released_when_idle(tts_root, tiny_models):
    """The render stage's idle hook, called by the worker whenever no job is runnable."""
    configure(tts_root, {"tts": {"models_dir": str(tiny_models), "idle_unload": 1}})
    root, settings = Root.at(tts_root), load_settings(tts_root / "config.yaml")
    stage = RenderStage(StageContext(root, settings))
    text = tts_root / "outbox" / "tom" / "idle.txt"
    text.write_text(FAST + "Then nothing.")
    ledger = Ledger(root.ledger_file)
    assert Intake(root, settings, ledger).queue_render(text)
    ledger.close()
    Worker(root.ledger_file, settings, [stage]).drain()
    assert text.with_suffix(".json").exists()
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    try:
        stage.on_idle()
        assert stage.renderer.engine is not None, "released although just used"
        time.sleep(1.1)
        stage.on_idle()
    finally:
        logger.remove(sink)
    assert stage.renderer.engine is None
    assert any("releasing the TTS models after 1 s idle" in line for line in lines)


@pytest.mark.parametrize("why", ["import", "stop"])
def test_a_long_render_steps_aside_between_chunks_and_resumes_where_it_stopped(
    tts_root, tiny_models, why
):
    """A clip dropped meanwhile, or SIGTERM (the stop event), stops a long text at the next
    chunk boundary; `status` shows how far it got; the next run reuses the kept chunks."""
    configure(tts_root, {"tts": {"models_dir": str(tiny_models)}})
    root, settings = Root.at(tts_root), load_settings(tts_root / "config.yaml")
    context = StageContext(root, settings)
    text = tts_root / "outbox" / "tom" / "long.txt"
    text.write_text(LONG_TEXT)
    ledger = Ledger(root.ledger_file)
    assert Intake(root, settings, ledger).queue_render(text)
    if why == "import":
        clip = write_wav(tts_root / "inbox" / "tom" / "new.wav", seconds=1.0)
        ledger.enqueue(JobKind.IMPORT, "tom", clip, "new-clip")
    else:
        context.stopping.set()
    worker = Worker(root.ledger_file, settings, [RenderStage(context)])
    worker.run_one(ledger.claim({JobKind.RENDER: 0}), ledger)
    (job,) = ledger.jobs(kind=JobKind.RENDER)
    assert job.state == JobState.PENDING and job.attempts == 0
    assert job.last_error.startswith("paused: ") and "1 of " in job.last_error
    (under_way,) = status(tts_root)["voices"]["tom"]["rendering"]
    assert under_way["chunk"] == 1 and under_way["chunks"] >= 3
    assert status(tts_root)["chunk_cache"]["chunks"] == 1, "the finished chunk is kept"
    if why == "import":
        ledger.finish(ledger.claim({JobKind.IMPORT: 0}).id, ImportData())
    context.stopping.clear()
    time.sleep(YIELD_FOR)  # it let the others go first
    worker.run_one(ledger.claim({JobKind.RENDER: 0}), ledger)
    done = ledger.get(job.id)
    assert done.state == JobState.DONE and done.data.progress is None
    assert len(sidecar(text)["chunks"]) == under_way["chunks"]
    assert status(tts_root)["voices"]["tom"]["rendering"] == []


def test_render_without_o_never_overwrites_and_leaves_no_temp_folder(
    tts_root, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("voicedrop-render-*"))
    for _ in range(2):
        voicedrop("render", "--root", str(tts_root), "tom", FAST + "Twice, please.")
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == ["text-2.wav", "text.wav"]
    assert set(scratch.glob("voicedrop-render-*")) == before


def test_a_read_only_outbox_folder_makes_the_render_wait_and_it_resumes(tts_root):
    """A read-only bind mount (needs root; skipped elsewhere, saying why)."""
    text = tts_root / "outbox" / "tom" / "locked.txt"
    text.write_text(FAST + "Nobody may write here.")
    with mounted("--bind", str(text.parent), str(text.parent)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(text.parent)], check=True)
        log = run_until_idle(tts_root).stderr
        report = status(tts_root)
        locked = [w for w in report["voices"]["tom"]["waiting"] if w["file"] == "locked.txt"]
        assert len(locked) == 1, f"{report}\n{log}"
        (locked,) = locked
        assert f"may not write {text.parent} (Read-only" in locked["reason"]
        assert not text.with_suffix(".wav").exists()
    run_until_idle(tts_root)
    assert text.with_suffix(".wav").exists() and status(tts_root)["failed"] == []


def test_texts_queued_together_take_turns_so_a_short_one_is_not_held_up_by_a_long_one(
    tts_root, tiny_models
):
    configure(tts_root, {"tts": {"models_dir": str(tiny_models)}})
    root, settings = Root.at(tts_root), load_settings(tts_root / "config.yaml")
    long, short = (tts_root / "outbox" / "tom" / name for name in ("long.txt", "short.txt"))
    long.write_text(LONG_TEXT)
    short.write_text(FAST + "Just this.")
    ledger = Ledger(root.ledger_file)
    intake = Intake(root, settings, ledger)
    assert intake.queue_render(long) and intake.queue_render(short)
    worker = Worker(root.ledger_file, settings, [RenderStage(StageContext(root, settings))])
    finished = []
    while ledger.busy():
        job = ledger.claim(worker.priorities)
        if job is None:
            time.sleep(0.05)
            continue
        worker.run_one(job, ledger)
        if ledger.get(job.id).state == JobState.DONE:
            finished.append(job.input_path.name)
    assert finished == ["short.txt", "long.txt"]
    assert len(sidecar(long)["chunks"]) >= 3
