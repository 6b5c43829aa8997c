"""Issue 10, item 5: soft delete reaches everything. Deleting a session ends its live realtime
call (WebSocket or WebRTC) with an `error` event (`session_deleted`), on this node and on another node of the cluster
(Redis broadcast); nothing more is appended to it, even by a node that had its ownership cached;
and what memory and profile learned from it is forgotten while other sessions' facts stay.

Two `cozy serve` nodes share one PostgreSQL database and one Redis prefix, like a cluster."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.accounts import db_fetch
from tests.e2e.realtime_support import Events
from tests.reliability.conftest import ADMIN_KEY, CozyServer, start_cozy_server
from tests.reliability.durable_support import TOKEN_MS, admin_http, await_closed, rt_client, start_reply, wait_messages
from tests.support.pg import create_database, drop_database, drop_redis_prefix, redis_prefix
from tests.support.procs import start_stub_llm, wait_http_ok
from tests.webrtc.rtc_client import Call

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[CozyServer, CozyServer]]:
    name, url = create_database("cozy_rel_delete")
    prefix = redis_prefix("rel-delete")
    env = {"DATABASE_URL": url, "COZY_REDIS_PREFIX": prefix}
    with start_stub_llm(token_ms=TOKEN_MS) as stub:
        a = start_cozy_server(stub, env)
        try:
            b = start_cozy_server(stub, env)
            try:
                wait_http_ok(f"{b.root_url}/ready", timeout=120, process=b.process)
                a.database = name  # for db_fetch (dropped below, not by stop())
                yield a, b
            finally:
                b.stop()
        finally:
            a.database = None
            a.stop()
            drop_database(name)
            drop_redis_prefix(prefix)


def sid() -> str:
    return f"rel-del-{uuid.uuid4().hex[:12]}"


def stored_count(server: CozyServer, session: str) -> int:
    """Messages in the table, deleted session or not (the API no longer shows them)."""
    return db_fetch(server, "SELECT count(*) AS n FROM messages WHERE session_id = $1", session)[0]["n"]


async def _delete_during_call(call_node: CozyServer, delete_node: CozyServer) -> None:
    session = sid()
    async with (
        rt_client(call_node) as client,
        client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": session}) as conn,
    ):
        ev = Events(conn)
        await start_reply(conn, ev, deltas=3)
        async with admin_http(delete_node) as http:
            r = await http.delete(f"/chat/sessions/{session}")
        assert r.status_code == 200 and r.json()["deleted"] is True, r.text
        errors = await ev.wait("error", timeout=10)
        assert errors[0].error.code == "session_deleted", errors[0]
        await await_closed(ev)
    await asyncio.sleep(1.0)  # anything still on its way would land by now
    # The user's words only: no reply was appended after the delete.
    assert await asyncio.to_thread(stored_count, delete_node, session) == 1


async def test_delete_ends_the_live_call_on_this_node(cluster: tuple[CozyServer, CozyServer]) -> None:
    a, _ = cluster
    await _delete_during_call(a, a)


async def test_delete_ends_the_live_call_on_another_node(cluster: tuple[CozyServer, CozyServer]) -> None:
    a, b = cluster
    await _delete_during_call(b, a)


async def test_delete_ends_a_live_webrtc_call_on_another_node(cluster: tuple[CozyServer, CozyServer]) -> None:
    a, b = cluster
    session = sid()
    call = Call(b.root_url, ADMIN_KEY, cozy_session_id=session)
    try:
        r = await call.offer()
        assert r.status_code == 200, r.text
        await call.connected()
        closed = asyncio.Event()
        call.pc.on("connectionstatechange", lambda: call.pc.connectionState == "closed" and closed.set())
        async with admin_http(a) as http:
            assert (await http.delete(f"/chat/sessions/{session}")).status_code == 200
        await asyncio.wait_for(closed.wait(), 15)  # the server hangs up
        assert any("session was deleted" in m for m in call.logs("warning")), call.messages
    finally:
        await call.close()


def test_a_node_with_cached_ownership_appends_nothing_after_delete(cluster: tuple[CozyServer, CozyServer]) -> None:
    a, b = cluster
    session = sid()
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}], "cozy": {"session_id": session}}
    r = httpx.post(f"{b.base_url}/chat/completions", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text  # b now trusts its cached ownership check for a minute
    assert httpx.delete(f"{a.base_url}/chat/sessions/{session}", headers=headers).status_code == 200
    r = httpx.post(f"{b.base_url}/chat/completions", json=body, headers=headers, timeout=30)
    assert r.status_code == 404, r.text
    assert stored_count(a, session) == 2


def test_memory_and_profile_forget_a_deleted_session(cluster: tuple[CozyServer, CozyServer]) -> None:
    a, _ = cluster
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    gone, kept = sid(), sid()
    for session, text in ((gone, "my name is Ada and I live in Paris"), (kept, "I like green tea")):
        body = {"model": "stub-model", "messages": [{"role": "user", "content": text}], "cozy": {"session_id": session}}
        assert httpx.post(f"{a.base_url}/chat/completions", json=body, headers=headers, timeout=30).status_code == 200
    wait_messages(a, kept, 2)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # memory/profile learn through the background queue
        facts = {r["fact"] for r in db_fetch(a, "SELECT fact FROM memory_facts")}
        if {"The user's name is Ada", "The user likes green tea"} <= facts:
            break
        time.sleep(0.2)
    assert {"The user's name is Ada", "The user lives in Paris", "The user likes green tea"} <= facts, facts
    assert httpx.delete(f"{a.base_url}/chat/sessions/{gone}", headers=headers).status_code == 200
    facts = {r["fact"] for r in db_fetch(a, "SELECT fact FROM memory_facts")}
    assert "The user likes green tea" in facts
    assert not facts & {"The user's name is Ada", "The user lives in Paris"}, facts
    profiles = [json.loads(r["attributes"]) for r in db_fetch(a, "SELECT attributes FROM user_profiles")]
    assert profiles == [{"likes": ["green tea"]}], profiles
