"""Turn detection over WS /v1/realtime with the openai SDK: semantic_vad (Smart Turn v3.2 decides
at each pause, the eagerness caps the wait) and server_vad's idle_timeout_ms, on the bundled
models and real synthesized speech (the server's piper voice, espeak-ng)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import openai
import pytest

from cozy_media.audio.resample import resample

from .realtime_support import FRAME, Events, rt_client, silence, speech_clip  # noqa: F401

pytestmark = pytest.mark.timeout(90)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def espeak_pcm24(text: str, tmp: Path) -> bytes:
    """PCM16 24 kHz of `text` spoken by espeak-ng, its trailing silence cut."""
    path = tmp / "clip.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    x = resample(np.frombuffer(raw, dtype="<i2"), rate, 24000)
    voiced = np.nonzero(np.abs(x.astype(np.int32)) > 300)[0]
    return x[: voiced[-1] + 1].astype("<i2").tobytes()


class Mic:
    """Streams PCM16 24 kHz in 100 ms frames at real-time pace, then silence until stopped;
    `sent_ms` is the input audio clock the server's VAD events are on."""

    def __init__(self, conn: object, pcm: bytes) -> None:
        self.conn, self.pcm, self.sent_ms = conn, pcm, 0.0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        at = 0
        while True:
            frame = self.pcm[at : at + FRAME] if at < len(self.pcm) else silence(100)
            at += FRAME
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(frame).decode())  # type: ignore[attr-defined]
            self.sent_ms += len(frame) / 48
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.task.cancel()


async def semantic_session(conn: object, ev: Events, eagerness: str) -> None:
    td = {"type": "semantic_vad", "eagerness": eagerness}
    await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": td}}})  # type: ignore[attr-defined]
    updated = (await ev.wait("session.updated"))[0]
    assert updated.session.audio.input.turn_detection.type == "semantic_vad"
    assert updated.session.audio.input.turn_detection.eagerness == eagerness


async def wait_stopped(ev: Events, mic: Mic) -> tuple[float, float]:
    """(audio_end_ms, how long after it in input audio the stop came)."""
    stopped = (await ev.wait("input_audio_buffer.speech_stopped", timeout=30))[0]
    return stopped.audio_end_ms, mic.sent_ms - stopped.audio_end_ms


async def test_semantic_vad_ends_a_complete_question_well_before_the_maximum(
    rt_client: openai.AsyncOpenAI,  # noqa: F811
    speech_clip: bytes,  # noqa: F811
) -> None:
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await semantic_session(conn, ev, "low")  # the maximum wait is 8 s
        mic = Mic(conn, silence(1000) + speech_clip)
        started = (await ev.wait("input_audio_buffer.speech_started"))[0]
        end_ms, waited_ms = await wait_stopped(ev, mic)
        assert end_ms > started.audio_start_ms
        assert waited_ms < 1500, waited_ms  # the 200 ms pause + Smart Turn (+ a 100 ms frame), not 8 s
        committed = (await ev.wait("input_audio_buffer.committed"))[0]
        assert committed.item_id == started.item_id
        completed = (await ev.wait("conversation.item.input_audio_transcription.completed"))[0]
        assert "paris" in completed.transcript.lower() or "pairs" in completed.transcript.lower()
        done = (await ev.wait("response.done"))[0]
        mic.stop()
        assert done.response.status == "completed"
        assert ev.of("response.output_audio.delta")
        await ev.close()


@needs_espeak
async def test_semantic_vad_waits_for_the_eagerness_maximum_when_cut_off(
    rt_client: openai.AsyncOpenAI,  # noqa: F811
    tmp_path: Path,
) -> None:
    clip = espeak_pcm24("Can you tell me about the,", tmp_path)
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await semantic_session(conn, ev, "high")  # the maximum wait is 2 s
        mic = Mic(conn, silence(1000) + clip)
        await ev.wait("input_audio_buffer.speech_started")
        _, waited_ms = await wait_stopped(ev, mic)
        mic.stop()
        assert 1900 <= waited_ms <= 2600, waited_ms  # Smart Turn said "incomplete": the 2 s cap ended it
        await ev.wait("input_audio_buffer.committed")
        await ev.close()


