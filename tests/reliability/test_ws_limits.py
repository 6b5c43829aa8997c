"""Issue 10, item 1 (WebSockets): message caps per endpoint (close 1009), realtime items capped in
size (an `error` naming the param, the connection stays), the session's mailbox and outbox
bounded in bytes, and `WS /v1/audio/stt/stream` admitted, bounded in time and ended on revocation.

From the code review of a5a60c6: every WebSocket took uvicorn's 16 MiB messages, a realtime
mailbox of 256 such events could hold ~4 GiB, `conversation.item.create` was bounded by count
only, and the STT stream had no duration cap, no admission control and outlived a revoked key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from tests.e2e.accounts import auth, make_user
from tests.reliability.conftest import ADMIN_KEY, CozyServer, start_cozy_server
from tests.reliability.edge_helpers import config_copy
from tests.support.procs import StubLLMServer, wait_http_ok

MB = 1024 * 1024
BEARER = {"Authorization": f"Bearer {ADMIN_KEY}"}
STT_MAX_S = 3.0


@pytest.fixture(scope="module")
def rt(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CozyServer]:
    """Text realtime (no speech engines), with small byte bounds so tests reach them quickly."""
    realtime = {
        "max_message_bytes": 256 * 1024,
        "max_queued_bytes": 256 * 1024,
        "max_outbox_bytes": 65536,
        "max_audio_append_bytes": 65536,
    }
    config = config_copy(tmp_path_factory.mktemp("ws-rt"), api={"realtime": realtime})
    env = {"COZY_STT_ENABLED": "false", "COZY_TTS_ENABLED": "false", "COZY_VAD_ENABLED": "false"}
    server = start_cozy_server(stub_llm, env, config_dir=config)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stt(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CozyServer]:
    """Speech recognition on (bundled whisper tiny.en + silero), streams of at most 3 s, 2 at once."""
    stream = {"max_duration_s": STT_MAX_S, "max_sessions": 2}
    config = config_copy(tmp_path_factory.mktemp("ws-stt"), api={"stt_stream": stream})
    server = start_cozy_server(stub_llm, {"COZY_TTS_ENABLED": "false"}, config_dir=config)
    try:
        wait_http_ok(f"{server.root_url}/ready", timeout=120, process=server.process)  # models loaded
        yield server
    finally:
        server.stop()


def ws_url(server: CozyServer, path: str) -> str:
    return server.root_url.replace("http://", "ws://") + path


@pytest.fixture
async def realtime(rt: CozyServer) -> AsyncIterator[Any]:
    async with websockets.connect(ws_url(rt, "/v1/realtime?model=stub-model"), additional_headers=BEARER) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        yield ws


async def next_event(ws: Any, timeout: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def still_works(ws: Any) -> None:
    """The connection and its session carry on: a normal item is added."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "still here"}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    while (event := await next_event(ws))["type"] != "conversation.item.added":
        assert event["type"] == "error", event  # late errors of what came before
    assert event["item"]["content"][0]["text"] == "still here"


async def closed_with(ws: Any, *send: str | bytes, timeout: float = 10) -> int | None:
    """Send `send` (the server may close while it arrives), then read until it closes: the code."""
    with pytest.raises(websockets.ConnectionClosed):
        for message in send:
            await ws.send(message)
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return ws.close_code


@pytest.mark.parametrize("size", [300 * 1024, 5 * MB])
async def test_realtime_message_over_the_cap_closes_1009(realtime: Any, size: int) -> None:
    """Over api.realtime.max_message_bytes (256 KiB here): the endpoint closes; over uvicorn's cap
    (the largest endpoint cap, 1 MiB here) the WebSocket layer does, with the same code."""
    frame = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * size})
    assert await closed_with(realtime, frame) == 1009


async def test_oversized_items_get_an_error_naming_the_param(realtime: Any) -> None:
    big = "x" * 40_000  # over max_text_chars (32768)
    cases = [
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": big}]},
            },
            "item.content[0].text",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "c1", "output": big},
            },
            "item.output",
        ),
        ({"type": "session.update", "session": {"instructions": big}}, "session.instructions"),
        ({"type": "response.create", "response": {"instructions": big}}, "response.instructions"),
        ({"type": "input_audio_buffer.append", "audio": "AAAA" * 24_000}, "audio"),  # 72 KB > 64 KiB of audio
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}] * 17},
            },
            "item.content",
        ),
    ]
    for i, (event, param) in enumerate(cases):
        await realtime.send(json.dumps({**event, "event_id": f"big-{i}"}))
        error = await next_event(realtime)
        assert error["type"] == "error", (param, error)
        assert error["error"]["param"] == param and error["error"]["event_id"] == f"big-{i}", error
        assert error["error"]["code"] in ("string_above_max_length", "array_above_max_length"), error
    await still_works(realtime)


