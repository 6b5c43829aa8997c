"""No user turn from noise: white and pink noise, a music-like chord progression, breathing,
humming and silence sent over `WS /v1/realtime` with server_vad give no transcript text and no response,
while real speech right after still does (the STT hallucination filter, cozy_media/stt). The same
signals uploaded to `POST /v1/audio/transcriptions` come back as empty text."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import openai
import pytest

from cozy_media.audio.encode import encode_audio
from tests.support import noise

from .realtime_support import Events, rt_client, send_audio, silence, speech_clip  # noqa: F401
from .test_realtime import VAD, heard_question

pytestmark = pytest.mark.timeout(120)

# Silero rejects plain noise, music and breathing at any level; humming along (voiced, no words)
# gets past it, so the STT is asked to transcribe it and must return nothing.
SIGNALS = [
    ("white", 3.0, -25),
    ("pink", 3.0, -20),
    ("chords", 4.0, -15),
    ("breathing", 4.0, -8),
    ("hum", 4.0, -15),  # the one Silero takes for speech (max probability 0.94): the STT must drop it
    ("silence", 2.0, 0),
]


def signal(name: str, seconds: float, level: float, rate: int) -> np.ndarray:
    fn = noise.SIGNALS[name]
    return fn(seconds, rate) if name == "silence" else fn(seconds, rate, level_db=level)


async def test_noise_music_breathing_give_no_user_turn(
    rt_client: openai.AsyncOpenAI,  # noqa: F811
    speech_clip: bytes,  # noqa: F811
) -> None:
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"turn_detection": VAD, "transcription": {"model": "whisper-1"}}},
            }
        )
        await ev.wait("session.updated")
        for name, seconds, level in SIGNALS:
            await send_audio(conn, signal(name, seconds, level, 24000).astype("<i2").tobytes() + silence(800))
        await send_audio(conn, silence(1500))
        noise_turns = len(ev.of("input_audio_buffer.speech_stopped"))
        # Every utterance VAD opened gets its (empty) transcript.
        await ev.wait("conversation.item.input_audio_transcription.completed", noise_turns, 30)
        assert ev.of("conversation.item.input_audio_transcription.failed") == []
        texts = [e.transcript for e in ev.of("conversation.item.input_audio_transcription.completed")]
        deltas = [e.delta for e in ev.of("conversation.item.input_audio_transcription.delta")]
        assert noise_turns >= 1, "VAD heard none of it: the STT filter was not exercised"
        assert all(t == "" for t in texts), texts
        assert deltas == []
        assert ev.of("response.created") == []

        # Real speech still makes a turn and a reply.
        sender = asyncio.create_task(send_audio(conn, speech_clip + silence(3000)))
        completed = await ev.wait("conversation.item.input_audio_transcription.completed", len(texts) + 1, 30)
        if not heard_question(completed[-1].transcript):  # what the server heard, and where
            spans = [
                (e.type.rsplit(".", 1)[-1], getattr(e, "audio_start_ms", None) or getattr(e, "audio_end_ms", None))
                for e in ev.events
                if e.type.startswith("input_audio_buffer.speech_")
            ]
            pytest.fail(
                f"{completed[-1].transcript!r} ({completed[-1].usage}); the clip: {len(speech_clip) / 48:.0f} ms, "
                f"sent after {len(texts)} noise turns; VAD: {spans}; all transcripts: "
                f"{[e.transcript for e in completed]}; errors: {[e.error.message for e in ev.of('error')]}"
            )
        done = (await ev.wait("response.done", 1, 30))[0]
        assert done.response.status == "completed"
        sender.cancel()
        await ev.close()


def test_uploads_of_noise_transcribe_to_nothing(http: httpx.Client) -> None:
    for name, seconds, level in SIGNALS:
        wav = encode_audio(signal(name, seconds, level, 16000), 16000, "wav")
        for fmt in ("json", "verbose_json"):
            r = http.post(
                "/v1/audio/transcriptions",
                files={"file": (f"{name}.wav", wav, "audio/wav")},
                data={"model": "whisper-1", "response_format": fmt},
            )
            assert r.status_code == 200, r.text
            assert r.json()["text"] == "", (name, fmt, r.json())
