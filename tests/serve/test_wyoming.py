"""The Wyoming server with the `wyoming` package's own client over TCP on 127.0.0.1, the
daemon's worker beside it, speaking with the tiny model set (noise, in the right format)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from daemon.core.config import ConfigError, load_settings
from daemon.core.jobs import JobState, Outcome
from daemon.serve import wyoming as wyoming_module
from daemon.serve.servers import Servers
from daemon.serve.wyoming import MAX_CONNECTIONS
from tests.conftest import configure, wait_for, write_wav
from tests.serve.conftest import free_port, speech_jobs

SPEAK_FAST = {"candidates": 2, "diffusion_iterations": 4}
SENTENCES = (
    "The kettle in the kitchen is on.",
    "The front door of the house is open.",
    "The light on the porch is green.",
)
THREE_SENTENCES = " ".join(SENTENCES)


def ask(address: tuple[str, int], *events: Event, until: str = "audio-stop") -> list[Event]:
    """Send `events` on one connection and read the answer up to an event of type `until`,
    an error, or the server closing the connection."""

    async def talk() -> list[Event]:
        async with AsyncTcpClient(*address, connect_timeout=10, read_timeout=120) as client:
            for event in events:
                await client.write_event(event)
            answer = []
            while (event := await client.read_event()) is not None:
                answer.append(event)
                if event.type in (until, "error"):
                    break
            return answer

    return asyncio.run(talk())


def pcm_of(events: list[Event]) -> np.ndarray:
    audio = b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type))
    return np.frombuffer(audio, dtype="<i2")


@pytest.fixture
def speaking(tts_root: Path, tiny_models: Path, wyoming) -> tuple[Path, tuple[str, int]]:
    """A root whose voice tom speaks with the tiny set, and its Wyoming server's address."""
    return tts_root, wyoming(sections={"tts": {"models_dir": str(tiny_models), **SPEAK_FAST}})


def test_describe_lists_each_voice_with_its_datasets_language(root, wyoming):
    for voice in ("eve", "tom"):
        clips = root / "voices" / voice / "clips"
        clips.mkdir(parents=True)
        write_wav(clips / "a.wav", seconds=2.0)
    (root / "voices" / "eve" / "dataset").mkdir()
    (root / "voices" / "eve" / "dataset" / "language.json").write_text('{"language": "de"}')
    (root / "voices" / "empty").mkdir()  # no clips: nothing to speak with
    [event] = ask(wyoming(), Describe().event(), until="info")
    [program] = Info.from_event(event).tts
    assert program.name == "voicedrop" and program.installed
    assert program.supports_synthesize_streaming
    assert [(voice.name, voice.languages) for voice in program.voices] == [
        ("eve", ["de"]),
        ("tom", ["en"]),  # not transcribed yet: TorToiSe speaks English
    ]


def test_synthesize_streams_one_answer_of_24_khz_pcm(speaking):
    root, address = speaking
    voice = SynthesizeVoice(name="tom")
    answer = ask(address, Synthesize(THREE_SENTENCES, voice=voice).event())
    types = [event.type for event in answer]
    assert types[0] == "audio-start" and types[-1] == "audio-stop"
    assert set(types[1:-1]) == {"audio-chunk"}
    start = AudioStart.from_event(answer[0])
    assert (start.rate, start.width, start.channels) == (24000, 2, 1)
    samples = pcm_of(answer)
    assert len(samples) > 3 * 0.25 * 24000  # three sentences and their pauses
    assert np.abs(samples).max() > 0
    [job] = speech_jobs(root)
    assert job.state is JobState.DONE and job.data.chunks == 3


