"""Trickled ICE candidates reach the worker holding the peer connection (issue 11 item 3): two real
`cozy serve` nodes on one PostgreSQL; the call's offer goes to B, a candidate for it to A. And
OpenAI's flow across nodes (issue 12): an ephemeral key made on A starts a call on B; a hang-up
sent to A is forwarded to B; a sideband WebSocket on A is relayed to B."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, CozyServer, start_cozy_server
from tests.support.pg import create_database, drop_database
from tests.support.procs import StubLLMServer, wait_http_ok
from tests.webrtc.rtc_client import Call
from tests.webrtc.test_openai_webrtc import OpenAICallClient, sdk

pytestmark = pytest.mark.timeout(240)

AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0 ufrag cozy",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}


@pytest.fixture(scope="module")
def nodes(stub_llm: StubLLMServer) -> Iterator[tuple[CozyServer, CozyServer]]:
    name, url = create_database("cozy_ice")
    env = {"DATABASE_URL": url, "COZY_WEBRTC_PRELOAD": "true", "COZY_STT_ENABLED": "false"}
    try:
        a = start_cozy_server(stub_llm, env)
        try:
            b = start_cozy_server(stub_llm, env)
            try:
                for node in (a, b):
                    wait_http_ok(f"{node.root_url}/ready", timeout=120, process=node.process)
                yield a, b
            finally:
                b.stop()
        finally:
            a.stop()
    finally:
        drop_database(name)


async def candidate(node: CozyServer, webrtc_id: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as http:
        body = {"type": "ice-candidate", "webrtc_id": webrtc_id, "candidate": CANDIDATE}
        return await http.post(f"{node.root_url}/v1/rtc/webrtc/offer", json=body)


async def test_candidate_sent_to_another_node_reaches_the_call(nodes: tuple[CozyServer, CozyServer]) -> None:
    a, b = nodes
    call = Call(b.root_url, ADMIN_KEY)
    try:
        r = await call.offer()
        assert r.status_code == 200 and r.json()["type"] == "answer", r.text
        await call.connected()
        r = await candidate(a, call.webrtc_id)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "success"}, r.text  # added to B's peer connection
        assert "x-cozy-forwarded-by" in r.headers
        r = await candidate(b, call.webrtc_id)
        assert r.json() == {"status": "success"} and "x-cozy-forwarded-by" not in r.headers  # B holds it
    finally:
        await call.close()
    for _ in range(100):  # the call's row goes with it: A no longer knows where to send a candidate
        r = await candidate(a, call.webrtc_id)
        if r.json().get("meta", {}).get("error") == "unknown_connection":
            break
        await asyncio.sleep(0.1)
    assert r.json() == {"status": "failed", "meta": {"error": "unknown_connection"}}, r.text


async def test_openai_call_across_nodes(nodes: tuple[CozyServer, CozyServer]) -> None:
    a, b = nodes
    on_a = sdk(a, ADMIN_KEY)
    secret = await on_a.realtime.client_secrets.create(session={"type": "realtime", "instructions": "Hi."})
    browser = OpenAICallClient()
    try:
        r = await browser.start(b, secret.value)  # the key is in the shared database
        assert r.status_code == 201, r.text
        await browser.connected()
        (created,) = await browser.wait("session.created", timeout=20)
        assert created["session"]["instructions"] == "Hi."
        call_id = browser.call_id or ""
        async with on_a.realtime.connect(call_id=call_id) as conn:  # relayed to B, frames both ways
            await conn.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Bye."}})
            async with asyncio.timeout(20):
                while (event := await conn.recv()).type != "session.updated":
                    assert event.type != "error", event
            assert event.session.instructions == "Bye."
            (seen,) = await browser.wait("session.updated", timeout=20)  # it acted on B's call
            assert seen["session"]["instructions"] == "Bye."
        assert browser.channel.readyState == "open"  # the sideband closing leaves the call alone
        raw = await on_a.realtime.calls.with_raw_response.hangup(call_id)  # forwarded to B
        assert raw.status_code == 200 and "x-cozy-forwarded-by" in raw.headers
        async with asyncio.timeout(10):
            while browser.channel.readyState == "open":  # noqa: ASYNC110 - aiortc has no awaitable state
                await asyncio.sleep(0.1)
    finally:
        await browser.close()
