"""Preemptive generation over WS /v1/realtime (issue 13 item 4): the reply's model call starts at the
speaker's pause with the words decoded so far, and the turn uses it only if it ends with those
words. Real server, bundled STT/VAD/TTS, piper speech, the openai SDK; the stub LLM records calls."""

from __future__ import annotations

import asyncio

import numpy as np
import openai
import pytest

from tests.e2e.conftest import CozyServer
from tests.support.procs import StubLLMServer

from .realtime_support import Events, rt_client, send_audio, server_speech, silence, speech_clip  # noqa: F401

pytestmark = pytest.mark.timeout(90)

VAD = {"type": "server_vad", "silence_duration_ms": 500, "create_response": True}
USED = ("cozy_preemptive_generations_total", {"outcome": "used"})
DISCARDED = ("cozy_preemptive_generations_total", {"outcome": "discarded"})


def spoken(server: CozyServer, text: str) -> bytes:
    """`text` in the server's piper voice, PCM16 24 kHz, its leading and trailing silence cut."""
    x = np.frombuffer(server_speech(server.base_url, text), dtype="<i2")
    voiced = np.nonzero(np.abs(x.astype(np.int32)) > 300)[0]
    return x[voiced[0] : voiced[-1] + 1].tobytes()


def user_texts(upstream: StubLLMServer) -> list[str]:
    return [r["messages"][-1]["content"] for r in upstream.requests()]


async def one_turn(conn: openai.AsyncOpenAI, audio: bytes) -> tuple[str, str]:
    """(the user's transcript, the spoken reply's transcript) of one voice turn."""
    ev = Events(conn)
    await conn.session.update(  # type: ignore[attr-defined]
        session={"type": "realtime", "audio": {"input": {"turn_detection": VAD}}}
    )
    await ev.wait("session.updated")
    sender = asyncio.create_task(send_audio(conn, silence(1000) + audio + silence(4000)))
    try:
        (done,) = await ev.wait("response.done", timeout=30)
        assert done.response.status == "completed", done
        heard = ev.of("conversation.item.input_audio_transcription.completed")[-1].transcript
        said = ev.of("response.output_audio_transcript.done")[-1].transcript
        return heard, said
    finally:
        sender.cancel()
        await ev.close()


async def test_a_voice_turn_uses_the_model_call_started_at_the_pause(
    rt_client: openai.AsyncOpenAI,  # noqa: F811
    speech_clip: bytes,  # noqa: F811
    cozy_server: CozyServer,
    upstream: StubLLMServer,
) -> None:
    used = cozy_server.metric(USED[0], **USED[1])
    async with rt_client.realtime.connect(model="stub-model") as conn:
        heard, said = await one_turn(conn, speech_clip)
    assert "right now" in heard, heard
    assert said == f"Echo: {heard}"
    calls = user_texts(upstream)  # piper pauses after "Paris": that pause primed a call of its own
    assert calls[-1] == heard and calls.count(heard) == 1, calls  # the turn's, made in the silence window
    assert cozy_server.metric(USED[0], **USED[1]) == used + 1


async def test_a_pause_inside_the_turn_is_not_its_end(
    rt_client: openai.AsyncOpenAI,  # noqa: F811
    cozy_server: CozyServer,
    upstream: StubLLMServer,
) -> None:
    """'What time is it' ... 250 ms ... 'in Paris right now?': the call primed at the pause had only
    the first words; it is dropped and the reply answers the whole question."""
    first, rest = spoken(cozy_server, "What time is it"), spoken(cozy_server, "in Paris right now?")
    before = cozy_server.metric(USED[0], **USED[1]), cozy_server.metric(DISCARDED[0], **DISCARDED[1])
    async with rt_client.realtime.connect(model="stub-model") as conn:
        heard, said = await one_turn(conn, first + silence(250) + rest)
    assert "time" in heard.lower() and "right now" in heard, heard
    assert said == f"Echo: {heard}"  # nothing of the early words' call was spoken
    calls = user_texts(upstream)
    assert calls[-1] == heard and len(calls) >= 2, calls  # the pause's call, then the turn's own
    assert "right now" not in calls[0], calls
    assert cozy_server.metric(DISCARDED[0], **DISCARDED[1]) >= before[1] + 1
