"""Issue 10, item 3: fair share. Per-user quotas against a real `cozy serve`: one user cannot hold
more than N live conversations, realtime/WebRTC sessions, STT streams or queued local-model
requests while another user is still served; refusals are 429 with Retry-After in the documented
error format (realtime/STT stream: an `error` event, then close 1013); slots come back when a
holder ends, however it ends; the local model's max_tokens has a ceiling (400 beyond it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tests.e2e.accounts import make_user
from tests.reliability.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, assert_error_body, start_cozy_server
from tests.support.procs import StubLLMServer

pytestmark = pytest.mark.timeout(240)

LOCAL_MODEL = "smollm2-135m"
CONVERSATIONS, CEILING = 2, 64
ENV = {
    "COZY_QUOTA_CONVERSATIONS": str(CONVERSATIONS),
    "COZY_QUOTA_REALTIME": "1",
    "COZY_QUOTA_STT_STREAMS": "1",
    "COZY_QUOTA_LLM_QUEUE": "1",
    "COZY_LOCAL_MAX_TOKENS_LIMIT": str(CEILING),
}
# Offer shape the gateway checks before it opens the call (an audio track and a data channel).
FAKE_SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
)


@pytest.fixture(scope="module")
def server(stub_llm: StubLLMServer) -> Iterator[CozyServer]:
    srv = start_cozy_server(stub_llm, extra_env=ENV)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def keys(server: CozyServer) -> tuple[str, str]:
    """Two ordinary users' API keys (admins are exempt from quotas)."""
    return make_user(server)[1], make_user(server)[1]


def _h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _chat(text: str, session: str | None = None, model: str = STUB_MODEL, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], **kw}
    if session:
        body["cozy"] = {"session_id": session}
    return body


def assert_quota_refusal(r: httpx.Response) -> dict[str, Any]:
    err = assert_error_body(r, 429, "RESOURCE_QUOTA_EXCEEDED")
    assert err["type"] == "rate_limit_error" and "per user" in err["message"]
    assert int(r.headers["retry-after"]) >= 1
    return err


def sid() -> str:
    return f"quota-{uuid.uuid4().hex}"


async def test_live_conversations_per_user(server: CozyServer, keys: tuple[str, str]) -> None:
    alice, bob = keys
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        busy = [sid() for _ in range(CONVERSATIONS)]
        running = [
            asyncio.create_task(http.post("/chat/completions", json=_chat("SLEEP 4 hi", s), headers=_h(alice)))
            for s in busy
        ]
        await asyncio.sleep(1.5)  # both turns are in the stub's sleep: two busy conversations
        third = await http.post("/chat/completions", json=_chat("hi", sid()), headers=_h(alice))
        assert_quota_refusal(third)
        stateless = await http.post("/chat/completions", json=_chat("hi"), headers=_h(alice))
        assert_quota_refusal(stateless)
        other = await http.post("/chat/completions", json=_chat("hi bob", sid()), headers=_h(bob))
        assert other.status_code == 200, other.text  # another user is still served
        admin = await http.post("/chat/completions", json=_chat("hi root", sid()), headers=_h(ADMIN_KEY))
        assert admin.status_code == 200, admin.text  # admins are exempt
        for r in await asyncio.gather(*running):
            assert r.status_code == 200, r.text
        # Idle now: a new conversation replaces one of the user's idle ones instead of a 429,
        # and the replaced one comes back with its history on its next turn.
        for s in (sid(), sid(), *busy):
            r = await http.post("/chat/completions", json=_chat("again", s), headers=_h(alice))
            assert r.status_code == 200, r.text


async def test_abandoned_turns_give_their_slots_back(server: CozyServer, keys: tuple[str, str]) -> None:
    """The client goes away mid-turn: the turn ends (here when the upstream answers, 3 s) and its
    conversation's slot comes back, every time (no leak)."""
    alice, _ = keys
    for _round in range(3):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            calls = [
                asyncio.create_task(http.post("/chat/completions", json=_chat("SLEEP 3 x"), headers=_h(alice)))
                for _ in range(CONVERSATIONS)
            ]
            await asyncio.sleep(1.0)
            assert_quota_refusal(await http.post("/chat/completions", json=_chat("x"), headers=_h(alice)))
            for c in calls:
                c.cancel()  # the client goes away mid-turn
            await asyncio.gather(*calls, return_exceptions=True)
        await _eventually_ok(server, alice)


