"""The Wyoming TTS server for Home Assistant, on serve.wyoming_port.

Home Assistant's Wyoming integration connects, asks `describe` for the voices, and sends
`synthesize` (the whole text) or, in the streaming protocol, `synthesize-start`, text pieces in
`synthesize-chunk` as its language model writes them, and `synthesize-stop`. Each is answered
through the same Speaker as OpenAI's endpoint (daemon/serve/speech.py): a speech job in the
ledger, rendered by the one worker, streamed back sentence by sentence as `audio-start`,
`audio-chunk`s and `audio-stop`.

The protocol has no authentication, so what a client can make the daemon hold is bounded
here: the size of one event, the text one request may carry (serve.max_input_chars), how long
a connection may sit idle, how many connections are open at once, and (in Speaker) how many
requests one address may have queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

from loguru import logger
from sentence_stream import SentenceBoundaryDetector
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from daemon import __version__
from daemon.core.config import ServeSettings, Settings
from daemon.dataset.lists import known_language
from daemon.serve.server import STARTED_WITHIN, bind_listener
from daemon.serve.speech import Speaker, SpeechRefused, SpeechRequest, SpokenChunk
from daemon.tts.generation import SPEECH_MODELS

T = TypeVar("T")
SAMPLES_PER_CHUNK = 1024  # per audio-chunk event, as wyoming-piper sends them
WIDTH, CHANNELS = 2, 1  # signed 16-bit mono
SPEECH_RATE = 24000  # what the speech stage writes (TorToiSe's output rate)
EVENT_OVERHEAD = 4096  # bytes of an event's JSON besides the text it carries
MAX_PAYLOAD = 1 << 20  # bytes of binary payload read from a client (a TTS server needs none)
LINGER_SECONDS = 2.0  # after a malformed event, for the client to read why
IDLE_TIMEOUT = 300.0  # s a connection may wait between events before it is closed
MAX_CONNECTIONS = 32  # open at once; Home Assistant opens one per request
TTS_LANGUAGE = "en"  # TorToiSe's tokenizer is English: a voice without a dataset speaks it
ATTRIBUTION = Attribution(name="TorToiSe-TTS, fine-tuned by voicedrop", url="")


class BadEvent(Exception):
    """What a client sent is not a Wyoming event this server reads."""


class WyomingServer:
    """One listening socket, served by an asyncio loop in a thread of the daemon."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.address = "{}:{}".format(*listener.getsockname()[:2])
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.thread: threading.Thread | None = None

    @classmethod
    def bind(cls, serve: ServeSettings, config_file: Path) -> WyomingServer:
        """ConfigError naming serve.wyoming_port when it cannot listen."""
        assert serve.wyoming_port is not None
        return cls(bind_listener(serve.host, serve.wyoming_port, "serve.wyoming_port", config_file))

    def start(self, speaker: Speaker, settings: Settings) -> None:
        """Returns once the server accepts connections; RuntimeError if it never does."""
        started = threading.Event()
        self.thread = threading.Thread(
            target=self.run, args=(speaker, settings, started), name="wyoming", daemon=True
        )
        self.thread.start()
        if not started.wait(STARTED_WITHIN):
            self.stop()
            raise RuntimeError(f"the Wyoming server on {self.address} did not start")
        logger.info("Wyoming on tcp://{}", self.address)

    def run(self, speaker: Speaker, settings: Settings, started: threading.Event) -> None:
        asyncio.run(self.serve(speaker, settings, started))

    async def serve(self, speaker: Speaker, settings: Settings, started: threading.Event) -> None:
        self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
        connections: set[asyncio.Task] = set()

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handler = VoiceHandler(speaker, settings, reader, writer)
            if len(connections) >= MAX_CONNECTIONS:
                await handler.refuse(f"{MAX_CONNECTIONS} connections are open already", "busy")
                return
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await handler.run()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the client left; closing its stream removed the request's spool
            finally:
                connections.discard(task)

        server = await asyncio.start_server(
            connected, sock=self.listener, limit=max_event_bytes(settings.serve)
        )
        started.set()
        async with server:
            await self.stopping.wait()
            for task in list(connections):  # a request being spoken stops: its spool goes
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

    def stop(self) -> None:
        """Stop accepting and close open connections (their requests stop); idempotent."""
        if self.loop is not None and self.stopping is not None and self.thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self.loop.call_soon_threadsafe(self.stopping.set)
            self.thread.join(timeout=10)
            self.loop = self.stopping = self.thread = None
        self.listener.close()


