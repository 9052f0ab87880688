"""/metrics of a real server, parsed as Prometheus parses it, after real work in a real ledger."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.audio import clips
from daemon.core.files import file_sha256
from daemon.core.jobs import JobKind, Outcome, TrainData, TrainProgress
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.dataset.whisper import shared_whisper
from daemon.quality.speaker import shared_encoder
from daemon.serve import metrics
from daemon.serve.app import FRESH_FOR
from tests.conftest import (
    WHISPER_BASE,
    configure,
    run_until_idle,
    tortoise_clips,
    voiced_signal,
    wait_for,
    write_wav,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of /metrics, by sample name and labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_parse_with_prometheus_and_count_the_ledgers_jobs(root, serve):
    write_wav(root / "inbox" / "eve" / "hello.wav", seconds=2.0)
    run_until_idle(root)  # imported; its transcription waits (no Whisper model in test roots)
    samples = scrape(serve())
    assert value(samples, "voicedrop_jobs", kind="import", state="done") == 1
    assert value(samples, "voicedrop_jobs", kind="transcribe", state="waiting") == 1
    assert value(samples, "voicedrop_jobs", kind="render", state="failed") == 0  # zeros too
    assert value(samples, "voicedrop_oldest_pending_job_age_seconds") == 0
    assert value(samples, "voicedrop_chunk_cache_bytes") == 0
    assert value(samples, "voicedrop_chunk_cache_chunks") == 0
    assert value(samples, "voicedrop_chunk_cache_budget_bytes") == 2 * 1024**3
    assert value(samples, "voicedrop_disk_free_bytes") > 0
    duration = "voicedrop_job_duration_seconds"
    assert value(samples, f"{duration}_gcount", kind="import") == 1
    assert 0 < value(samples, f"{duration}_gsum", kind="import") < 60
    assert value(samples, f"{duration}_bucket", kind="import", le="+Inf") == 1
    assert value(samples, f"{duration}_bucket", kind="import", le="0.1") in (0, 1)
    assert value(samples, f"{duration}_gcount", kind="transcribe") == 0, "waiting: not finished"


def test_a_checked_render_shows_its_real_time_factor_its_check_and_the_model_loads(
    root, tiny_models, serve
):
    """The tiny set's random weights babble, so the render check fails the chunk. The
    daemon's run below does not serve (its config is rewritten after the server started)."""
    url = serve()
    for model in (shared_whisper(), shared_encoder()):  # left loaded by an earlier test
        model.release()
    before = scrape(url)  # the load times are the process's: other tests' loads count too
    configure(
        root,
        {
            "tts": {"models_dir": str(tiny_models)},
            "whisper": {"model": str(WHISPER_BASE), "language": "en"},
            "render": {"check": True, "retries": 0},
        },
    )
    inbox = root / "inbox" / "tom"
    inbox.mkdir(parents=True)
    for clip in tortoise_clips("tom")[:2]:
        (inbox / clip.name).write_bytes(clip.read_bytes())
    text = root / "outbox" / "tom" / "one.txt"
    text.parent.mkdir(parents=True)
    text.write_text("---\ncandidates: 2\ndiffusion_iterations: 4\n---\nHello there.")
    run_until_idle(root)
    sidecar = json.loads(text.with_suffix(".json").read_text(encoding="utf-8"))
    samples = scrape(url)
    rtf = "voicedrop_render_real_time_factor"
    assert value(samples, f"{rtf}_gcount") == 1
    assert value(samples, f"{rtf}_gsum") == pytest.approx(sidecar["real_time_factor"], rel=0.01)
    assert value(samples, "voicedrop_render_checks", voice="tom", result="failed") == 1
    assert value(samples, "voicedrop_render_checks", voice="tom", result="passed") == 0
    duration = "voicedrop_job_duration_seconds"
    assert value(samples, f"{duration}_gcount", kind="render") == 1
    assert value(samples, f"{duration}_gsum", kind="render") >= sidecar["timings"]["total_seconds"]
    assert value(samples, f"{duration}_gcount", kind="import") == 2
    loads = "voicedrop_model_load_seconds"
    for model in ("tortoise", "whisper", "speaker_encoder"):
        grown = value(samples, f"{loads}_count", model=model) - (
            value(before, f"{loads}_count", model=model) or 0
        )
        assert grown >= 1, model
        assert value(samples, f"{loads}_sum", model=model) > 0


def drop_rejects(inbox: Path) -> None:
    """One file for each reason a user meets most, dropped together."""
    write_wav(inbox / "good.wav", seconds=2.0)
    write_wav(inbox / "again.wav", seconds=2.0)  # the same bytes as good.wav
    write_wav(inbox / "blip.wav", seconds=0.2)
    (inbox / "notes.txt").write_text("not audio")
    (inbox / "empty.wav").write_bytes(b"")
    (inbox / "noise.wav").write_bytes(os.urandom(4096))
    os.symlink(inbox / "good.wav", inbox / "link.wav")