async def _eventually_ok(server: CozyServer, key: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        while True:
            rs = await asyncio.gather(
                *(http.post("/chat/completions", json=_chat("back"), headers=_h(key)) for _ in range(CONVERSATIONS))
            )
            if all(r.status_code == 200 for r in rs):
                return
            assert time.monotonic() < deadline, [r.text for r in rs]
            await asyncio.sleep(0.2)


def _ws_url(server: CozyServer, path: str) -> str:
    return server.root_url.replace("http://", "ws://") + path


async def _refused(ws: Any) -> dict[str, Any]:
    event = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1013, ws.close_code
    return event


async def test_realtime_and_webrtc_sessions_per_user(server: CozyServer, keys: tuple[str, str]) -> None:
    alice, bob = keys
    url = _ws_url(server, f"/v1/realtime?model={STUB_MODEL}")
    async with websockets.connect(url, additional_headers=_h(alice)) as first:
        assert orjson.loads(await first.recv())["type"] == "session.created"
        async with websockets.connect(url, additional_headers=_h(alice)) as second:
            event = await _refused(second)
        assert event["type"] == "error" and event["error"]["code"] == "RESOURCE_QUOTA_EXCEEDED", event
        assert "retry after" in event["error"]["message"]
        async with websockets.connect(url, additional_headers=_h(bob)) as other:
            assert orjson.loads(await other.recv())["type"] == "session.created"
        # A WebRTC call is a realtime session too: the same share.
        async with httpx.AsyncClient(base_url=server.root_url, timeout=120) as http:
            offer = {"sdp": FAKE_SDP, "type": "offer", "webrtc_id": f"w{uuid.uuid4().hex[:12]}"}
            r = await http.post("/v1/rtc/webrtc/offer", json=offer, headers=_h(alice))
            assert_quota_refusal(r)
        await first.send(orjson.dumps({"type": "response.create"}).decode())  # still alive and served
    # Sessions that end abruptly (the socket just drops, mid-response) give their slot back.
    for _ in range(4):
        ws = await _open_when_free(url, alice)
        await ws.send(orjson.dumps({"type": "response.create"}).decode())
        ws.transport.abort()
    ws = await _open_when_free(url, alice)
    await ws.close()
    await _no_slots_held(server, "realtime_sessions")


async def _no_slots_held(server: CozyServer, kind: str, timeout: float = 10.0) -> None:
    """Every slot of `kind` came back (the gauge counts all users; sessions end asynchronously)."""
    deadline = time.monotonic() + timeout
    while (held := server.metric("cozy_quota_slots_held", kind=kind)) != 0:
        assert time.monotonic() < deadline, f"{held:g} {kind} slot(s) still held: a leak"
        await asyncio.sleep(0.2)


async def _open_when_free(url: str, key: str, timeout: float = 10.0) -> Any:
    """A realtime session for `key` once its previous one has ended (the server ends it async)."""
    deadline = time.monotonic() + timeout
    while True:
        ws = await websockets.connect(url, additional_headers=_h(key))
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if first["type"] == "session.created":
            return ws
        await ws.close()
        assert first["error"]["code"] == "RESOURCE_QUOTA_EXCEEDED", first
        assert time.monotonic() < deadline, "the slot of an ended session never came back"
        await asyncio.sleep(0.1)


async def test_stt_streams_per_user(server: CozyServer, keys: tuple[str, str]) -> None:
    alice, bob = keys
    url = _ws_url(server, "/v1/audio/stt/stream")
    async with websockets.connect(url, additional_headers=_h(alice)) as first:
        async with websockets.connect(url, additional_headers=_h(alice)) as second:
            event = await _refused(second)
        assert event["type"] == "error" and event["code"] == "RESOURCE_QUOTA_EXCEEDED", event
        async with websockets.connect(url, additional_headers=_h(bob)) as other:
            await other.send(orjson.dumps({"type": "end"}).decode())
            assert orjson.loads(await asyncio.wait_for(other.recv(), 30))["type"] == "done"
        await first.send(orjson.dumps({"type": "end"}).decode())
        assert orjson.loads(await asyncio.wait_for(first.recv(), 30))["type"] == "done"
    for _ in range(3):  # ended (cleanly or not), the slot is free again
        deadline = time.monotonic() + 10
        while True:
            ws = await websockets.connect(url, additional_headers=_h(alice))
            try:
                await ws.send(orjson.dumps({"type": "end"}).decode())
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            finally:
                ws.transport.abort()
            if reply["type"] == "done":
                break
            assert time.monotonic() < deadline, reply
            await asyncio.sleep(0.1)
    await _no_slots_held(server, "stt_streams")


async def test_local_model_queue_per_user_and_max_tokens_ceiling(server: CozyServer, keys: tuple[str, str]) -> None:
    alice, bob = keys
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
        over = await http.post(
            "/chat/completions", json=_chat("hi", model=LOCAL_MODEL, max_tokens=CEILING + 1), headers=_h(alice)
        )
        err = assert_error_body(over, 400, "VALIDATION_ERROR")
        assert err["param"] == "max_tokens" and str(CEILING) in err["message"]
        over = await http.post(
            "/chat/completions", json=_chat("hi", model=LOCAL_MODEL, max_completion_tokens=10**9), headers=_h(alice)
        )
        assert_error_body(over, 400, "VALIDATION_ERROR")
        upstream = await http.post("/chat/completions", json=_chat("hi", max_tokens=10**6), headers=_h(alice))
        assert upstream.status_code == 200, upstream.text  # an upstream model has no ceiling here

        # Two of alice's requests at once on the single lane (queue quota 1): one gets 429; bob's
        # request at the same time is queued and answered.
        body = _chat("Tell me a long story about a cat.", model=LOCAL_MODEL, max_tokens=CEILING)
        rs = await asyncio.gather(
            *(http.post("/chat/completions", json=body, headers=_h(alice)) for _ in range(2)),
            http.post("/chat/completions", json=body, headers=_h(bob)),
        )
        *mine, theirs = rs
        assert theirs.status_code == 200, theirs.text
        assert sorted(r.status_code for r in mine) == [200, 429], [r.text for r in mine]
        refused = next(r for r in mine if r.status_code == 429)
        assert "queued requests on the local model" in assert_quota_refusal(refused)["message"]
        ok = next(r for r in mine if r.status_code == 200).json()
        assert ok["usage"]["completion_tokens"] <= CEILING
    await _no_slots_held(server, "llm_queue")
    assert server.metric("cozy_quota_refused_total", kind="llm_queue") >= 1
