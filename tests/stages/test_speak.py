"""The speech stage in the daemon's worker: a request goes before file renders, its
sentences reach the spool one by one, and a request nobody listens to any more stops."""

from __future__ import annotations

import asyncio

from daemon.core.config import load_settings
from daemon.core.jobs import JobKind, JobState, Outcome
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.core.worker import StageContext, Worker
from daemon.serve.speech import Speaker, SpeechRequest
from daemon.service.intake import Intake
from daemon.stages import build_stages
from daemon.stages.speak import SpeechStage, Spool
from tests.conftest import FAST, configure, wait_for

SPEAK_FAST = {"candidates": 2, "diffusion_iterations": 4}
LONG_TEXT = FAST + " ".join(
    f"This is sentence number {n}, and it carries on for a little while longer." for n in range(8)
)


def heard(speaker: Speaker, request: SpeechRequest) -> list:
    async def listen() -> list:
        return [chunk async for chunk in speaker.speak(request)]

    return asyncio.run(listen())


def test_a_file_render_yields_to_a_speech_request_at_its_next_chunk(tts_root, tiny_models):
    configure(tts_root, {"tts": {"models_dir": str(tiny_models), **SPEAK_FAST}})
    root, settings = Root.at(tts_root), load_settings(tts_root / "config.yaml")
    book = tts_root / "outbox" / "tom" / "book.txt"
    book.write_text(LONG_TEXT)
    ledger = Ledger(root.ledger_file)
    assert Intake(root, settings, ledger).queue_render(book)
    worker = Worker(root.ledger_file, settings, build_stages(StageContext(root, settings)))
    worker.start()
    try:
        [render] = ledger.jobs(kind=JobKind.RENDER)
        wait_for(lambda: ledger.get(render.id).data.progress is not None, timeout=120)
        speaker = Speaker(root, settings, worker.wake.set)
        sentences = heard(speaker, SpeechRequest("tom", "Hello there, this is the kitchen."))
        assert len(sentences) == 1 and sentences[0].rate == 24000
        assert ledger.get(render.id).state is not JobState.DONE  # it stepped aside
        wait_for(lambda: ledger.get(render.id).state is JobState.DONE, timeout=300)
    finally:
        worker.stop()
    [speech] = ledger.jobs(kind=JobKind.SPEECH)
    assert speech.data.outcome is Outcome.SPOKEN
    assert speech.finished_at < ledger.get(render.id).finished_at
    ledger.close()


def test_a_request_whose_client_left_is_abandoned_without_rendering(tts_root, tiny_models):
    configure(tts_root, {"tts": {"models_dir": str(tiny_models), **SPEAK_FAST}})
    root, settings = Root.at(tts_root), load_settings(tts_root / "config.yaml")
    spool = Spool.create(root, SpeechRequest("tom", "Nobody is listening any more."))
    ledger = Ledger(root.ledger_file)
    job, _ = ledger.enqueue(JobKind.SPEECH, "tom", spool.request_file, spool.id)
    spool.remove()
    stage = SpeechStage(StageContext(root, settings))
    stage.run(ledger.claim({JobKind.SPEECH: 0}), ledger)
    done = ledger.get(job.id)
    assert (done.state, done.data.outcome) == (JobState.DONE, Outcome.ABANDONED)
    assert not spool.folder.exists()  # nothing written back into a removed spool
    ledger.close()


def test_finished_requests_are_forgotten_after_a_day(root):
    ledger = Ledger(Root.at(root).ledger_file)
    old, _ = ledger.enqueue(JobKind.SPEECH, "tom", root / "a" / "request.json", "a")
    new, _ = ledger.enqueue(JobKind.SPEECH, "tom", root / "b" / "request.json", "b")
    for job in (old, new):
        ledger.finish(job.id, ledger.get(job.id).data)
    ledger.db.execute("UPDATE jobs SET finished_at = finished_at - 90000 WHERE id = ?", (old.id,))
    ledger.db.commit()
    SpeechStage.reconcile(Root.at(root), ledger)
    assert [job.id for job in ledger.jobs(kind=JobKind.SPEECH)] == [new.id]
    ledger.close()
