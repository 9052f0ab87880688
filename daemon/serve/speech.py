"""Speech for network clients (the OpenAI endpoint, Wyoming): a request queued as a `speech`
job in the ledger, its sentences read back from the spool as the worker finishes them.

The server never renders: the one worker does, so a request never runs beside a file
render or a fine-tuning step on the device. What the server does is refuse early what
cannot be spoken (an unknown voice, a text too long, a client with too many requests
queued) and give up on a request the worker cannot start in time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from daemon.core.config import Settings
from daemon.core.jobs import JobKind, JobState
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoiceNameError, check_voice_name
from daemon.serve.refusal import Refused
from daemon.stages.speak import SpeechRequest, Spool
from daemon.tts.generation import PRESETS
from daemon.tts.latents import voice_clips

POLL = 0.02  # s between looks into the spool: a sentence is heard this soon after it is done
LEDGER_POLL = 1.0  # s between looks at the job (waiting for the machine, failed)

__all__ = ["Speaker", "SpeechRefused", "SpeechRequest", "SpokenChunk"]
T = TypeVar("T")


@dataclass(frozen=True)
class SpokenChunk:
    """One sentence and the pause after it."""

    samples: np.ndarray  # float32 mono in [-1, 1]
    rate: int

    def pcm16(self) -> bytes:
        """Signed 16-bit little-endian, what OpenAI's `pcm` and Wyoming carry."""
        clipped = np.clip(self.samples, -1.0, 1.0)
        return (clipped * 32767.0).round().astype("<i2").tobytes()


class SpeechRefused(Refused):
    """The request is not spoken: an HTTP status, a message a user can act on, a short code
    (Wyoming says it in an error event)."""


class Speaker:
    """Queues requests and streams their sentences back; one per daemon, used from any thread
    and any event loop."""

    def __init__(self, root: Root, settings: Settings, wake: Callable[[], None]) -> None:
        self.root = root
        self.settings = settings
        self.wake = wake
        self.lock = threading.Lock()
        self.queued: Counter[str] = Counter()  # requests in flight per client

    def voices(self) -> list[str]:
        """Voices a request can speak with: those with clips (held-back clips do not count)."""
        if not self.root.voices.is_dir():
            return []
        names = []
        for folder in sorted(self.root.voices.iterdir()):
            try:
                check_voice_name(folder.name)
            except VoiceNameError:
                continue
            if folder.is_dir() and voice_clips(self.root.voice(folder.name)):
                names.append(folder.name)
        return names

    async def speak(self, request: SpeechRequest) -> AsyncIterator[SpokenChunk]:
        """Each sentence as the worker finishes it; SpeechRefused before the first one.
        Closing the generator early (the client left) removes the spool: the job stops."""
        await asyncio.to_thread(self.check, request)
        self.admit(request.client)
        spool: Spool | None = None
        try:
            spool, job_id = await asyncio.to_thread(self.queue, request)
            self.wake()
            plan = await self.wait_for(lambda: spool.read_plan(), spool, job_id)
            for index in range(plan.chunks):
                samples = await self.wait_for(lambda i=index: spool.read_chunk(i), spool, job_id)
                yield SpokenChunk(samples, plan.rate)
        finally:
            self.release(request.client)
            if spool is not None:
                spool.remove()

    def check(self, request: SpeechRequest) -> None:
        """What can be refused before anything is queued."""
        try:
            check_voice_name(request.voice)
        except VoiceNameError as exc:
            raise SpeechRefused(400, f"voice {request.voice!r}: {exc}", "invalid_voice") from None
        voices = self.voices()
        if request.voice not in voices:
            known = ", ".join(voices) or "none yet: drop clips into inbox/<voice>/"
            raise SpeechRefused(
                404, f"no voice named {request.voice!r}; voices: {known}", "voice_not_found"
            )
        if request.preset not in PRESETS:
            raise SpeechRefused(
                400,
                f"unknown preset {request.preset!r}: use one of {', '.join(PRESETS)}",
                "invalid_model",
            )
        if not any(character.isalnum() for character in request.text):
            raise SpeechRefused(400, "the input has no words to speak", "empty_input")
        limit = self.settings.serve.max_input_chars
        if len(request.text) > limit:
            raise SpeechRefused(
                413,
                f"the input has {len(request.text)} characters, more than serve.max_input_chars "
                f"({limit}); split it, or drop long texts into outbox/{request.voice}/",
                "input_too_long",
            )

    def admit(self, client: str) -> None:
        limit = self.settings.serve.max_queued_per_client
        with self.lock:
            if self.queued[client] >= limit:
                raise SpeechRefused(
                    429,
                    f"{limit} requests of yours are already queued or speaking "
                    "(serve.max_queued_per_client); wait for one to finish",
                    "rate_limit_exceeded",
                )
            self.queued[client] += 1

    def release(self, client: str) -> None:
        with self.lock:
            self.queued[client] -= 1
            if self.queued[client] <= 0:
                del self.queued[client]

    def queue(self, request: SpeechRequest) -> tuple[Spool, int]:
        spool = Spool.create(self.root, request)
        ledger = Ledger(self.root.ledger_file)
        try:
            # the spool's random name, not the text's hash: asking twice is two requests
            job, _ = ledger.enqueue(JobKind.SPEECH, request.voice, spool.request_file, spool.id)
        finally:
            ledger.close()
        return spool, job.id

    async def wait_for(self, read: Callable[[], T | None], spool: Spool, job_id: int) -> T:
        """What `read` returns once the worker wrote it; SpeechRefused when the job failed,
        waits for the machine, or nothing came within serve.speech_timeout."""
        timeout = self.settings.serve.speech_timeout
        started = next_look = time.monotonic()
        while True:
            found = read()
            if found is not None:
                return found
            now = time.monotonic()
            if now >= next_look:
                await asyncio.to_thread(self.check_job, spool, job_id)
                next_look = now + LEDGER_POLL
            if now - started > timeout:
                raise SpeechRefused(
                    504,
                    f"nothing was spoken within serve.speech_timeout ({timeout:g} s); the "
                    "daemon may be busy with a long job or a slow model",
                    "timeout",
                )
            await asyncio.sleep(POLL)

    def check_job(self, spool: Spool, job_id: int) -> None:
        error = spool.read_error()
        if error is not None:
            raise SpeechRefused(503, error, "not_spoken")
        ledger = Ledger(self.root.ledger_file)
        try:
            job = ledger.get(job_id)
        finally:
            ledger.close()
        if job.state is JobState.WAITING or job.state is JobState.FAILED:
            raise SpeechRefused(503, job.last_error or "the request failed", "not_spoken")