def test_rejected_files_count_under_their_reason_until_deleted(root, serve):
    inbox = root / "inbox" / "eve"
    inbox.mkdir(parents=True)
    drop_rejects(inbox)
    run_until_idle(root)
    poison = write_wav(root / "inbox" / "eve" / "poison.wav", seconds=1.5, seed=3)
    ledger = Ledger(Root.at(root).ledger_file)  # as three kill -9s mid-import leave it
    ledger.enqueue(JobKind.IMPORT, "eve", poison, file_sha256(poison))
    ledger.db.execute("UPDATE jobs SET state = 'running', attempts = 3 WHERE state = 'pending'")
    ledger.close()
    run_until_idle(root)
    url = serve()
    rejected = {
        dict(labels)["reason"]: count
        for (name, labels), count in scrape(url).items()
        if name == "voicedrop_rejected_files" and dict(labels)["voice"] == "eve"
    }
    assert rejected == {
        "duplicate": 1,
        "too_short": 1,
        "extension": 1,
        "unreadable": 2,  # empty.wav, noise.wav
        "symlink": 1,
        "crashed": 1,
    }
    (inbox / "rejected" / "notes.txt").unlink()
    (inbox / "rejected" / "notes.txt.reason.txt").unlink()
    wait_for(lambda: rejected_for(url, "extension") is None, timeout=5)  # within FRESH_FOR


def rejected_for(url: str, reason: str) -> float | None:
    return value(scrape(url), "voicedrop_rejected_files", voice="eve", reason=reason)


def test_reason_files_past_the_bound_are_counted_unread(root, serve, monkeypatch):
    inbox = root / "inbox" / "eve"
    inbox.mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt"):
        (inbox / name).write_text("not audio")
    run_until_idle(root)
    monkeypatch.setattr(metrics, "MAX_REASON_FILES", 2)  # 10,000 in use
    samples = scrape(serve())
    assert value(samples, "voicedrop_rejected_files", voice="eve", reason="extension") == 2
    assert value(samples, "voicedrop_rejected_files", voice="eve", reason="unread") == 1


def decoded(samples: np.ndarray, rate: int = 22050) -> clips.Decoded:
    return clips.Decoded(samples.reshape(1, -1).astype(np.float32), rate, 1, "pcm", "wav", 16)


@pytest.mark.parametrize(
    ("audio", "reason"),
    [
        (decoded(np.full(22050, np.nan)), "unreadable"),
        (decoded(np.full(22050, np.inf)), "unreadable"),
        (decoded(voiced_signal(2.0, rate=4000), rate=4000), "low_sample_rate"),
        (decoded(voiced_signal(0.2)), "too_short"),
        (decoded(np.zeros(44100)), "silent"),
    ],
)
def test_each_refusal_of_a_decoded_clip_has_its_own_reason(audio, reason):
    with pytest.raises(clips.BadAudio) as refusal:
        clips.check_usable(audio, min_seconds=1.0, min_sample_rate=8000)
    assert metrics.reject_reason(str(refusal.value)) == reason


def test_a_reason_in_words_no_rejection_uses_counts_as_other():
    assert metrics.reject_reason("moved here by hand") is metrics.RejectReason.OTHER


def progress(step: int, loss: float, eta: float | None) -> TrainProgress:
    return TrainProgress(
        step=step,
        total_steps=400,
        epoch=1.5,
        epochs=4,
        loss_text=loss / 10,
        loss_mel=loss,
        loss_total=loss * 1.1,
        lr=1e-5,
        steps_per_s=2.0,
        batch_size=8,
        micro_batch=2,
        eta_s=eta,
    )


def test_training_shows_the_run_under_way_else_the_last_finished_one(root, serve):
    """Fine-tuning's records as the train stage writes them (progress while it runs, the
    result when done): a real run takes minutes even on the tiny set."""
    ledger = Ledger(Root.at(root).ledger_file)
    done, _ = ledger.enqueue(JobKind.TRAIN, "bob", Path("dataset"), "d1")
    ledger.claim({JobKind.TRAIN: 0})
    losses = {"loss_text": 0.4, "loss_mel": 2.5, "loss_total": 2.9}
    ledger.finish(done.id, TrainData(Outcome.TRAINED, step=800, losses=losses))
    running, _ = ledger.enqueue(JobKind.TRAIN, "eve", Path("dataset"), "d2")
    ledger.claim({JobKind.TRAIN: 0})
    ledger.set_data(running.id, TrainData(progress=progress(120, 3.0, 350.0)))
    fresh, _ = ledger.enqueue(JobKind.TRAIN, "bob", Path("dataset"), "d3")
    ledger.claim({JobKind.TRAIN: 0})  # just started: no progress recorded yet
    ledger.close()
    url = serve()
    samples = scrape(url)
    assert value(samples, "voicedrop_training_in_progress", voice="eve") == 1
    assert value(samples, "voicedrop_training_step", voice="eve") == 120
    assert value(samples, "voicedrop_training_total_steps", voice="eve") == 400
    assert value(samples, "voicedrop_training_loss", voice="eve", loss="mel") == 3.0
    assert value(samples, "voicedrop_training_eta_seconds", voice="eve") == 350
    assert value(samples, "voicedrop_training_in_progress", voice="bob") == 1
    assert value(samples, "voicedrop_training_step", voice="bob") == 0
    assert value(samples, "voicedrop_training_eta_seconds", voice="bob") is None
    ledger = Ledger(Root.at(root).ledger_file)
    ledger.pause(fresh.id, "the training window closed")  # before any progress
    ledger.close()
    time.sleep(FRESH_FOR)  # the scrape of a moment ago is answered again until then
    samples = scrape(url)
    assert value(samples, "voicedrop_training_in_progress", voice="bob") == 0
    assert value(samples, "voicedrop_training_step", voice="bob") == 800
    assert value(samples, "voicedrop_training_loss", voice="bob", loss="total") == 2.9
