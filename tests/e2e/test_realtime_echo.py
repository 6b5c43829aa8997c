"""The echo guard over WS /v1/realtime (openai SDK client, bundled Silero/Whisper/piper): a
speakerphone client whose microphone hears the bot's reply 60 ms later at -10 dB.

The client plays each `response.output_audio.delta` as a speaker would (at real time from its
arrival, back to back) and sends its microphone in 20 ms chunks at real-time pace: the reply it
played 60 ms ago at -10 dB, plus, in one case, the user speaking over it. With echo cancellation
(`?cozy_echo_cancellation=on`) the echo does not interrupt the reply, the user's voice still does;
without it the same echo interrupts (the control that shows the test can fail).
"""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import openai
import pytest

from .realtime_support import Events, rt_client, speech_clip  # noqa: F401

pytestmark = pytest.mark.timeout(120)

RATE = 24000
CHUNK = RATE // 50  # 20 ms microphone chunks
DELAY = int(0.060 * RATE)
GAIN = 10 ** (-10 / 20)
VAD = {"type": "server_vad", "silence_duration_ms": 500, "prefix_padding_ms": 300, "threshold": 0.5}
REPLY = "Here is a fairly long answer about the weather, which stays sunny with a light breeze all day long."


class Speakerphone:
    """Plays the reply as it arrives and feeds it back into the microphone (plus `voice` at `voice_at_s`)."""

    def __init__(self, conn: object, ev: Events, voice: np.ndarray | None = None, voice_at_s: float = 3.0) -> None:
        self.conn, self.ev = conn, ev
        self.voice, self.voice_at = voice, int(voice_at_s * RATE)
        self.played = np.zeros(120 * RATE, dtype=np.float64)  # the speaker's output, from t0
        self.end = 0  # where the next delta starts playing
        self.seen = 0
        self.first_audio: int | None = None

    def _take_deltas(self, now: int) -> None:
        deltas = [(t, e) for t, e in self.ev.items if e.type == "response.output_audio.delta"]
        for t, event in deltas[self.seen :]:
            pcm = np.frombuffer(base64.b64decode(event.delta), dtype="<i2").astype(np.float64)
            start = max(int((t - self.t0) * RATE), self.end)
            self.played[start : start + len(pcm)] = pcm
            self.end = start + len(pcm)
            if self.first_audio is None:
                self.first_audio = start
        self.seen = len(deltas)

    async def run(self, stop: asyncio.Event) -> None:
        self.t0 = time.perf_counter()
        k = 0
        while not stop.is_set() and (k + 1) * CHUNK < len(self.played):
            due = self.t0 + (k + 1) * CHUNK / RATE
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            at = k * CHUNK
            self._take_deltas(at)
            mic = np.zeros(CHUNK, dtype=np.float64)
            if at >= DELAY:
                mic += self.played[at - DELAY : at - DELAY + CHUNK] * GAIN
            if self.voice is not None and self.first_audio is not None:
                v = at - self.first_audio - self.voice_at
                if 0 <= v < len(self.voice):
                    mic[: len(self.voice[v : v + CHUNK])] += self.voice[v : v + CHUNK]
            pcm = np.clip(mic, -32768, 32767).astype("<i2").tobytes()
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
            k += 1


async def _reply_over_speakerphone(
    client: openai.AsyncOpenAI, echo: str, voice: np.ndarray | None = None, interruption: str = "cancel"
) -> tuple[Events, object]:
    query = {"cozy_echo_cancellation": echo, "cozy_interruption": interruption}
    async with client.realtime.connect(model="stub-model", extra_query=query) as conn:
        ev = Events(conn)
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": VAD}}})
        await ev.wait("session.updated")
        phone = Speakerphone(conn, ev, voice)
        stop = asyncio.Event()
        mic = asyncio.create_task(phone.run(stop))
        await asyncio.sleep(1.0)  # a second of (silent) microphone before the reply
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": REPLY}]}
        )
        await conn.response.create()
        done = (await ev.wait("response.done", timeout=60))[0]
        await asyncio.sleep(1.0)  # the echo's tail: still no interruption after the reply ends
        stop.set()
        await mic
        await ev.close()
        return ev, done


