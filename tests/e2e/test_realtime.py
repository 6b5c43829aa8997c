"""OpenAI Realtime over WebSocket with the openai SDK as the client: text and audio turns on the
bundled VAD/STT/TTS models, barge-in, manual commit, tools, bad events, beta dialect, resume."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import openai
import pytest
import websockets

from tests.e2e.conftest import ADMIN_KEY, CozyServer

from .realtime_support import Events, rt_client, send_audio, silence, speech_clip  # noqa: F401

pytestmark = pytest.mark.timeout(90)

TEXT_SESSION = {"type": "realtime", "output_modalities": ["text"]}
VAD = {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 300, "threshold": 0.5}


def heard_question(text: str) -> bool:
    """Whisper tiny.en hears the clip's 'Paris' as 'pairs' now and then: check the rest of it."""
    t = text.lower()
    return "time is it in" in t and ("paris" in t or "pairs" in t)


def user_text(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def test_text_turn(rt_client: openai.AsyncOpenAI) -> None:  # noqa: F811
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        created = (await ev.wait("session.created"))[0]
        assert created.session.type == "realtime"
        await conn.session.update(session=TEXT_SESSION)
        await conn.conversation.item.create(item=user_text("hello realtime"))
        await conn.response.create()
        done = (await ev.wait("response.done"))[0]
        assert done.response.status == "completed"
        text = "".join(e.delta for e in ev.of("response.output_text.delta"))
        assert text == "Echo: hello realtime" == ev.of("response.output_text.done")[0].text
        assert done.response.usage.output_tokens > 0
        order = [e.type for _, e in ev.items]
        assert (
            order.index("response.created")
            < order.index("response.output_item.added")
            < order.index("response.content_part.added")
            < order.index("response.output_text.delta")
            < order.index("response.output_text.done")
            < order.index("response.done")
        )
        await ev.close()


async def test_audio_turn_with_server_vad(rt_client: openai.AsyncOpenAI, speech_clip: bytes) -> None:  # noqa: F811
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": VAD}}})
        await ev.wait("session.updated")
        await send_audio(conn, silence(2000) + speech_clip)
        speech_end = time.perf_counter()
        sender = asyncio.create_task(send_audio(conn, silence(3000)))
        started = (await ev.wait("input_audio_buffer.speech_started"))[0]
        stopped = (await ev.wait("input_audio_buffer.speech_stopped"))[0]
        assert started.item_id == stopped.item_id and stopped.audio_end_ms > started.audio_start_ms
        completed = (await ev.wait("conversation.item.input_audio_transcription.completed"))[0]
        assert completed.item_id == started.item_id
        assert heard_question(completed.transcript), completed.transcript
        await ev.wait("response.output_audio.delta")
        first_audio = ev.times("response.output_audio.delta")[0]
        done = (await ev.wait("response.done"))[0]
        sender.cancel()
        assert done.response.status == "completed"
        transcript = ev.of("response.output_audio_transcript.done")[0].transcript
        assert transcript.startswith("Echo:") and heard_question(transcript)
        assert first_audio - speech_end < 3.0  # generous here; benchmarks/realtime_latency.py measures it
        assert len(ev.of("response.output_audio.delta")) >= 5
        # The committed item holds the utterance (prefix padding included), not the 2 s of silence before.
        await conn.conversation.item.retrieve(item_id=started.item_id)
        retrieved = (await ev.wait("conversation.item.retrieved"))[0]
        item_ms = len(base64.b64decode(retrieved.item.content[0].audio)) / 48
        clip_ms = len(speech_clip) / 48
        assert clip_ms - 300 < item_ms < clip_ms + 1500, (item_ms, clip_ms)
        await ev.close()


async def test_barge_in_cancels_response(rt_client: openai.AsyncOpenAI, speech_clip: bytes) -> None:  # noqa: F811
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": VAD}}})
        await ev.wait("session.updated")
        long_text = " ".join(["This is a long answer that keeps going for quite a while."] * 8)
        await conn.conversation.item.create(item=user_text(long_text))
        await conn.response.create()
        await ev.wait("response.output_audio.delta", 5)
        stop = asyncio.Event()
        sender = asyncio.create_task(send_audio(conn, speech_clip + silence(2000), stop=stop))
        started_at = (await ev.wait("input_audio_buffer.speech_started"))[0] and ev.times(
            "input_audio_buffer.speech_started"
        )[0]
        done = (await ev.wait("response.done"))[0]
        stop.set()
        sender.cancel()
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "turn_detected"
        last_audio = ev.times("response.output_audio.delta")[-1]
        assert last_audio <= started_at + 0.05  # no audio after speech_started (50 ms slack for delivery)
        heard = done.response.output[0].content[0].transcript
        assert len(heard) < len("Echo: " + long_text)  # history keeps only what was heard
        await ev.close()


async def test_manual_commit_and_client_truncate(rt_client: openai.AsyncOpenAI, speech_clip: bytes) -> None:  # noqa: F811
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        await ev.wait("session.updated")
        await send_audio(conn, speech_clip, realtime=False)
        assert not ev.of("input_audio_buffer.speech_started")
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        committed = (await ev.wait("input_audio_buffer.committed"))[0]
        completed = (await ev.wait("conversation.item.input_audio_transcription.completed"))[0]
        assert completed.item_id == committed.item_id and heard_question(completed.transcript)
        done = (await ev.wait("response.done"))[0]
        assert done.response.status == "completed"
        assert heard_question(ev.of("response.output_audio_transcript.done")[0].transcript)
        item_id = done.response.output[0].id
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=100)
        truncated = (await ev.wait("conversation.item.truncated"))[0]
        assert truncated.item_id == item_id and truncated.audio_end_ms == 100
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=10_000_000)
        err = (await ev.wait("error"))[0]
        assert "audio_end_ms" in err.error.message
        await ev.close()


