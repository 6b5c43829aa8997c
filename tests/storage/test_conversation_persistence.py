"""The conversation actor on the real PostgreSQL store: what a turn leaves in `messages` when it
completes, fails mid-stream, is cut off by a stop, and how a restarted actor reloads its history.
The model is scripted (the external service); runtime, actor, Turn, store and database are real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cozy_actors.conversation.actor import ConversationActor, ConversationDeps, StartTurn
from cozy_actors.conversation.events import TurnDone, TurnFailed
from cozy_actors.engines.llm.base import LLMFinish, LLMTextDelta, LLMUsage
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.engines.tools.builtin import BUILTIN_TOOLS
from cozy_actors.runtime import ActorCrashed, Supervisor, SupervisorPolicy
from cozy_actors.storage.db import Database
from cozy_actors.storage.sessions import PgSessionStore
from cozy_actors.storage.users import PgUserStore
from cozy_core.engines import EngineError
from cozy_core.errors import CozyError
from tests.unit.test_conversation import request
from tests.unit.test_turn import ScriptedLLM


@pytest.fixture
async def sup() -> AsyncIterator[Supervisor]:
    s = Supervisor(SupervisorPolicy(max_duration_s=None, idle_timeout_s=None, backoff_initial_s=0.01))
    yield s
    await s.shutdown(2)


@pytest.fixture
async def store(db: Database) -> PgSessionStore:
    return PgSessionStore(db)


async def spawn(sup: Supervisor, store: PgSessionStore, db: Database, sid: str) -> Any:
    owner = await PgUserStore(db).create(f"u-{sid}")
    await store.claim(sid, owner.id, "assistant")
    deps = ConversationDeps(catalog=ToolCatalog(BUILTIN_TOOLS.values()), store=store)
    return await sup.spawn(lambda aid: ConversationActor(aid, deps, session_id=sid), sid)


async def drain(handle: Any) -> list[Any]:
    return [e async for e in handle]


async def rows(store: PgSessionStore, db: Database, sid: str) -> list[Any]:
    owner = await db.fetchval("t", "SELECT user_id::text FROM sessions WHERE id = $1", sid)
    for _ in range(100):  # the assistant row is written when the actor hears the turn ended
        page = await store.messages(sid, owner, limit=50)
        if page.items and page.items[-1].role != "user":
            return page.items
        await asyncio.sleep(0.01)
    return page.items


async def test_completed_turn_stores_metadata(sup: Supervisor, store: PgSessionStore, db: Database) -> None:
    ref = await spawn(sup, store, db, "p1")
    llm = ScriptedLLM([[LLMTextDelta("hel"), LLMTextDelta("lo"), LLMUsage(7, 2), LLMFinish("stop")]])
    events = await drain(await ref.ask(StartTurn(request(llm, "hi")), timeout=2))
    assert isinstance(events[-1], TurnDone)
    user, assistant = await rows(store, db, "p1")
    assert (user.role, user.content, user.model, user.incomplete) == ("user", "hi", None, False)
    assert (assistant.content, assistant.model, assistant.prompt_tokens, assistant.completion_tokens) == (
        "hello",
        "m",
        7,
        2,
    )
    assert assistant.latency_ms is not None and assistant.latency_ms >= 0 and not assistant.incomplete


async def test_failed_mid_stream_keeps_user_and_partial(sup: Supervisor, store: PgSessionStore, db: Database) -> None:
    ref = await spawn(sup, store, db, "p2")
    llm = ScriptedLLM([[LLMTextDelta("half an "), LLMTextDelta("answer"), EngineError("upstream broke off")]])
    events = await drain(await ref.ask(StartTurn(request(llm, "tell me")), timeout=2))
    assert isinstance(events[-1], TurnFailed)
    user, partial = await rows(store, db, "p2")
    assert user.content == "tell me" and not user.incomplete
    assert (partial.role, partial.content, partial.incomplete) == ("assistant", "half an answer", True)


async def test_stop_mid_turn_keeps_partial(sup: Supervisor, store: PgSessionStore, db: Database) -> None:
    ref = await spawn(sup, store, db, "p3")

    class Endless(ScriptedLLM):
        async def stream_chat(self, req: Any) -> Any:
            while True:
                await asyncio.sleep(0.01)
                yield LLMTextDelta("la ")

    handle = await ref.ask(StartTurn(request(Endless([]), "sing")), timeout=2)
    seen = 0
    async for _ev in handle:
        seen += 1
        if seen == 3:
            await ref.stop()
    user, partial = await rows(store, db, "p3")
    assert user.content == "sing"
    assert partial.incomplete and partial.content.startswith("la la")


async def test_restarted_actor_reloads_history_from_postgres(
    sup: Supervisor, store: PgSessionStore, db: Database
) -> None:
    ref = await spawn(sup, store, db, "p4")
    llm = ScriptedLLM([[LLMTextDelta("noted"), LLMFinish("stop")]], repeat_last=True)
    await drain(await ref.ask(StartTurn(request(llm, "my name is Ada")), timeout=2))
    await rows(store, db, "p4")
    with pytest.raises(ActorCrashed):
        await ref.ask("not a message", timeout=2)  # crash -> the runtime restarts it, on_start reloads
    await drain(await ref.ask(StartTurn(request(llm, "who am I")), timeout=2))
    assert ref.restarts == 1
    assert [m["content"] for m in llm.requests[-1].messages[1:]] == ["my name is Ada", "noted", "who am I"]


async def test_store_down_refuses_the_turn(sup: Supervisor, store: PgSessionStore, db: Database) -> None:
    ref = await spawn(sup, store, db, "p5")
    llm = ScriptedLLM([[LLMTextDelta("ok"), LLMFinish("stop")]], repeat_last=True)
    await drain(await ref.ask(StartTurn(request(llm, "first")), timeout=2))
    await rows(store, db, "p5")
    await db.close()  # the database goes away while the conversation is live
    result = await ref.ask(StartTurn(request(llm, "lost?")), timeout=2)
    assert isinstance(result, CozyError) and result.code == "STORAGE_UNAVAILABLE" and result.status == 503
    assert ref.alive and ref.restarts == 0  # the conversation survives; the client retries later