async def test_echo_of_the_reply_does_not_interrupt_it(rt_client: openai.AsyncOpenAI) -> None:  # noqa: F811
    ev, done = await _reply_over_speakerphone(rt_client, "on")
    t0 = ev.items[0][0]
    trace = [
        (round(t - t0, 2), e.type) for t, e in ev.items if e.type.startswith(("input_audio_buffer.", "response.d"))
    ]
    assert done.response.status == "completed", "\n".join(map(str, trace))
    assert not ev.of("input_audio_buffer.speech_started")
    assert ev.of("response.output_audio.delta")


async def test_without_echo_cancellation_the_echo_interrupts(rt_client: openai.AsyncOpenAI) -> None:  # noqa: F811
    ev, done = await _reply_over_speakerphone(rt_client, "off")
    assert ev.of("input_audio_buffer.speech_started")
    assert done.response.status == "cancelled"


async def test_real_speech_over_the_reply_still_interrupts(
    rt_client: openai.AsyncOpenAI,  # noqa: F811
    speech_clip: bytes,  # noqa: F811
) -> None:
    voice = np.frombuffer(speech_clip, dtype="<i2").astype(np.float64)
    ev, done = await _reply_over_speakerphone(rt_client, "on", voice)
    assert ev.of("input_audio_buffer.speech_started")
    assert done.response.status == "cancelled"
    assert done.response.status_details.reason == "turn_detected"


async def test_pause_mode_tells_the_echo_by_its_words(rt_client: openai.AsyncOpenAI) -> None:  # noqa: F811
    """Echo cancellation off, pause-then-decide on (the server-playback default): the echo pauses the
    reply once, its transcript is the reply's own words, so it resumes and plays to the end."""
    ev, done = await _reply_over_speakerphone(rt_client, "off", interruption="pause")
    assert ev.of("input_audio_buffer.speech_started")  # the echo was heard
    heard = [
        (e.type, getattr(e, "transcript", getattr(e, "delta", None)), getattr(e, "reason", None))
        for _, e in ev.items
        if e.type.startswith("cozy.") or e.type.endswith(("transcription.completed", "transcription.delta"))
    ]
    assert done.response.status == "completed", "\n".join(map(str, heard))
    resumed = [e for _, e in ev.items if e.type == "cozy.response.resumed"]
    assert resumed and {e.reason for e in resumed} <= {"echo", "noise", "no_words"}, resumed  # type: ignore[attr-defined]
    assert not [e for _, e in ev.items if e.type == "cozy.response.interrupted"]


async def test_pause_mode_real_speech_over_the_echo_still_interrupts(
    rt_client: openai.AsyncOpenAI,  # noqa: F811
    speech_clip: bytes,  # noqa: F811
) -> None:
    voice = np.frombuffer(speech_clip, dtype="<i2").astype(np.float64)
    ev, done = await _reply_over_speakerphone(rt_client, "off", voice, interruption="pause")
    heard = [
        (
            round(t - ev.items[0][0], 2),
            e.type,
            getattr(e, "transcript", getattr(e, "delta", None)),
            getattr(e, "reason", 0),
        )
        for t, e in ev.items
        if e.type.startswith(("cozy.", "input_audio_buffer.speech", "response.done"))
        or e.type.endswith(("transcription.completed", "transcription.delta"))
    ]
    trace = "\n".join(map(str, heard))
    assert done.response.status == "cancelled", trace
    assert [e for _, e in ev.items if e.type == "cozy.response.interrupted"], trace


async def test_a_bad_echo_cancellation_value_is_refused(rt_client: openai.AsyncOpenAI) -> None:  # noqa: F811
    async with rt_client.realtime.connect(model="stub-model", extra_query={"cozy_echo_cancellation": "yes"}) as conn:
        ev = Events(conn)
        err = (await ev.wait("error"))[0]
        assert err.error.param == "cozy_echo_cancellation"
        assert not ev.of("session.created")
        await ev.close()