async def test_server_and_client_tools(rt_client: openai.AsyncOpenAI) -> None:  # noqa: F811
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
        await conn.session.update(session={**TEXT_SESSION, "tools": [weather]})
        await conn.conversation.item.create(item=user_text('CALL calculator {"expression": "6*7"}'))
        await conn.response.create()
        first = (await ev.wait("response.done"))[0]
        assert "42" in first.response.output[0].content[0].text  # the server ran its own tool
        await conn.conversation.item.create(item=user_text('CALL get_weather {"city": "Paris"}'))
        await conn.response.create()
        second = (await ev.wait("response.done", 2))[1]
        call = second.response.output[0]
        assert call.type == "function_call" and call.name == "get_weather"
        assert json.loads(call.arguments) == {"city": "Paris"}
        args = "".join(e.delta for e in ev.of("response.function_call_arguments.delta"))
        assert args == call.arguments
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "clear"}'}
        )
        await conn.response.create()
        third = (await ev.wait("response.done", 3))[2]
        assert "sky" in third.response.output[0].content[0].text
        await ev.close()


async def test_bad_events_get_errors_and_connection_stays(cozy_server: CozyServer) -> None:
    url = cozy_server.base_url.replace("http://", "ws://") + "/realtime?model=stub-model"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        cases = [
            ("not json", "invalid_json"),
            (json.dumps({"type": "does.not.exist", "event_id": "e1"}), "invalid_event"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "***", "event_id": "e2"}), "invalid_audio"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA", "event_id": "e3"}), "invalid_audio"),
            (
                json.dumps(
                    {
                        "type": "session.update",
                        "event_id": "e4",
                        "session": {"audio": {"output": {"format": {"type": "audio/wav"}}}},
                    }
                ),
                "invalid_value",
            ),
            (json.dumps({"type": "response.cancel", "event_id": "e5"}), "response_cancel_not_active"),
        ]
        for frame, code in cases:
            await ws.send(frame)
            event = json.loads(await ws.recv())
            assert event["type"] == "error" and event["error"]["code"] == code, event
        await ws.send(b"\x00\x01")
        assert json.loads(await ws.recv())["error"]["code"] == "invalid_event"
        await ws.send(json.dumps({"type": "conversation.item.create", "item": user_text("still here")}))
        assert json.loads(await ws.recv())["type"] == "conversation.item.added"


