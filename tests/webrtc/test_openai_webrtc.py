"""OpenAI's WebRTC flow end to end against a real `cozy serve` (issue 12, items 4 and 5(d)).

A backend makes an ephemeral key with its API key (`POST /v1/realtime/client_secrets`, the openai
SDK); a "browser" (aiortc) posts its SDP offer with that key (`POST /v1/realtime/calls`,
`application/sdp`), with a microphone track playing the server's own TTS and an `oai-events`
data channel; the backend watches and steers the call over a sideband WebSocket (the SDK's
`realtime.connect(call_id=...)`) and hangs up with the SDK. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import numpy as np
import openai
import orjson
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tests.e2e.accounts import auth, make_user
from tests.e2e.conftest import ADMIN_KEY, CozyServer
from tests.e2e.realtime_support import Events
from tests.support.events import Recorder
from tests.webrtc.rtc_client import Microphone, Speaker
from tests.webrtc.test_webrtc import wait_no_calls


def sdk(server: CozyServer, key: str) -> openai.AsyncOpenAI:
    ws = server.root_url.replace("http://", "ws://") + "/v1"
    return openai.AsyncOpenAI(base_url=server.base_url, websocket_base_url=ws, api_key=key, max_retries=0)


class OpenAICallClient(Recorder[dict[str, Any]]):
    """What a page does in OpenAI's WebRTC guide: a peer connection with the microphone, a data
    channel `oai-events`, the offer POSTed with the ephemeral key, the answer applied."""

    timeout = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN
        self.mic = Microphone()
        self.speaker = Speaker()
        self.channel = self.pc.createDataChannel("oai-events")
        self.channel.on("message", lambda raw: self.record(orjson.loads(raw)))
        self.pc.addTrack(self.mic)
        self.pc.on("track", lambda track: self.speaker.start(track) if track.kind == "audio" else None)
        self.call_id: str | None = None

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def start(self, server: CozyServer, key: str) -> httpx.Response:
        sdp = await self.offer()
        headers = {"authorization": f"Bearer {key}", "content-type": "application/sdp"}
        async with httpx.AsyncClient(timeout=60) as http:
            r = await http.post(f"{server.root_url}/v1/realtime/calls", content=sdp, headers=headers)
        if r.status_code == 201:
            await self.answered(r.text, r.headers["location"])
        return r

    async def answered(self, answer: str, location: str) -> None:
        self.call_id = location.rsplit("/", 1)[-1]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def connected(self, timeout: float = 15) -> None:
        """The data channel is open (so the server's DTLS/SCTP is up too)."""
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        if self.channel.readyState != "open":
            await asyncio.wait_for(opened.wait(), timeout)

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(orjson.dumps(event).decode())

    def type_of(self, event: dict[str, Any]) -> str | None:
        return event.get("type")  # a data channel carries whatever the server sends

    async def close(self) -> None:
        await self.pc.close()
        if self.speaker.task is not None:
            self.speaker.task.cancel()
            with contextlib.suppress(BaseException):
                await self.speaker.task


async def test_openai_webrtc_flow(rtc_server: CozyServer, question: np.ndarray) -> None:
    backend = sdk(rtc_server, ADMIN_KEY)
    secret = await backend.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120},
        session={"type": "realtime", "instructions": "Be brief.", "audio": {"output": {"voice": "alloy"}}},
    )
    assert secret.value.startswith("ek_") and abs(secret.expires_at - time.time() - 120) < 10
    assert secret.session.instructions == "Be brief."
    browser = OpenAICallClient()
    try:
        r = await browser.start(rtc_server, secret.value)
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("application/sdp") and r.text.startswith("v=0")
        assert r.headers["location"].startswith("/v1/realtime/calls/rtc_")
        call_id = browser.call_id
        assert call_id is not None
        (created,) = await browser.wait("session.created", timeout=20)
        assert created["session"]["instructions"] == "Be brief."  # the key's session applies
        assert created["session"]["audio"]["output"]["voice"] == "alloy"

        again = await OpenAICallClient().start(rtc_server, secret.value)  # each key starts ONE session
        assert again.status_code == 401 and again.json()["error"]["code"] == "AUTH_INVALID_TOKEN", again.text

        async with backend.realtime.connect(call_id=call_id) as sideband:
            watched = Events(sideband)
            tools = [{"type": "function", "name": "get_time", "description": "The time.", "parameters": {}}]
            await sideband.send({"type": "session.update", "session": {"type": "realtime", "tools": tools}})
            (updated,) = await watched.wait("session.updated")
            assert [t.name for t in updated.session.tools] == ["get_time"]
            await browser.wait("session.updated")  # the browser's channel sees the sideband's change

            # A spoken turn: transcription and response events on the channel, reply audio on the track.
            await asyncio.sleep(0.5)
            browser.mic.say(question)
            await browser.mic.done.wait()
            end = browser.mic.speech_ended_at or 0.0
            first = await browser.speaker.wait_loud(end, timeout=30)
            (done,) = await browser.wait("response.done", timeout=30)
            await browser.wait("output_audio_buffer.stopped", timeout=30)
            print(f"\nOpenAI WebRTC end of speech -> first reply audio: {(first - end) * 1000:.0f} ms")
            said = browser.of("conversation.item.input_audio_transcription.completed")
            assert said and "what time" in said[0]["transcript"].lower(), said
            for etype in ("input_audio_buffer.speech_started", "input_audio_buffer.committed", "response.created"):
                assert browser.of(etype), etype
            assert done["response"]["status"] == "completed"
            transcript = "".join(e["delta"] for e in browser.of("response.output_audio_transcript.delta"))
            assert transcript.startswith("Echo:")
            started = browser.of("output_audio_buffer.started")
            assert started and started[0]["response_id"] == done["response"]["id"]
            assert not browser.of("response.output_audio.delta")  # audio is on the track, not the channel
            assert all(isinstance(e.get("event_id"), str) for e in browser.events)
            await watched.wait("response.done")  # the sideband saw the same turn
            assert watched.of("conversation.item.input_audio_transcription.completed")
            assert not watched.of("response.output_audio.delta")

            # The sideband steers: a client tool through its session.update, then its tool output.
            text = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "CALL get_time {}"}]}
            await sideband.send({"type": "conversation.item.create", "item": text})
            await sideband.send({"type": "response.create"})
            calls = await watched.wait("response.done", count=2)
            fn = [o for o in calls[1].response.output if o.type == "function_call"]
            assert fn and fn[0].name == "get_time", calls[1]
            output = {"type": "function_call_output", "call_id": fn[0].call_id, "output": "noon"}
            await sideband.send({"type": "conversation.item.create", "item": output})
            heard_before = len(browser.speaker.loud())
            await sideband.send({"type": "response.create"})
            final = (await browser.wait("response.done", count=3, timeout=30))[2]
            spoken = [c.get("transcript") for o in final["response"]["output"] for c in o.get("content") or ()]
            assert "Tool get_time returned: noon" in spoken, final
            await browser.wait("output_audio_buffer.stopped", count=2, timeout=30)
            assert len(browser.speaker.loud()) > heard_before  # the sideband's response was spoken

            await backend.realtime.calls.hangup(call_id)  # the owner (an admin here) ends the call
            await asyncio.wait_for(watched._task, 10)  # the sideband's socket closes with the call
            async with asyncio.timeout(10):
                while browser.channel.readyState == "open":  # noqa: ASYNC110 - aiortc has no awaitable state
                    await asyncio.sleep(0.1)
        with pytest.raises(openai.NotFoundError):
            await backend.realtime.calls.hangup(call_id)
    finally:
        await browser.close()
    await wait_no_calls(rtc_server)