def test_streaming_synthesis_answers_each_sentence_as_its_text_arrives(speaking):
    """Home Assistant sends the text in pieces as its language model writes it, and the whole
    text once more in a `synthesize` for servers that do not stream: that one is not spoken."""
    root, address = speaking
    voice = SynthesizeVoice(name="tom")
    pieces = [
        "The kettle in the ",
        "kitchen is on. The front do",
        "or of the house is open. The light",
        " on the porch is green.",
    ]
    answer = ask(
        address,
        SynthesizeStart(voice=voice).event(),
        *(SynthesizeChunk(piece).event() for piece in pieces),
        Synthesize("".join(pieces), voice=voice).event(),
        SynthesizeStop().event(),
        until="synthesize-stopped",
    )
    types = [event.type for event in answer]
    assert types[-1] == "synthesize-stopped"
    assert types.count("audio-start") == types.count("audio-stop") == 3  # one per sentence
    jobs = speech_jobs(root)  # one a sentence; the whole text sent again is not one
    assert [(job.state, job.data.chunks) for job in jobs] == [(JobState.DONE, 1)] * 3


def test_a_voice_is_chosen_by_language_when_none_is_named(speaking):
    root, address = speaking
    answer = ask(address, Synthesize("Hello.", voice=SynthesizeVoice(language="en_US")).event())
    assert answer[-1].type == "audio-stop"
    assert [job.voice for job in speech_jobs(root)] == ["tom"]


def test_an_unknown_voice_is_an_error_event_naming_the_voices(speaking):
    root, address = speaking
    [event] = ask(address, Synthesize("Hello.", voice=SynthesizeVoice(name="nobody")).event())
    error = Error.from_event(event)
    assert error.code == "voice_not_found"
    assert "'nobody'" in error.text and "tom" in error.text
    assert speech_jobs(root) == []


def test_a_voice_name_that_escapes_the_root_is_refused(speaking):
    root, address = speaking
    [event] = ask(address, Synthesize("Hi.", voice=SynthesizeVoice(name="../tom")).event())
    assert Error.from_event(event).code == "invalid_voice"
    assert speech_jobs(root) == []


def test_a_text_with_nothing_to_say_is_an_empty_answer(speaking):
    root, address = speaking
    answer = ask(address, Synthesize("...", voice=SynthesizeVoice(name="tom")).event())
    assert [event.type for event in answer] == ["audio-start", "audio-stop"]
    assert speech_jobs(root) == []


def test_a_text_over_max_input_chars_is_refused_before_it_is_queued(tts_root, wyoming):
    address = wyoming(max_input_chars=100)
    text = "word " * 30
    [event] = ask(address, Synthesize(text, voice=SynthesizeVoice(name="tom")).event())
    error = Error.from_event(event)
    assert error.code == "input_too_long" and "serve.max_input_chars" in error.text
    assert speech_jobs(tts_root) == []


def test_a_stream_that_never_ends_a_sentence_is_stopped_at_max_input_chars(tts_root, wyoming):
    address = wyoming(max_input_chars=100)
    answer = ask(
        address,
        SynthesizeStart(voice=SynthesizeVoice(name="tom")).event(),
        *(SynthesizeChunk("and more words ").event() for _ in range(10)),
        until="synthesize-stopped",
    )
    assert Error.from_event(answer[-1]).code == "input_too_long"
    assert speech_jobs(tts_root) == []


def raw_exchange(address: tuple[str, int], data: bytes) -> list[dict]:
    """Bytes a hostile client writes as they are, and the events that come back until the
    server closes the connection: each one's type and text."""
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(data)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    events = []
    while received:
        line, _, received = received.partition(b"\n")
        header = json.loads(line)
        data = json.loads(received[: header.get("data_length", 0)] or b"{}")
        received = received[header.get("data_length", 0) + header.get("payload_length", 0) :]
        events.append({"type": header["type"], "text": data.get("text")})
    return events