async def test_mailbox_is_bounded_in_bytes(realtime: Any) -> None:
    """A burst of 150 KB events (40, far under the 256-event count) overruns a 256 KiB mailbox
    (two such events): `rate_limit_exceeded` for those that do not fit; the session carries on."""
    frame = json.dumps({"type": "cozy.padding", "pad": "p" * 150_000})
    await asyncio.gather(*(realtime.send(frame) for _ in range(40)))
    codes = [(await next_event(realtime))["error"]["code"] for _ in range(40)]
    assert "rate_limit_exceeded" in codes, codes
    assert set(codes) == {"rate_limit_exceeded", "invalid_event"}, codes  # the others were handled
    await still_works(realtime)


async def test_client_that_does_not_read_is_disconnected(rt: CozyServer) -> None:
    """Each item is echoed twice (added, done): ~60 KB of events per 30 KB sent. A client that
    never reads lets them pile up past max_outbox_bytes (64 KiB here, after the socket buffers
    fill): the server disconnects it instead of buffering its events without end."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "t" * 30_000}]}
    frame = json.dumps({"type": "conversation.item.create", "item": item})
    url = ws_url(rt, "/v1/realtime?model=stub-model")
    async with websockets.connect(url, additional_headers=BEARER, max_queue=4) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(400):  # 24 MB of events back: more than any socket buffer holds
                await asyncio.wait_for(ws.send(frame), 10)
            received = 0
            while True:  # now read: the connection ends before all 800 item events arrive
                json.loads(await asyncio.wait_for(ws.recv(), 10))
                received += 1
                assert received < 800, "every event was buffered for a client that did not read"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{rt.root_url}/health")).status_code == 200


def pcm_silence(ms: int) -> bytes:
    return np.zeros(16 * ms, dtype="<i2").tobytes()


async def open_stt(server: CozyServer, key: str = ADMIN_KEY) -> Any:
    ws = await websockets.connect(ws_url(server, "/v1/audio/stt/stream"), additional_headers=auth(key))
    await ws.send(json.dumps({"type": "config", "sample_rate": 16000}))
    return ws


async def test_stt_message_over_the_cap_closes_1009(stt: CozyServer) -> None:
    ws = await open_stt(stt)
    await ws.send(pcm_silence(40))
    # Over api.stt_stream.max_message_bytes (1 MiB), under uvicorn's cap (realtime's 4 MiB).
    assert await closed_with(ws, b"\0" * (2 * MB)) == 1009


async def test_stt_stream_ends_at_its_maximum_duration(stt: CozyServer) -> None:
    ws = await open_stt(stt)
    started = time.perf_counter()
    events = []
    with pytest.raises(websockets.ConnectionClosed):
        while time.perf_counter() - started < STT_MAX_S + 5:
            await ws.send(pcm_silence(100))  # a live microphone: the stream never ends by itself
            with contextlib.suppress(TimeoutError):
                events.append(json.loads(await asyncio.wait_for(ws.recv(), 0.1)))
    elapsed = time.perf_counter() - started
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[-1]["code"] == "session_expired", events
    assert ws.close_code == 1000
    assert STT_MAX_S - 0.5 < elapsed < STT_MAX_S + 3.0, elapsed


@pytest.mark.parametrize("how", ["revoke key", "disable user"])
async def test_stt_stream_ends_when_its_key_is_revoked(stt: CozyServer, how: str) -> None:
    account, key = make_user(stt)
    ws = await open_stt(stt, key)
    await ws.send(pcm_silence(100))
    async with httpx.AsyncClient(base_url=stt.root_url, headers=auth(ADMIN_KEY), timeout=30) as admin:
        if how == "revoke key":
            keys = (await admin.get(f"/v1/admin/users/{account['id']}/keys")).json()["data"]
            r = await admin.delete(f"/v1/admin/users/{account['id']}/keys/{keys[0]['id']}")
        else:
            r = await admin.patch(f"/v1/admin/users/{account['id']}", json={"disabled": True})
        assert r.status_code in (200, 204), r.text
    events = []
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    assert events and events[-1]["type"] == "error" and events[-1]["code"] == "session_revoked", events
    assert ws.close_code == 1008


async def test_stt_streams_pass_admission_control(stt: CozyServer) -> None:
    first, second = await open_stt(stt), await open_stt(stt)
    try:
        third = await websockets.connect(ws_url(stt, "/v1/audio/stt/stream"), additional_headers=BEARER)
        error = await next_event(third)
        assert error["type"] == "error" and error["code"] == "RESOURCE_EXHAUSTED", error
        assert await closed_with(third) == 1013
    finally:
        await first.close()
        await second.close()
    await asyncio.sleep(0.3)  # the two closed streams are released: a new one is admitted
    again = await open_stt(stt)
    await again.send(json.dumps({"type": "end"}))
    assert (await next_event(again))["type"] == "done"
    await again.close()