async def test_beta_dialect_and_auth(cozy_server: CozyServer) -> None:
    url = cozy_server.base_url.replace("http://", "ws://") + "/realtime?model=stub-model"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url):
            pass
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "OpenAI-Beta": "realtime=v1"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        assert json.loads(await ws.recv())["session"]["input_audio_format"] == "pcm16"
        await ws.send(json.dumps({"type": "session.update", "session": {"modalities": ["text"]}}))
        assert json.loads(await ws.recv())["session"]["modalities"] == ["text"]
        await ws.send(json.dumps({"type": "conversation.item.create", "item": user_text("beta")}))
        assert json.loads(await ws.recv())["type"] == "conversation.item.created"
        await ws.send(json.dumps({"type": "response.create"}))
        types = []
        while "response.done" not in types:
            types.append(json.loads(await ws.recv())["type"])
        assert "response.text.delta" in types and "response.output_text.delta" not in types
    # Browsers authenticate with the subprotocol.
    async with websockets.connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{ADMIN_KEY}"]) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(await ws.recv())["type"] == "session.created"


async def test_resume_by_session_id(rt_client: openai.AsyncOpenAI, cozy_server: CozyServer) -> None:  # noqa: F811
    sid = f"rt-{uuid.uuid4().hex[:12]}"
    async with rt_client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": sid}) as conn:
        ev = Events(conn)
        await conn.session.update(session=TEXT_SESSION)
        await conn.conversation.item.create(item=user_text("my name is Ada"))
        await conn.response.create()
        await ev.wait("response.done")
        await ev.close()
    await asyncio.sleep(0.3)
    async with rt_client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": sid}) as conn:
        ev = Events(conn)
        await conn.session.update(session=TEXT_SESSION)
        await conn.conversation.item.create(item=user_text("SYSTEM? what is my name"))
        await conn.response.create()
        await ev.wait("response.done")
        await ev.close()
    prompt = cozy_server.upstream.requests()[-1]["messages"]
    assert [m["content"] for m in prompt[1:3]] == ["my name is Ada", "Echo: my name is Ada"]


async def test_session_duration_limit_ends_with_error_and_clean_close(stub_llm) -> None:
    from tests.e2e.conftest import start_cozy_server
    from tests.support.procs import wait_http_ok

    server = start_cozy_server(stub_llm, {"COZY_MAX_SESSION_S": "1.5"})
    try:
        wait_http_ok(f"{server.root_url}/ready", timeout=60, process=server.process)  # speech models loaded
        url = server.base_url.replace("http://", "ws://") + "/realtime?model=stub-model"
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as ws:
            first = json.loads(await ws.recv())
            assert first["type"] == "session.created", first
            started = time.perf_counter()
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert event["type"] == "error" and event["error"]["code"] == "session_expired"
            with pytest.raises(websockets.ConnectionClosedOK):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1000
            assert 1.0 < time.perf_counter() - started < 4.0
    finally:
        server.stop()


async def test_g711_in_and_out(rt_client: openai.AsyncOpenAI, speech_clip: bytes) -> None:  # noqa: F811
    """μ-law 8 kHz in (as a telephone gateway sends it), A-law 8 kHz out: transcribed and answered."""
    import numpy as np

    from cozy_media.audio.g711 import alaw_decode, ulaw_encode
    from cozy_media.audio.resample import resample

    pcm24 = np.frombuffer(silence(300) + speech_clip + silence(2500), dtype="<i2")
    ulaw = ulaw_encode(resample(pcm24, 24000, 8000).astype(np.int16))
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {"format": {"type": "audio/pcmu"}, "turn_detection": VAD},
                    "output": {"format": {"type": "audio/pcma"}},
                },
            }
        )
        updated = (await ev.wait("session.updated"))[0]
        assert updated.session.audio.input.format.type == "audio/pcmu"
        assert updated.session.audio.output.format.type == "audio/pcma"
        for at in range(0, len(ulaw), 800):  # 100 ms frames of 8 kHz μ-law, at real-time pace
            await conn.input_audio_buffer.append(audio=base64.b64encode(ulaw[at : at + 800]).decode())
            await asyncio.sleep(0.1)
        completed = (await ev.wait("conversation.item.input_audio_transcription.completed"))[0]
        assert heard_question(completed.transcript), completed.transcript
        done = (await ev.wait("response.done"))[0]
        assert done.response.status == "completed"
        alaw = b"".join(base64.b64decode(d.delta) for d in ev.of("response.output_audio.delta"))
        reply = alaw_decode(alaw)
        assert len(reply) > 8000 * 0.5  # at least half a second of 8 kHz speech
        assert np.abs(reply.astype(np.int32)).max() > 1000  # not silence
        await ev.close()