def test_an_event_line_beyond_the_limit_is_refused_without_reading_on(tts_root, wyoming):
    address = wyoming(max_input_chars=100)
    [error] = raw_exchange(address, b'{"type": "synthesize", "data": {"text": "' + b"a" * 10**6)
    assert error == {"type": "error", "text": "an event line is longer than 4496 bytes"}


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b'{"type": "synthesize", "payload_length": 100000000000}\n', "payload_length"),
        (b'{"type": "synthesize", "data_length": 100000000}\n', "data_length"),
        (b"not json\n", "JSON object"),
        (b'["synthesize"]\n', "JSON object"),
        (b'{"type": "synthesize", "data": {"text": 5}}\n', "string"),
        (b'{"type": "synthesize", "data": {}}\n', "synthesize"),
    ],
)
def test_a_malformed_event_is_an_error_and_the_connection_closes(tts_root, wyoming, line, says):
    started = time.monotonic()
    [error] = raw_exchange(wyoming(), line)
    assert time.monotonic() - started < 20  # nothing waits for the 100 GB announced
    assert error["type"] == "error" and says in error["text"]
    assert speech_jobs(tts_root) == []


def test_a_client_that_leaves_mid_answer_stops_its_job(speaking):
    root, address = speaking
    long_text = " ".join(f"Sentence number {n} is here." for n in range(1, 13))

    async def leave_after_first_audio() -> None:
        client = AsyncTcpClient(*address, connect_timeout=10, read_timeout=120)
        await client.connect()
        await client.write_event(Synthesize(long_text, voice=SynthesizeVoice(name="tom")).event())
        while (event := await client.read_event()) is not None:
            if AudioChunk.is_type(event.type):
                break
        await client.disconnect()

    asyncio.run(leave_after_first_audio())
    wait_for(lambda: speech_jobs(root)[0].state is JobState.DONE, timeout=120)
    [job] = speech_jobs(root)
    assert job.data.outcome is Outcome.ABANDONED
    assert not any((root / ".voicedrop" / "speech").iterdir())


def test_a_wyoming_port_in_use_is_one_line_naming_the_setting(root):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http = free_port()
        configure(root, {"serve": {"enabled": True, "port": http, "wyoming_port": port}})
        settings = load_settings(root / "config.yaml")
        with pytest.raises(ConfigError, match=r"serve\.wyoming_port: .* already in use"):
            Servers.bind(settings, root / "config.yaml")
    with socket.socket() as again:  # the HTTP port bound first was let go
        again.bind(("127.0.0.1", http))


def test_connections_past_the_limit_are_refused_and_idle_ones_closed(root, wyoming, monkeypatch):
    monkeypatch.setattr(wyoming_module, "IDLE_TIMEOUT", 3.0)
    address = wyoming()
    idle = [socket.create_connection(address, timeout=30) for _ in range(MAX_CONNECTIONS)]
    try:
        wait_for(lambda: len(raw_exchange(address, b"")) == 1, timeout=10)
        [refused] = raw_exchange(address, b"")
        assert refused["type"] == "error" and "32 connections" in refused["text"]
        started = time.monotonic()
        assert idle[0].recv(1) == b""  # closed by the server once idle
        assert 2 < time.monotonic() - started < 20
    finally:
        for connection in idle:
            connection.close()
    [event] = ask(address, Describe().event(), until="info")  # room again
    assert Info.is_type(event.type)


def test_a_second_request_of_the_same_client_past_its_limit_is_refused(
    tts_root, tiny_models, wyoming
):
    root, tts = tts_root, {"models_dir": str(tiny_models), **SPEAK_FAST}
    address = wyoming(max_queued_per_client=1, sections={"tts": tts})
    long_text = " ".join(f"Sentence number {n} is here." for n in range(1, 13))
    voice = SynthesizeVoice(name="tom")

    async def two_at_once() -> Error:
        async with AsyncTcpClient(*address, connect_timeout=10, read_timeout=120) as first:
            await first.write_event(Synthesize(long_text, voice=voice).event())
            wait_for(lambda: speech_jobs(root), timeout=30)
            async with AsyncTcpClient(*address, connect_timeout=10, read_timeout=120) as second:
                await second.write_event(Synthesize("Hello.", voice=voice).event())
                event = await second.read_event()
        assert event is not None
        return Error.from_event(event)

    error = asyncio.run(two_at_once())
    assert error.code == "rate_limit_exceeded" and "serve.max_queued_per_client" in error.text
