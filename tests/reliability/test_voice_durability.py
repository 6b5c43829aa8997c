"""Issue 10, item 6: voice turns are durable. Every realtime reply that ends early (response.cancel,
barge-in, shutdown, key revocation, max duration) is stored with the text that was heard and
`incomplete: true`, exactly as text chat stores a cut-off reply; an idle timeout never cuts a
reply off (a responding session is not idle); completed turns are stored in order.

Real `cozy serve` processes, the openai SDK's realtime client, a stub upstream that streams one
word every 100 ms (so there is a reply to cut off), and the stored messages read back through
the sessions API (GET /v1/chat/sessions/{id}/messages)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.accounts import make_user
from tests.e2e.realtime_support import Events, send_audio, silence
from tests.reliability.conftest import CozyServer, start_cozy_server
from tests.reliability.durable_support import (
    TOKEN_MS,
    admin_http,
    assert_cut_off,
    await_closed,
    rt_client,
    said,
    start_reply,
    user_text,
    wait_messages,
)
from tests.support.pg import create_database, drop_database
from tests.support.procs import StubLLMServer, start_stub_llm, wait_http_ok

pytestmark = pytest.mark.timeout(180)

VAD = {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 300, "threshold": 0.5}


@pytest.fixture(scope="module")
def slow_stub() -> Iterator[StubLLMServer]:
    with start_stub_llm(token_ms=TOKEN_MS) as stub:
        yield stub


@pytest.fixture(scope="module")
def server(slow_stub: StubLLMServer) -> Iterator[CozyServer]:
    s = start_cozy_server(slow_stub)
    try:
        wait_http_ok(f"{s.root_url}/ready", timeout=120, process=s.process)  # speech models loaded
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def limits(slow_stub: StubLLMServer) -> Iterator[CozyServer]:
    """Sessions end after 8 s, or after 1.5 s without a client event while not responding."""
    s = start_cozy_server(slow_stub, {"COZY_MAX_SESSION_S": "8", "COZY_IDLE_TIMEOUT_S": "1.5"})
    try:
        wait_http_ok(f"{s.root_url}/ready", timeout=120, process=s.process)
        yield s
    finally:
        s.stop()


def sid() -> str:
    return f"rel-voice-{uuid.uuid4().hex[:12]}"


async def test_completed_turns_are_stored_in_order(server: CozyServer) -> None:
    session = sid()
    async with (
        rt_client(server) as client,
        client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": session}) as conn,
    ):
        ev = Events(conn)
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        for i in range(3):
            await conn.conversation.item.create(item=user_text(f"turn {i}"))
            await conn.response.create()
            await ev.wait("response.done", i + 1)
        await ev.close()
    stored = wait_messages(server, session, 6)
    assert [(m["role"], m["content"], m["incomplete"]) for m in stored] == [
        x for i in range(3) for x in (("user", f"turn {i}", False), ("assistant", f"Echo: turn {i}", False))
    ]


async def test_response_cancel_stores_heard_reply_incomplete(server: CozyServer) -> None:
    session = sid()
    async with (
        rt_client(server) as client,
        client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": session}) as conn,
    ):
        ev = Events(conn)
        await start_reply(conn, ev)
        await conn.response.cancel()
        done = (await ev.wait("response.done"))[0]
        assert done.response.status == "cancelled"
        heard = said(ev)
        await ev.close()
    assert_cut_off(wait_messages(server, session, 2), heard)


async def test_barge_in_stores_heard_reply_incomplete(server: CozyServer) -> None:
    """Audio out: what is stored is the part of the transcript the listener heard, not all the
    model wrote (the response.done transcript)."""
    async with admin_http(server) as http:
        r = await http.post(
            "/audio/speech",
            json={"model": "tts-1", "input": "Stop, please stop now.", "voice": "alloy", "response_format": "pcm"},
        )
    assert r.status_code == 200, r.text
    clip = r.content
    session = sid()
    text = " ".join(["This is a long answer that keeps going for quite a while."] * 8)
    async with (
        rt_client(server) as client,
        client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": session}) as conn,
    ):
        ev = Events(conn)
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": VAD}}})
        await ev.wait("session.updated")
        await conn.conversation.item.create(item=user_text(text))
        await conn.response.create()
        await ev.wait("response.output_audio.delta", timeout=30)
        await asyncio.sleep(3.0)  # the listener hears a sentence or two, then talks over the reply
        stop = asyncio.Event()
        sender = asyncio.create_task(send_audio(conn, clip + silence(1500), stop=stop))
        done = (await ev.wait("response.done", timeout=30))[0]
        stop.set()
        sender.cancel()
        assert done.response.status == "cancelled" and done.response.status_details.reason == "turn_detected"
        heard = done.response.output[0].content[0].transcript
        await ev.close()
    stored = wait_messages(server, session, 2)
    assert_cut_off(stored[:2], heard, asked=text)


async def test_key_revocation_stores_heard_reply_incomplete(server: CozyServer) -> None:
    made, key = make_user(server)
    admin = admin_http(server)
    r = await admin.post(f"/admin/users/{made['id']}/keys", json={"name": "reader"})
    assert r.status_code == 201, r.text
    reader = r.json()["api_key"]
    keys = (await admin.get(f"/admin/users/{made['id']}/keys")).json()["data"]
    call_key = next(k for k in keys if k["name"] != "reader")
    session = sid()
    async with (
        rt_client(server, key) as client,
        client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": session}) as conn,
    ):
        ev = Events(conn)
        await start_reply(conn, ev)
        r = await admin.delete(f"/admin/users/{made['id']}/keys/{call_key['id']}")
        assert r.status_code == 204, r.text
        await admin.aclose()
        errors = await ev.wait("error", timeout=15)
        assert errors[0].error.code == "session_revoked"
        await await_closed(ev)
        heard = said(ev)
    assert_cut_off(wait_messages(server, session, 2, key=reader), heard)


async def test_max_duration_stores_heard_reply_incomplete(limits: CozyServer) -> None:
    session = sid()
    async with (
        rt_client(limits) as client,
        client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": session}) as conn,
    ):
        ev = Events(conn)
        await start_reply(conn, ev)  # LONG streams for ~12 s, the session ends at 8 s
        errors = await ev.wait("error", timeout=20)
        assert errors[0].error.code == "session_expired"
        await await_closed(ev)
        heard = said(ev)
        assert [e.response.status for e in ev.of("response.done")] == ["cancelled"]
    assert_cut_off(wait_messages(limits, session, 2), heard)


async def test_idle_timeout_never_cuts_a_reply_off(limits: CozyServer) -> None:
    """A reply that streams for longer than the idle timeout is finished and stored complete;
    only then, with no client event, does the idle timeout end the session."""
    session = sid()
    words = " ".join(f"w{i}" for i in range(25))  # ~2.6 s of reply, idle timeout 1.5 s
    async with (
        rt_client(limits) as client,
        client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": session}) as conn,
    ):
        ev = Events(conn)
        await start_reply(conn, ev, words, deltas=1)
        done = (await ev.wait("response.done", timeout=20))[0]
        assert done.response.status == "completed"
        errors = await ev.wait("error", timeout=10)
        assert errors[0].error.code == "session_idle_timeout"
        await await_closed(ev)
    stored = wait_messages(limits, session, 2)
    assert [(m["role"], m["content"], m["incomplete"]) for m in stored] == [
        ("user", words, False),
        ("assistant", f"Echo: {words}", False),
    ]


async def test_shutdown_stores_heard_reply_incomplete(slow_stub: StubLLMServer) -> None:
    """SIGTERM mid-reply: the drain stores the cut-off reply before the process exits; a new
    server on the same database serves it back."""
    name, url = create_database("cozy_rel_voice")
    try:
        first = start_cozy_server(slow_stub, {"DATABASE_URL": url})
        try:
            session = sid()
            async with (
                rt_client(first) as client,
                client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": session}) as conn,
            ):
                ev = Events(conn)
                await start_reply(conn, ev)
                await asyncio.to_thread(first.process.stop, 15.0)
                await await_closed(ev)
                heard = said(ev)
        finally:
            first.stop()
        second = start_cozy_server(slow_stub, {"DATABASE_URL": url})
        try:
            assert_cut_off(wait_messages(second, session, 2), heard)
        finally:
            second.stop()
    finally:
        drop_database(name)
