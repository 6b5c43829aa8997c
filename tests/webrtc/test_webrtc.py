"""WebRTC calls end to end: an aiortc client posts an SDP offer to `POST /v1/rtc/webrtc/offer` of a
real `cozy serve`, speaks (the server's own TTS, paced like a microphone) and hears the reply over
the audio track; barge-in, hang-up, limits and auth, with nothing mocked."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np

from tests.e2e.conftest import ADMIN_KEY, CozyServer, start_cozy_server
from tests.support.procs import StubLLMServer, wait_http_ok
from tests.webrtc.conftest import CONCURRENCY
from tests.webrtc.rtc_client import Call

AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}


def live_calls(server: CozyServer) -> float:
    return server.metric("cozy_live_actors", kind="realtime")


async def wait_no_calls(server: CozyServer, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while live_calls(server) > 0:
        assert time.monotonic() < deadline, "the call's session is still alive"
        await asyncio.sleep(0.1)


async def connect(server: CozyServer, **query: str) -> Call:
    call = Call(server.root_url, ADMIN_KEY, **query)
    response = await call.offer()
    assert response.status_code == 200 and response.json()["type"] == "answer", response.text
    await call.connected()
    return call


async def test_spoken_turn_gets_reply_audio(rtc_server: CozyServer, question: np.ndarray) -> None:
    call = await connect(rtc_server, cozy_personality_id="voice-concierge")
    try:
        await asyncio.sleep(0.5)  # a moment of room tone first, like a real caller
        call.mic.say(question)
        await call.mic.done.wait()
        end = call.mic.speech_ended_at
        assert end is not None
        first = await call.speaker.wait_loud(end, timeout=20)
        last = await call.speaker.wait_quiet(first, quiet_s=1.0, timeout=30)
        print(f"\nWebRTC end of speech -> first reply audio: {(first - end) * 1000:.0f} ms; reply {last - first:.2f} s")
        assert last - first > 1.0  # "Echo: <the question>", spoken
        logs = call.logs()
        assert "pause_detected" in logs and "response_starting" in logs
        said = [m["transcript"] for m in logs if isinstance(m, dict) and m.get("role") == "user"]
        assert said and "what time is it" in said[0].lower()  # (Whisper tiny.en sometimes hears "pairs")
        replies = [m["transcript"] for m in logs if isinstance(m, dict) and m.get("role") == "assistant"]
        assert replies and replies[0].startswith("Echo:")
        assert not call.logs("error")
    finally:
        await call.close()
    await wait_no_calls(rtc_server)  # hang-up ends the session
    async with httpx.AsyncClient(base_url=rtc_server.base_url, headers=AUTH, timeout=10) as http:
        sessions = (await http.get("/chat/sessions", params={"limit": 50})).json()["data"]
        ours = [s for s in sessions if s["personality_id"] == "voice-concierge" and s["id"].startswith("call_")]
        assert ours, sessions
        messages = (await http.get(f"/chat/sessions/{ours[0]['id']}/messages")).json()["data"]
        assert [m["role"] for m in messages][:2] == ["user", "assistant"]  # the call's turns are kept


async def test_barge_in_stops_reply_audio(rtc_server: CozyServer, question: np.ndarray) -> None:
    call = await connect(rtc_server)
    try:
        await asyncio.sleep(0.3)
        call.mic.say(question)
        await call.mic.done.wait()
        first = await call.speaker.wait_loud(call.mic.speech_ended_at or 0, timeout=20)
        await asyncio.sleep(0.6)  # into the reply (about 2.5 s long)
        call.mic.say(question)  # the caller talks over it
        await call.mic.done.wait()
        onset, end = call.mic.speech_started_at, call.mic.speech_ended_at
        assert onset is not None and end is not None
        during = [t for t in call.speaker.loud(first) if onset <= t <= end]
        stopped = (during[-1] - onset) if during else 0.0
        print(f"\nWebRTC barge-in: interrupting speech onset -> reply audio stops: {stopped * 1000:.0f} ms")
        assert stopped < 0.8, "the reply kept playing over the caller"
        assert end - onset > 1.5  # so a quiet stretch of over 0.7 s was really observed
        await call.speaker.wait_loud(end, timeout=20)  # and the new question gets its own answer
        assert call.logs().count("started_talking") >= 2
    finally:
        await call.close()
    await wait_no_calls(rtc_server)


async def test_offer_needs_a_key_and_valid_input(rtc_server: CozyServer) -> None:
    call = Call(rtc_server.root_url, None)
    response = await call.offer()
    assert response.status_code == 401 and response.json()["error"]["code"] == "AUTH_MISSING_TOKEN"
    await call.close()
    call = Call(rtc_server.root_url, ADMIN_KEY, cozy_personality_id="nobody")
    response = await call.offer()
    assert response.status_code == 404, response.text
    await call.close()
    async with httpx.AsyncClient(base_url=rtc_server.root_url, headers=AUTH, timeout=30) as http:
        url = "/v1/rtc/webrtc/offer"
        r = await http.post(url, json={"type": "offer", "webrtc_id": "x1", "sdp": "not sdp"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "sdp", r.text
        r = await http.post(url, json={"type": "answer", "webrtc_id": "x2", "sdp": "v=0"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "type"
        r = await http.post(url, json={"type": "ice-candidate", "webrtc_id": "x3", "candidate": {"candidate": ""}})
        assert r.json() == {"status": "failed", "meta": {"error": "unknown_connection"}}
        doc = (await http.get("/openapi.json")).json()
        assert "post" in doc["paths"][url]
    await wait_no_calls(rtc_server)  # refused offers leave no session behind


async def test_concurrency_limit(rtc_server: CozyServer) -> None:
    await wait_no_calls(rtc_server)  # calls of earlier tests are gone
    calls = [await connect(rtc_server) for _ in range(CONCURRENCY)]
    try:
        extra = Call(rtc_server.root_url, ADMIN_KEY)
        response = await extra.offer()
        await extra.close()
        assert response.json() == {"status": "failed", "meta": {"error": "concurrency_limit_reached", "limit": 3}}
    finally:
        for call in calls:
            await call.close()
    await wait_no_calls(rtc_server)
    again = await connect(rtc_server)  # slots come back when calls hang up
    await again.close()
    await wait_no_calls(rtc_server)


async def test_session_end_closes_the_call(stub_llm: StubLLMServer) -> None:
    server = start_cozy_server(stub_llm, {"COZY_MAX_SESSION_S": "2", "COZY_WEBRTC_PRELOAD": "true"})
    try:
        wait_http_ok(f"{server.root_url}/ready", timeout=90, process=server.process)
        call = await connect(server)
        started = time.monotonic()
        closed = asyncio.Event()
        call.pc.on("connectionstatechange", lambda: call.pc.connectionState == "closed" and closed.set())
        await asyncio.wait_for(closed.wait(), 10)  # the server hangs up
        assert 1.5 < time.monotonic() - started < 8
        assert any("maximum duration" in m for m in call.logs("warning")), call.messages
        assert call.logs("end_stream"), call.messages  # fastrtc's end of stream, then the close
        await call.close()
        await wait_no_calls(server)
    finally:
        server.stop()
