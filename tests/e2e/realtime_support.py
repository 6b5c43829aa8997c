"""Realtime test helpers: speech clips synthesized once with the bundled voice, an event collector,
and a microphone-paced audio sender."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from cozy_media.audio.encode import encode_audio
from tests.e2e.conftest import ADMIN_KEY, CozyServer
from tests.support.events import Recorder

FRAME = 4800  # 100 ms of PCM16 at 24 kHz


def server_speech(base_url: str, text: str, key: str = ADMIN_KEY, tries: int = 4) -> bytes:
    """PCM16 24 kHz mono of `text`, spoken by the server's bundled piper voice (`base_url`: .../v1).

    Piper samples noise (its durations and pitch differ per call), and now and then a take drops a
    word for Whisper ("What is the weather like in?"). A test of what the server does with a clip
    needs a clip the same model hears whole offline: a take whose offline transcript misses a word
    of `text` is synthesized again (at most `tries` takes; the last one is returned regardless)."""
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm"}
    for _ in range(tries):
        r = httpx.post(f"{base_url}/audio/speech", headers=headers, json=body, timeout=60)
        assert r.status_code == 200, r.text
        wav = encode_audio(np.frombuffer(r.content, dtype="<i2"), 24000, "wav")
        heard = httpx.post(
            f"{base_url}/audio/transcriptions",
            headers=headers,
            data={"model": "whisper-1"},
            files={"file": ("take.wav", wav, "audio/wav")},
            timeout=60,
        )
        assert heard.status_code == 200, heard.text
        if words(text) <= words(heard.json()["text"]):
            break
    return r.content


def words(text: str) -> set[str]:
    """Lower-case words of a transcript, punctuation dropped (Whisper's casing and commas vary)."""
    return {w.strip(".,?!:;\"'").lower() for w in text.split()} - {""}


@pytest.fixture(scope="session")
def speech_clip(cozy_server: CozyServer) -> bytes:
    """PCM16 24 kHz of a spoken question, made by the server's own TTS (bundled piper voice)."""
    return server_speech(cozy_server.base_url, "What time is it in Paris right now?")


@pytest.fixture()
async def rt_client(cozy_server: CozyServer) -> AsyncIterator[openai.AsyncOpenAI]:
    ws = cozy_server.base_url.replace("http://", "ws://")
    async with openai.AsyncOpenAI(
        api_key=ADMIN_KEY, base_url=cozy_server.base_url, websocket_base_url=ws, max_retries=0
    ) as client:
        yield client


class Events(Recorder[Any]):
    """Collects an SDK connection's events in a background task; tests wait for types."""

    def __init__(self, conn: Any) -> None:
        super().__init__()
        self.conn = conn
        self.follow(conn)

    def type_of(self, event: Any) -> str:
        return event.type  # an SDK object, not a dict


async def send_audio(conn: Any, pcm: bytes, *, realtime: bool = True, stop: asyncio.Event | None = None) -> None:
    """Send PCM16 24 kHz in 100 ms frames, at real-time pace like a microphone."""
    for at in range(0, len(pcm), FRAME):
        if stop is not None and stop.is_set():
            return
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[at : at + FRAME]).decode())
        if realtime:
            await asyncio.sleep(0.1)


def silence(ms: int) -> bytes:
    return b"\0\0" * (24 * ms)
