"""OpenAI's speech endpoint with the real `openai` client, against a real server and the
daemon's worker in this process, speaking with the tiny model set (noise, in the right
format)."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
import soundfile as sf

from daemon.core.jobs import JobState, Outcome
from tests.conftest import wait_for
from tests.serve.conftest import API_KEY, speech_jobs

THREE_SENTENCES = (
    "The kettle in the kitchen is on. The front door of the house is open. "
    "The light on the porch is green."
)
SPEAK_FAST = {"candidates": 2, "diffusion_iterations": 4}  # knobs set win over the preset


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture
def speaking(tts_root: Path, tiny_models: Path, serve) -> tuple[Path, str]:
    """A served root whose voice tom speaks with the tiny set, and the server's URL."""
    tts = {"models_dir": str(tiny_models), **SPEAK_FAST}
    return tts_root, serve(worker=True, api_key=API_KEY, sections={"tts": tts})


def test_wav_comes_back_at_24_khz_one_sentence_at_a_time(speaking):
    root, url = speaking
    response = client(url).audio.speech.create(
        model="tts-1-hd", voice="tom", input=THREE_SENTENCES, response_format="wav"
    )
    assert response.response.headers["content-type"] == "audio/wav"
    assert "content-length" not in response.response.headers  # streamed: chunked
    audio, rate = sf.read(io.BytesIO(response.content))
    assert rate == 24000 and audio.ndim == 1
    assert len(audio) > 3 * 0.25 * rate  # three sentences and two pauses
    [job] = speech_jobs(root)
    assert job.state is JobState.DONE and job.data.outcome is Outcome.SPOKEN
    assert job.data.chunks == 3


@pytest.mark.parametrize(
    ("fmt", "container"),
    [("mp3", "MP3"), ("opus", "OGG"), ("flac", "FLAC"), ("aac", None), ("pcm", None)],
)
def test_each_response_format_is_what_it_says(speaking, fmt, container):
    _, url = speaking
    data = (
        client(url)
        .audio.speech.create(
            model="ultra_fast", voice="tom", input="Hello there.", **{"response_format": fmt}
        )
        .content
    )
    if container is not None:
        assert sf.info(io.BytesIO(data)).format == container
    elif fmt == "aac":
        assert data[0] == 0xFF and data[1] & 0xF0 == 0xF0  # an ADTS frame's sync word
    else:
        assert len(data) % 2 == 0 and len(data) > 0.2 * 24000 * 2  # 16-bit samples at 24 kHz


def test_speed_shortens_the_audio_without_changing_its_rate(speaking):
    _, url = speaking
    speech = client(url).audio.speech
    normal = speech.create(model="ultra_fast", voice="tom", input="Hello.", response_format="wav")
    fast = speech.create(
        model="ultra_fast", voice="tom", input="Hello.", response_format="wav", speed=2.0
    )
    normal_audio, rate = sf.read(io.BytesIO(normal.content))
    fast_audio, fast_rate = sf.read(io.BytesIO(fast.content))
    assert rate == fast_rate == 24000
    assert abs(len(fast_audio) / len(normal_audio) - 0.5) < 0.05


def test_the_first_audio_arrives_before_the_text_is_rendered(speaking):
    root, url = speaking
    text = " ".join(f"This is sentence number {n}, spoken aloud." for n in range(6))
    with client(url).audio.speech.with_streaming_response.create(
        model="ultra_fast", voice="tom", input=text, response_format="pcm"
    ) as response:
        chunks = response.iter_bytes()
        next(chunks)
        first_byte = time.time()
        rest = b"".join(chunks)
    assert rest
    [job] = speech_jobs(root)
    assert job.data.chunks == 6
    assert first_byte < job.finished_at  # the client heard sentence 1 while 2-6 rendered


def test_an_unknown_voice_is_a_404_that_lists_the_voices(speaking):
    _, url = speaking
    with pytest.raises(openai.NotFoundError) as caught:
        client(url).audio.speech.create(model="tts-1-hd", voice="nobody", input="Hi.")
    assert "voices: tom" in caught.value.message
    assert caught.value.body["code"] == "voice_not_found"