async def test_semantic_vad_refuses_server_vad_parameters(rt_client: openai.AsyncOpenAI) -> None:  # noqa: F811
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await ev.wait("session.created")
        for param, value in (("threshold", 0.4), ("silence_duration_ms", 300), ("idle_timeout_ms", 5000)):
            td = {"type": "semantic_vad", param: value}
            await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": td}}})
            err = (await ev.wait("error", count=len(ev.of("error")) + 1))[-1]
            assert err.error.param == f"session.audio.input.turn_detection.{param}", err
            assert err.error.code == "unknown_parameter"
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "x"}}},
            }
        )
        err = (await ev.wait("error", count=4))[-1]
        assert err.error.param == "session.audio.input.turn_detection.eagerness"
        assert not ev.of("session.updated")  # nothing was applied
        await ev.close()


async def test_idle_timeout_prompts_a_response(rt_client: openai.AsyncOpenAI) -> None:  # noqa: F811
    td = {"type": "server_vad", "silence_duration_ms": 300, "idle_timeout_ms": 1500}
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": td}}})
        updated = (await ev.wait("session.updated"))[0]
        assert updated.session.audio.input.turn_detection.idle_timeout_ms == 1500
        mic = Mic(conn, b"")  # silence only
        fired = (await ev.wait("input_audio_buffer.timeout_triggered", timeout=10))[0]
        assert fired.audio_start_ms == 0 and 1500 <= fired.audio_end_ms <= 1700, fired
        committed = (await ev.wait("input_audio_buffer.committed"))[0]
        assert committed.item_id == fired.item_id
        order = [e.type for _, e in ev.items]
        assert order.index("input_audio_buffer.timeout_triggered") < order.index("input_audio_buffer.committed")
        created = (await ev.wait("response.created"))[0]
        done = (await ev.wait("response.done"))[0]
        assert done.response.id == created.response.id
        assert not ev.of("input_audio_buffer.speech_started")
        # After the response, the silence is timed again from its end: a second prompt follows.
        second = (await ev.wait("input_audio_buffer.timeout_triggered", count=2, timeout=10))[1]
        mic.stop()
        assert second.audio_start_ms >= fired.audio_end_ms
        assert 1500 <= second.audio_end_ms - second.audio_start_ms <= 1700
        await conn.conversation.item.retrieve(item_id=fired.item_id)
        item = (await ev.wait("conversation.item.retrieved"))[0].item
        assert item.role == "user" and item.content[0].type == "input_audio"
        assert 1400 <= len(base64.b64decode(item.content[0].audio)) / 48 <= 1800  # the silent segment
        await ev.close()


async def test_idle_timeout_waits_while_the_user_speaks_and_the_reply_plays(
    rt_client: openai.AsyncOpenAI,  # noqa: F811
    speech_clip: bytes,  # noqa: F811
) -> None:
    td = {"type": "server_vad", "silence_duration_ms": 300, "idle_timeout_ms": 1500}
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": td}}})
        await ev.wait("session.updated")
        mic = Mic(conn, silence(800) + speech_clip)  # speech starts before the first 1.5 s are over
        stopped = (await ev.wait("input_audio_buffer.speech_stopped"))[0]
        await ev.wait("response.done")
        fired = (await ev.wait("input_audio_buffer.timeout_triggered", timeout=15))[0]
        mic.stop()
        order = [e.type for _, e in ev.items]
        assert order.index("response.done") < order.index("input_audio_buffer.timeout_triggered")
        assert fired.audio_start_ms > stopped.audio_end_ms  # timed from the reply's end, not the session's start
        assert 1500 <= fired.audio_end_ms - fired.audio_start_ms <= 1700
        await ev.wait("response.created", count=2)  # the answer, then the prompt
        await ev.close()
