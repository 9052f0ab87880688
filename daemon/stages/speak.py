"""Speech stage: a request over the network (OpenAI's speech endpoint, Wyoming) becomes audio,
sentence by sentence, handed back through a spool folder while the client listens.

    .voicedrop/speech/<id>/request.json   what was asked (written by the server)
    .voicedrop/speech/<id>/plan.json      how many sentences, at which sample rate
    .voicedrop/speech/<id>/0000.f32 …     each sentence's audio and the pause after it
    .voicedrop/speech/<id>/error.txt      why it was not spoken (the job failed)

The server (daemon/serve/speech.py) writes the request, queues the job, and reads the
sentences as they appear; when its client leaves it removes the folder, and the job stops at
the next sentence. Requests go before file renders and fine-tuning, which yield to them
between chunks and steps: someone is waiting for the answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from loguru import logger

from daemon.book.assembly import join_between, normalise, pause
from daemon.book.chunks import Chunk
from daemon.book.document import Chapter, Document
from daemon.book.encode import Format
from daemon.book.lexicon import Lexicon, LexiconError, lexicon_digest
from daemon.book.timeline import Pauses, Spoken
from daemon.core.config import ConfigError, load_voice_settings
from daemon.core.jobs import Job, JobKind, Outcome, SpeechData
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.core.worker import Blocked, Device, Rejected, Stage, StageContext
from daemon.stages.render import Manuscript, Renderer, shared_renderer
from daemon.tts.redact import check_brackets
from daemon.tts.texts import BadText

FORGET_AFTER = 86400.0  # s: finished requests leave the ledger after a day (they keep no files)
PARAGRAPH_BREAK = "\n\n"


@dataclass(frozen=True)
class SpeechRequest:
    """What a client asked to hear."""

    voice: str
    text: str
    preset: str = "ultra_fast"  # one of daemon.tts.generation.PRESETS
    decoder: str | None = None  # "hifigan" for OpenAI's tts-1; None: the voice's setting
    client: str = ""  # who asked: the server's per-client queue limit counts these


@dataclass(frozen=True)
class Plan:
    chunks: int
    rate: int


class Spool:
    """One request's folder. Every write is a rename into it (never a mkdir), so a folder the
    server removed stays removed: a write then fails with FileNotFoundError, meaning the
    client left."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.request_file = folder / "request.json"
        self.plan_file = folder / "plan.json"
        self.error_file = folder / "error.txt"

    @classmethod
    def create(cls, root: Root, request: SpeechRequest) -> Spool:
        folder = root.speech_spool / os.urandom(8).hex()
        folder.mkdir(parents=True)
        spool = cls(folder)
        spool.write(spool.request_file, json.dumps(asdict(request), ensure_ascii=False).encode())
        return spool

    @property
    def id(self) -> str:
        return self.folder.name

    def chunk_file(self, index: int) -> Path:
        return self.folder / f"{index:04d}.f32"

    def write(self, target: Path, data: bytes) -> None:
        """Temp file and rename, without fsync: a spool does not outlive its daemon."""
        temp = target.with_name(f".{target.name}.tmp")
        temp.write_bytes(data)
        os.replace(temp, target)

    def read_request(self) -> SpeechRequest | None:
        """None when the client has gone (the folder is removed)."""
        try:
            return SpeechRequest(**json.loads(self.request_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def read_plan(self) -> Plan | None:
        try:
            return Plan(**json.loads(self.plan_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def read_chunk(self, index: int) -> np.ndarray | None:
        try:
            return np.fromfile(self.chunk_file(index), dtype="<f4")
        except FileNotFoundError:
            return None

    def read_error(self) -> str | None:
        try:
            return self.error_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def open(self) -> bool:
        return self.request_file.exists()


class ClientLeft(Exception):
    """The spool was removed while the job wrote into it."""


class SpeechStage(Stage):
    """The speech job: one per request. It goes first (after a clip being imported), and
    nothing waits for what it needs: a client is listening, so a missing model or voice is
    an error it hears now, not a job that waits for the user."""

    kind = JobKind.SPEECH
    priority = 0
    device = Device.SHARED

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self.renderer: Renderer = shared_renderer(self.root, self.settings)

    def run(self, job: Job, ledger: Ledger) -> None:
        started = time.monotonic()
        spool = Spool(job.input_path.parent)
        request = spool.read_request()
        if request is None:
            ledger.finish(job.id, SpeechData(outcome=Outcome.ABANDONED))
            return
        try:
            voice = self.root.voice(request.voice)
            manuscript = self.manuscript(voice, request)
            self.renderer.check_ready(voice, manuscript.tts, manuscript.settings.decoder)
            session = self.renderer.open_session(voice, manuscript)
            chunks = self.renderer.plan(voice, manuscript, session.engine)
        except Blocked as exc:  # nobody waits hours for an answer
            raise Rejected(str(exc)) from exc
        rate = session.engine.SAMPLE_RATE
        first: float | None = None
        failed = 0
        audio_seconds = 0.0
        try:
            spool.write(spool.plan_file, json.dumps(asdict(Plan(len(chunks), rate))).encode())
            for index, chunk in enumerate(chunks):
                if not spool.open:
                    raise ClientLeft
                rendered = self.renderer.chunk(session, index, chunk)
                failed += rendered.verdict is not None and not rendered.verdict.passed
                audio = self.spoken(rendered.audio, rate, chunks, index)
                spool.write(spool.chunk_file(index), audio.astype("<f4").tobytes())
                audio_seconds += len(audio) / rate
                first = first if first is not None else time.monotonic() - started
        except (ClientLeft, FileNotFoundError):
            logger.info("speech job {}: the client left; stopped", job.id)
            ledger.finish(job.id, SpeechData(outcome=Outcome.ABANDONED))
            return
        seconds = time.monotonic() - started
        ledger.finish(
            job.id,
            SpeechData(
                Outcome.SPOKEN,
                chunks=len(chunks),
                audio_seconds=round(audio_seconds, 3),
                seconds=round(seconds, 3),
                first_chunk_seconds=None if first is None else round(first, 3),
                failed_checks=None if session.check is None else failed,
            ),
        )
        logger.info(
            "spoke {} sentences in voice {}: {:.1f} s of speech in {:.1f} s (first after {:.1f} s)",
            len(chunks),
            voice.name,
            audio_seconds,
            seconds,
            first or 0.0,
        )

    def manuscript(self, voice: VoicePaths, request: SpeechRequest) -> Manuscript:
        """The request as a one-chapter document, rendered with the voice's settings and
        lexicon and the preset (and decoder) the client's model names."""
        try:
            voice_settings = load_voice_settings(self.settings, voice.config_file)
        except ConfigError as exc:
            raise Blocked(str(exc)) from exc
        tts = voice_settings.tts
        settings = replace(tts, preset=request.preset, decoder=request.decoder or tts.decoder)
        paragraphs = tuple(p.strip() for p in request.text.split(PARAGRAPH_BREAK) if p.strip())
        try:
            for paragraph in paragraphs:
                check_brackets(paragraph)
        except BadText as exc:
            raise Rejected(str(exc)) from exc
        document = Document(title="speech", chapters=(Chapter(None, paragraphs),))
        try:
            lexicon = Lexicon.load(voice)
        except LexiconError as exc:
            raise Blocked(str(exc)) from exc
        return Manuscript(document, settings, tts, Format.WAV, None, lexicon, lexicon_digest(voice))

    def spoken(self, audio: np.ndarray, rate: int, chunks: list[Chunk], index: int) -> np.ndarray:
        """A sentence at the render's loudness, with the pause that follows it in a file
        render (none after the last)."""
        rules = self.settings.render
        out = np.array(audio, dtype=np.float32)
        if rules.loudness_lufs is not None:
            normalise(out, rate, rules.loudness_lufs)
        if index + 1 == len(chunks):
            return out
        pauses = Pauses(rules.pause_sentence, rules.pause_paragraph, rules.pause_chapter)
        silence = pause(join_between(placed(chunks[index]), placed(chunks[index + 1])), pauses)
        return np.concatenate((out, np.zeros(round(silence * rate), np.float32)))

    def give_up(self, job: Job, reason: str) -> None:
        spool = Spool(job.input_path.parent)
        with contextlib.suppress(FileNotFoundError):  # the client has gone: nobody to tell
            spool.write(spool.error_file, f"{reason}\n".encode())

    def on_idle(self) -> None:
        self.renderer.release_if_idle(self.settings.tts.idle_unload)

    def release(self) -> None:
        self.renderer.release()

    @classmethod
    def reconcile(cls, root: Root, ledger: Ledger) -> int:
        """Finished requests are forgotten after a day: they leave no files to account for."""
        ledger.forget(JobKind.SPEECH, finished_before=time.time() - FORGET_AFTER)
        return 0


def placed(chunk: Chunk) -> Spoken:
    """A chunk's place in the document, for the pause rules (its audio does not matter)."""
    return Spoken(chunk.chapter, chunk.paragraph, chunk.sentence, chunk.written, np.zeros(0))


def clear_spool(root: Root) -> None:
    """At start-up: requests of an earlier daemon have no client left to hear them."""
    shutil.rmtree(root.speech_spool, ignore_errors=True)