async def test_api_key_call_with_session_and_refusals(rtc_server: CozyServer) -> None:
    user, key = make_user(rtc_server)
    client = sdk(rtc_server, key)
    browser = OpenAICallClient()
    try:
        # The SDK's own call creation: multipart with `sdp` and a `session`, with a real API key.
        session = {"type": "realtime", "instructions": "Speak French.", "output_modalities": ["text"]}
        raw = await client.realtime.calls.with_raw_response.create(sdp=await browser.offer(), session=session)
        assert raw.status_code == 201 and raw.headers["location"].startswith("/v1/realtime/calls/")
        await browser.answered(raw.text, raw.headers["location"])
        (created,) = await browser.wait("session.created", timeout=20)
        assert created["session"]["instructions"] == "Speak French."
        assert created["session"]["output_modalities"] == ["text"]
        browser.send({"type": "session.update", "session": {"type": "realtime", "bogus": 1}})
        (error,) = await browser.wait("error")
        assert error["error"]["param"] == "session.bogus"  # the same validation as the WebSocket
        browser.send({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}})
        errors = await browser.wait("error", count=2)
        assert errors[1]["error"]["param"] == "session.audio.input.format"

        other = sdk(rtc_server, make_user(rtc_server)[1])
        with pytest.raises(openai.NotFoundError):  # someone else's call
            await other.realtime.calls.hangup(browser.call_id or "")
        async with other.realtime.connect(call_id=browser.call_id or "") as conn:  # nor their sideband
            event = await conn.recv()
            assert event.type == "error" and event.error.code == "RESOURCE_NOT_FOUND", event
        async with client.realtime.connect(call_id=browser.call_id or "") as own:  # the sideband is screened too
            pcmu = {"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcmu"}}}}
            await own.send({"type": "session.update", "session": pcmu})
            event = await own.recv()
            assert event.type == "error" and event.error.param == "session.audio.output.format", event
        await client.realtime.calls.hangup(browser.call_id or "")
    finally:
        await browser.close()

    async with httpx.AsyncClient(base_url=rtc_server.root_url, headers=auth(key), timeout=30) as http:
        bad = await http.post("/v1/realtime/client_secrets", json={"session": {"audio": {"output": {"speed": 9}}}})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "session.audio.output.speed", bad.text
        bad = await http.post("/v1/realtime/client_secrets", json={"expires_after": {"seconds": 5}})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"
        files = {"sdp": (None, "v=0\r\n"), "session": (None, '{"nope": true}')}
        bad = await http.post("/v1/realtime/calls", files=files)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "session.nope", bad.text
        bad = await http.post("/v1/realtime/calls", content="v=0\r\n", headers={"content-type": "application/sdp"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "sdp"
        short = (await http.post("/v1/realtime/client_secrets", json={"expires_after": {"seconds": 10}})).json()
        assert short["value"].startswith("ek_") and short["session"]["type"] == "realtime"
        ek = {"authorization": f"Bearer {short['value']}"}
        misused = await http.get("/v1/models", headers=ek)  # an ephemeral key starts a session, nothing else
        assert misused.status_code == 401, misused.text
        for _ in range(2):  # a refused offer gives the key back: it is still good the second time
            sdp_only = {**ek, "content-type": "application/sdp"}
            refused = await http.post("/v1/realtime/calls", content="v=0\r\n", headers=sdp_only)
            assert refused.status_code == 400 and refused.json()["error"]["param"] == "sdp", refused.text
        doc = (await http.get("/openapi.json")).json()
        for path in ("/v1/realtime/calls", "/v1/realtime/calls/{call_id}/hangup", "/v1/realtime/client_secrets"):
            assert "post" in doc["paths"][path]
    late = OpenAICallClient()
    try:
        await asyncio.sleep(11)  # past its 10 s
        r = await late.start(rtc_server, short["value"])
        assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_INVALID_TOKEN", r.text
    finally:
        await late.close()
    assert user["role"] == "user"
    await wait_no_calls(rtc_server)


async def test_ephemeral_key_on_the_websocket(rtc_server: CozyServer) -> None:
    """A browser's WebSocket (no headers: the key as a subprotocol, as openai-node does) with an
    ephemeral key: one session with the key's config; the key is spent after it."""
    import websockets

    backend = sdk(rtc_server, ADMIN_KEY)
    secret = await backend.realtime.client_secrets.create(session={"type": "realtime", "instructions": "Hello."})
    url = rtc_server.root_url.replace("http://", "ws://") + "/v1/realtime"
    protocols = ["realtime", f"openai-insecure-api-key.{secret.value}"]
    async with websockets.connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"
        created = orjson.loads(await ws.recv())
        assert created["type"] == "session.created" and created["session"]["instructions"] == "Hello."
    with pytest.raises(websockets.InvalidStatus) as refused:  # refused at the handshake, like any bad token
        await websockets.connect(url, subprotocols=protocols)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


async def test_barge_in_and_client_clear(rtc_server: CozyServer, question: np.ndarray) -> None:
    """The server owns playback: talking over the reply stops it (`output_audio_buffer.cleared`),
    and so does the client's `response.cancel` + `output_audio_buffer.clear`."""
    browser = OpenAICallClient()
    try:
        assert (await browser.start(rtc_server, ADMIN_KEY)).status_code == 201  # an API key works too
        await browser.wait("session.created", timeout=20)
        await asyncio.sleep(0.3)
        browser.mic.say(question)
        await browser.mic.done.wait()
        (started,) = await browser.wait("output_audio_buffer.started", timeout=30)
        await asyncio.sleep(0.6)  # into the reply
        browser.mic.say(question)  # the caller talks over it
        (cleared,) = await browser.wait("output_audio_buffer.cleared", timeout=10)
        assert cleared["response_id"] == started["response_id"]
        await browser.mic.done.wait()
        onset = browser.mic.speech_started_at or 0.0
        during = [t for t in browser.speaker.loud(onset) if t <= (browser.mic.speech_ended_at or 0.0)]
        assert not during or during[-1] - onset < 0.8, "the reply kept playing over the caller"
        cancelled = [e for e in browser.of("response.done") if e["response"]["status"] == "cancelled"]
        assert cancelled and cancelled[0]["response"]["id"] == started["response_id"]

        second = (await browser.wait("output_audio_buffer.started", count=2, timeout=30))[1]
        browser.send({"type": "response.cancel"})
        browser.send({"type": "output_audio_buffer.clear"})
        cleared = (await browser.wait("output_audio_buffer.cleared", count=2, timeout=10))[1]
        assert cleared["response_id"] == second["response_id"]
        stop = time.time()
        await asyncio.sleep(1.0)
        assert len(browser.speaker.loud(stop + 0.3)) == 0, "reply audio kept playing after the clear"
    finally:
        await browser.close()
    await wait_no_calls(rtc_server)