@pytest.mark.parametrize("voice", ["../tom", "tom/../tom", ".voicedrop", "a\0b"])
def test_a_voice_name_cannot_reach_outside_the_voices(speaking, voice):
    _, url = speaking
    with pytest.raises(openai.BadRequestError) as caught:
        client(url).audio.speech.create(model="tts-1-hd", voice=voice, input="Hi.")
    assert caught.value.body["code"] == "invalid_voice"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"model": "gpt-5"}, "model_not_found"),
        ({"response_format": "ogg"}, "invalid_format"),
        ({"speed": 5}, "invalid_speed"),
        ({"input": "..."}, "empty_input"),
    ],
)
def test_bad_fields_are_400s_that_name_the_field(speaking, fields, code):
    _, url = speaking
    request = {"model": "tts-1-hd", "voice": "tom", "input": "Hi.", **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        client(url).audio.speech.create(**request)
    assert caught.value.body["code"] == code


def test_a_text_past_the_limit_is_413_and_an_oversized_body_too(tts_root, serve):
    url = serve(api_key=API_KEY, max_input_chars=100)
    with pytest.raises(openai.APIStatusError) as caught:
        client(url).audio.speech.create(model="tts-1-hd", voice="tom", input="Words. " * 20)
    assert caught.value.status_code == 413
    assert "serve.max_input_chars" in caught.value.message
    body = json.dumps({"model": "tts-1-hd", "voice": "tom", "input": "x" * 10_000}).encode()
    request = urllib.request.Request(
        f"{url}/v1/audio/speech",
        data=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413


def test_a_missing_model_file_is_a_503_with_the_reason_and_no_job_left_waiting(
    tts_root, tmp_path, serve
):
    tts = {"models_dir": str(tmp_path / "empty"), **SPEAK_FAST}
    url = serve(worker=True, api_key=API_KEY, sections={"tts": tts})
    with pytest.raises(openai.InternalServerError) as caught:
        client(url).audio.speech.create(model="tts-1-hd", voice="tom", input="Hi.")
    assert caught.value.status_code == 503
    assert "voicedrop models fetch" in caught.value.message
    [job] = speech_jobs(tts_root)
    assert job.state is JobState.FAILED


def test_a_client_that_leaves_stops_the_job_and_leaves_no_files(speaking):
    root, url = speaking
    text = " ".join(f"This is sentence number {n}, spoken aloud." for n in range(12))
    with client(url).audio.speech.with_streaming_response.create(
        model="ultra_fast", voice="tom", input=text, response_format="pcm"
    ) as response:
        next(response.iter_bytes())
    # the connection is closed here, after the first sentence
    wait_for(lambda: speech_jobs(root)[0].state is JobState.DONE, timeout=60)
    [job] = speech_jobs(root)
    assert job.data.outcome is Outcome.ABANDONED
    assert not any((root / ".voicedrop" / "speech").iterdir())


def test_more_requests_than_a_client_may_queue_are_429(tts_root, serve):
    url = serve(api_key=API_KEY, max_queued_per_client=1)  # no worker: the first one waits
    waiting = threading.Thread(target=speak_quietly, args=(url,), daemon=True)
    waiting.start()
    wait_for(lambda: any((tts_root / ".voicedrop" / "speech").glob("*/request.json")))
    with pytest.raises(openai.RateLimitError) as caught:
        client(url).audio.speech.create(model="tts-1-hd", voice="tom", input="Hi.")
    assert "serve.max_queued_per_client" in caught.value.message
    waiting.join()
    wait_for(lambda: not any((tts_root / ".voicedrop" / "speech").iterdir()))  # it left: gone


def speak_quietly(url: str) -> None:
    """A request that gives up after 3 s without an answer."""
    with contextlib.suppress(openai.APIError):
        client(url).audio.speech.create(model="tts-1-hd", voice="tom", input="Hi.", timeout=3)
