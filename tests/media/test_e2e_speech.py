"""TTS endpoints against a real server: the openai SDK in every format and streaming, SSE, the
PRD's /v1/audio/tts and /v1/audio/tts/stream, the cache, and bad requests."""

from __future__ import annotations

import base64
import time

import httpx
import openai
import orjson
import pytest

from .conftest import SpeechServer
from .helpers import pcm_seconds, seconds_of, sse_data

TEXT = "Hello there. The weather today is sunny and warm. Would you like to hear more?"
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


@pytest.fixture(scope="module")
def reference_seconds(client: openai.OpenAI) -> float:
    pcm = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="pcm").read()
    assert len(pcm) % 2 == 0
    return pcm_seconds(pcm)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_sdk_every_format(client: openai.OpenAI, reference_seconds: float, fmt: str) -> None:
    response = client.audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts", voice="nova", input=TEXT, response_format=fmt
    )
    assert response.headers["content-type"].startswith(CONTENT_TYPES[fmt])
    data = response.parse().read()
    seconds = pcm_seconds(data) if fmt == "pcm" else seconds_of(data)
    assert seconds == pytest.approx(reference_seconds, rel=0.1), fmt  # piper's pacing varies run to run
    if fmt == "wav":
        assert int.from_bytes(data[40:44], "little") == len(data) - 44  # exact sizes, not a streaming header


def test_sdk_streaming_arrives_in_chunks(client: openai.OpenAI, reference_seconds: float) -> None:
    started = time.perf_counter()
    arrivals: list[float] = []
    data = b""
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="echo", input=TEXT + " Goodbye for now.", response_format="pcm"
    ) as response:
        for chunk in response.iter_bytes():
            arrivals.append(time.perf_counter() - started)
            data += chunk
    assert len(arrivals) >= 2 and arrivals[0] < arrivals[-1]
    assert pcm_seconds(data) > reference_seconds


def test_speed_changes_duration(client: openai.OpenAI, reference_seconds: float) -> None:
    fast = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="pcm", speed=2.0)
    # piper's phonemes get twice as fast; its fixed pauses between sentences do not
    assert 0.35 * reference_seconds < pcm_seconds(fast.read()) < 0.75 * reference_seconds


def test_sse_stream_format(speech_server: SpeechServer) -> None:
    body = {
        "model": "gpt-4o-mini-tts",
        "input": TEXT,
        "voice": "coral",
        "response_format": "mp3",
        "stream_format": "sse",
    }
    r = httpx.post(f"{speech_server.base_url}/audio/speech", json=body, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [orjson.loads(d) for d in sse_data(r.text)]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] > 0
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert seconds_of(audio) > 3.0


def test_prd_tts_and_cache(speech_server: SpeechServer) -> None:
    body = {"text": "Cached sentences come back at once.", "voice": "joe", "format": "wav", "speed": 1.1}
    with httpx.Client(base_url=speech_server.base_url, timeout=60) as http:
        t0 = time.perf_counter()
        first = http.post("/audio/tts", json=body)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = http.post("/audio/tts", json=body)
        warm = time.perf_counter() - t0
        assert first.status_code == second.status_code == 200
        assert first.content == second.content and first.headers["x-audio-format"] == "wav"
        assert warm < cold
        ulaw = http.post("/audio/tts", json={"text": "Telephone audio.", "format": "ulaw"})
        assert ulaw.status_code == 200 and ulaw.headers["content-type"] == "audio/basic"
        assert 0.5 < len(ulaw.content) / 8000 < 3.0  # 8 kHz, one byte per sample


def test_prd_tts_stream_chunks(speech_server: SpeechServer) -> None:
    body = {"text": TEXT, "voice": "alloy", "format": "wav"}
    r = httpx.post(f"{speech_server.base_url}/audio/tts/stream", json=body, timeout=60)
    assert r.status_code == 200
    blocks = [b for b in r.text.split("\n\n") if b.strip()]
    names = [b.splitlines()[0].removeprefix("event: ") for b in blocks]
    assert names == ["audio_chunk"] * 3 + ["done"]
    chunks = [orjson.loads(sse_data(b)[0]) for b in blocks[:-1]]
    assert [c["chunk_id"] for c in chunks] == [0, 1, 2]
    assert chunks[0]["text"] == "Hello there." and chunks[0]["sample_rate"] == 24000
    for c in chunks:
        assert seconds_of(base64.b64decode(c["data"])) == pytest.approx(c["duration_ms"] / 1000, abs=0.05)
    done = orjson.loads(sse_data(blocks[-1])[0])
    assert done["chunks"] == 3


def test_bad_requests(client: openai.OpenAI, speech_server: SpeechServer) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model="tts-1", voice="alloy", input="a" * 4097)
    assert exc.value.code == "VALIDATION_TEXT_TOO_LONG"
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")  # type: ignore[arg-type]
    assert exc.value.code == "VALIDATION_UNKNOWN_VOICE" and exc.value.param == "voice"
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="ogg")  # type: ignore[arg-type]
    assert exc.value.code == "VALIDATION_AUDIO_FORMAT"
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=9.0)
    assert exc.value.param == "speed"
    with httpx.Client(base_url=speech_server.base_url, timeout=30) as http:
        assert http.post("/audio/speech", json={"model": "tts-1", "voice": "alloy"}).json()["error"]["param"] == "input"
        assert http.post("/audio/tts", json={"text": "   "}).status_code == 400
        r = http.post("/audio/tts/stream", json={"text": "Hi.", "voice": "ghost"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_UNKNOWN_VOICE"
        r = http.post("/audio/speech", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_INVALID_JSON"