def max_event_bytes(serve: ServeSettings) -> int:
    """The longest event line or data block read: a text of max_input_chars in UTF-8."""
    return serve.max_input_chars * 4 + EVENT_OVERHEAD


class VoiceHandler(AsyncEventHandler):
    """One client connection: describe, synthesize, and the streaming synthesis events."""

    def __init__(
        self,
        speaker: Speaker,
        settings: Settings,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(reader, writer)
        self.speaker = speaker
        self.settings = settings
        peer = writer.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        self.stream: TextStream | None = None  # between synthesize-start and -stop

    async def run(self) -> None:
        """wyoming's loop, with every read bounded in size and time."""
        try:
            while True:
                try:
                    event = await asyncio.wait_for(self.read(), IDLE_TIMEOUT)
                except TimeoutError:
                    break
                except BadEvent as exc:
                    await self.write_event(Error(text=str(exc), code="bad_event").event())
                    await self.linger()
                    break
                if event is None:
                    break
                if not await self.handle_event(event):
                    await self.linger()
                    break
        finally:
            self.writer.close()

    async def linger(self) -> None:
        """Read on a little after a refusal: closing a socket with unread bytes (events the
        client sent after the one refused) resets the connection, and the client would lose
        the error it was sent."""
        self.writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER_SECONDS):
                left = MAX_PAYLOAD
                while left > 0 and (data := await self.reader.read(min(left, 65536))):
                    left -= len(data)

    async def read(self) -> Event | None:
        """The next event; None when the client closed. Sizes are checked before reading."""
        limit = max_event_bytes(self.settings.serve)
        try:
            line = await self.reader.readline()
        except ValueError:  # asyncio's own limit (the server's `limit`) on one line
            raise BadEvent(f"an event line is longer than {limit} bytes") from None
        if not line:
            return None
        try:
            header = json.loads(line)
            data = header.get("data") or {}
            data_length = header.get("data_length") or 0
            payload_length = header.get("payload_length") or 0
            kind = header["type"]
        except (ValueError, AttributeError, KeyError):
            raise BadEvent("an event must be one JSON object with a type") from None
        if not (isinstance(data_length, int) and 0 <= data_length <= limit):
            raise BadEvent(f"data_length must be 0-{limit} bytes")
        if not (isinstance(payload_length, int) and 0 <= payload_length <= MAX_PAYLOAD):
            raise BadEvent(f"payload_length must be 0-{MAX_PAYLOAD} bytes")
        if data_length:
            try:
                data = {**data, **json.loads(await self.reader.readexactly(data_length))}
            except (ValueError, TypeError):
                raise BadEvent("an event's data must be a JSON object") from None
        payload = await self.reader.readexactly(payload_length) if payload_length else None
        if not isinstance(kind, str) or not isinstance(data, dict):
            raise BadEvent("an event must have a type and its data must be a JSON object")
        return Event(type=kind, data=data, payload=payload)

    async def handle_event(self, event: Event) -> bool:
        """Answer one event; after a refusal the connection closes, as Home Assistant opens
        one per request."""
        try:
            await self.answer(event)
        except (SpeechRefused, BadEvent) as exc:
            code = exc.code if isinstance(exc, SpeechRefused) else "bad_event"
            await self.write_event(Error(text=str(exc), code=code).event())
            return False
        return True

    async def answer(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(self.info().event())
        elif SynthesizeStart.is_type(event.type):
            start = parsed(SynthesizeStart, event)
            self.stream = TextStream(start.voice, self.settings.serve.max_input_chars)
        elif SynthesizeChunk.is_type(event.type) and self.stream is not None:
            for sentence in self.stream.add(text_of(parsed(SynthesizeChunk, event).text)):
                await self.say(sentence, self.stream.voice, cycle=True)
        elif SynthesizeStop.is_type(event.type) and self.stream is not None:
            stream, self.stream = self.stream, None
            rest = stream.finish()
            if rest:
                await self.say(rest, stream.voice, cycle=True)
            await self.write_event(SynthesizeStopped().event())
        elif Synthesize.is_type(event.type) and self.stream is None:
            # during a stream the client sends the whole text again, for older servers
            synthesize = parsed(Synthesize, event)
            await self.say(text_of(synthesize.text), synthesize.voice, cycle=False)

    def info(self) -> Info:
        voices = [
            TtsVoice(
                name=name,
                description=f"{name} (voicedrop)",
                attribution=ATTRIBUTION,
                installed=True,
                version=None,
                languages=[self.language(name)],
            )
            for name in self.speaker.voices()
        ]
        program = TtsProgram(
            name="voicedrop",
            description="Voices cloned from your clips with TorToiSe-TTS",
            attribution=ATTRIBUTION,
            installed=True,
            version=__version__,
            voices=voices,
            supports_synthesize_streaming=True,
        )
        return Info(tts=[program])

    def language(self, voice: str) -> str:
        """The voice's dataset language (whisper.language, else the one detected)."""
        return known_language(self.speaker.root.voice(voice), self.settings) or TTS_LANGUAGE

    def request(self, text: str, voice: SynthesizeVoice | None) -> SpeechRequest:
        preset, decoder = SPEECH_MODELS[self.settings.serve.wyoming_model]
        return SpeechRequest(self.choose_voice(voice), text, preset, decoder, self.client)

    def choose_voice(self, wanted: SynthesizeVoice | None) -> str:
        """The voice named, else the first of the language asked for, else the first."""
        if wanted is not None and wanted.name is not None:
            return text_of(wanted.name, "the voice's name")
        voices = self.speaker.voices()
        if wanted is not None and isinstance(wanted.language, str):
            language = wanted.language.split("-")[0].split("_")[0].lower()
            voices = [name for name in voices if self.language(name) == language] or voices
        if not voices:
            raise SpeechRefused(404, "no voices yet: drop clips into inbox/<voice>/", "no_voices")
        return voices[0]

    async def say(self, text: str, voice: SynthesizeVoice | None, cycle: bool) -> None:
        """One request, as audio-start, its sentences in audio-chunks, audio-stop. A stream
        (`cycle`) answers each sentence so; a text nothing in it can be said gets no audio
        in a stream and an empty answer otherwise, as Home Assistant expects one."""
        try:
            request = self.request(text, voice)
            async with contextlib.aclosing(self.speaker.speak(request)) as sentences:
                await self.stream_audio(sentences)
        except SpeechRefused as exc:
            if exc.code != "empty_input":
                raise
            if not cycle:
                await self.write_event(AudioStart(SPEECH_RATE, WIDTH, CHANNELS).event())
                await self.write_event(AudioStop().event())

    async def stream_audio(self, sentences: AsyncIterator[SpokenChunk]) -> None:
        started = False
        async for chunk in sentences:
            if not started:
                await self.write_event(AudioStart(chunk.rate, WIDTH, CHANNELS).event())
                started = True
            for piece in audio_pieces(chunk):
                await self.write_event(piece.event())
        if started:
            await self.write_event(AudioStop().event())

    async def refuse(self, text: str, code: str) -> None:
        with contextlib.suppress(ConnectionError):
            await self.write_event(Error(text=text, code=code).event())
        self.writer.close()


class TextStream:
    """The text of a streaming request as it arrives, given out a sentence at a time; what
    waits for its sentence's end is bounded by serve.max_input_chars."""

    def __init__(self, voice: SynthesizeVoice | None, limit: int) -> None:
        self.voice = voice
        self.limit = limit
        self.sentences = SentenceBoundaryDetector()

    def add(self, text: str) -> list[str]:
        found = list(self.sentences.add_chunk(text))
        waiting = len(self.sentences.remaining_text) + len(self.sentences.current_sentence)
        if waiting > self.limit:
            raise SpeechRefused(
                413,
                f"{waiting} characters arrived without a sentence ending, more than "
                f"serve.max_input_chars ({self.limit})",
                "input_too_long",
            )
        return found

    def finish(self) -> str:
        return self.sentences.finish()


def audio_pieces(chunk: SpokenChunk) -> list[AudioChunk]:
    pcm = chunk.pcm16()
    size = SAMPLES_PER_CHUNK * WIDTH * CHANNELS
    return [
        AudioChunk(rate=chunk.rate, width=WIDTH, channels=CHANNELS, audio=pcm[i : i + size])
        for i in range(0, len(pcm), size)
    ]


def parsed(kind: type[T], event: Event) -> T:
    """wyoming's typed event; one whose data lacks a field or has the wrong kind is refused."""
    try:
        return kind.from_event(event)  # type: ignore[attr-defined]
    except (KeyError, TypeError, AttributeError, ValueError):
        raise BadEvent(f"a {event.type} event without the data it needs") from None


def text_of(value: object, what: str = "the text") -> str:
    if not isinstance(value, str):
        raise BadEvent(f"{what} must be a string")
    return value
