"""ConversationActor on the real runtime: history, busy sessions, cancel, crash recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cozy_actors.config import load_settings
from cozy_actors.conversation.actor import ConversationActor, ConversationDeps, StartTurn, TurnRequest
from cozy_actors.conversation.chat import ChatRequest, ChatService
from cozy_actors.conversation.events import TextDelta, TurnDone, TurnFailed
from cozy_actors.engines.llm.base import LLMFinish, LLMTextDelta
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.engines.tools.builtin import BUILTIN_TOOLS
from cozy_actors.personalities import PersonalityStore
from cozy_actors.runtime import ActorCrashed, Supervisor, SupervisorPolicy
from cozy_actors.storage import InMemoryConversationStore
from cozy_core.errors import CozyError

from .test_turn import ScriptedLLM

ROOT = Path(__file__).resolve().parents[2]


def personalities() -> PersonalityStore:
    store = PersonalityStore(ROOT / "personalities", "assistant")
    store.reload()
    return store


def request(llm: ScriptedLLM, text: str) -> TurnRequest:
    return TurnRequest(
        personality=personalities().get("assistant"),  # type: ignore[arg-type]
        engine=llm,
        model="m",
        messages=[{"role": "user", "content": text}],
    )


async def drain(handle: Any) -> list[Any]:
    return [e async for e in handle]


@pytest.fixture()
async def sup() -> Any:
    s = Supervisor(SupervisorPolicy(max_duration_s=None, idle_timeout_s=None, backoff_initial_s=0.01))
    yield s
    await s.shutdown(2)


def deps(store: InMemoryConversationStore) -> ConversationDeps:
    return ConversationDeps(catalog=ToolCatalog(BUILTIN_TOOLS.values()), store=store)


async def test_session_history_is_kept_and_persisted(sup: Supervisor) -> None:
    store = InMemoryConversationStore()
    ref = await sup.spawn(lambda aid: ConversationActor(aid, deps(store), session_id="s1"), "s1")
    llm = ScriptedLLM([[LLMTextDelta("one"), LLMFinish("stop")], [LLMTextDelta("two"), LLMFinish("stop")]])
    await drain(await ref.ask(StartTurn(request(llm, "first")), timeout=2))
    await asyncio.sleep(0.01)
    await drain(await ref.ask(StartTurn(request(llm, "second")), timeout=2))
    prompt = llm.requests[1].messages
    assert prompt[0]["role"] == "system" and prompt[0]["content"].startswith("You are Cozy")
    assert [m["content"] for m in prompt[1:]] == ["first", "one", "second"]
    await asyncio.sleep(0.01)
    stored = await store.load("s1", limit=10)
    assert stored is not None and [m["content"] for m in stored.messages] == ["first", "one", "second", "two"]


async def test_crash_restart_reloads_history_from_store(sup: Supervisor) -> None:
    store = InMemoryConversationStore()
    ref = await sup.spawn(lambda aid: ConversationActor(aid, deps(store), session_id="s2"), "s2")
    llm = ScriptedLLM([[LLMTextDelta("ok"), LLMFinish("stop")]], repeat_last=True)
    await drain(await ref.ask(StartTurn(request(llm, "remember me")), timeout=2))
    await asyncio.sleep(0.01)
    old = ref.instance
    with pytest.raises(ActorCrashed):
        await ref.ask("not a message", timeout=2)  # unknown message: the handler raises -> crash
    await drain(await ref.ask(StartTurn(request(llm, "again")), timeout=2))
    assert ref.instance is not old and ref.restarts == 1
    assert [m["content"] for m in llm.requests[-1].messages[1:]] == ["remember me", "ok", "again"]


async def test_busy_session_refuses_second_turn_and_cancel_stops_it(sup: Supervisor) -> None:
    store = InMemoryConversationStore()
    ref = await sup.spawn(lambda aid: ConversationActor(aid, deps(store), session_id="s3"), "s3")

    class Endless(ScriptedLLM):
        async def stream_chat(self, req: Any) -> Any:
            while True:
                await asyncio.sleep(0.01)
                yield LLMTextDelta("la ")

    handle = await ref.ask(StartTurn(request(Endless([]), "sing")), timeout=2)
    busy = await ref.ask(StartTurn(request(Endless([]), "again")), timeout=2)
    assert isinstance(busy, CozyError) and busy.code == "RESOURCE_SESSION_BUSY" and busy.status == 409
    events: list[Any] = []
    async for ev in handle:
        events.append(ev)
        if len(events) == 3:
            handle.cancel()
    assert isinstance(events[-1], TurnDone) and events[-1].stop_reason == "cancelled"
    await asyncio.sleep(0.02)
    stored = await store.load("s3", limit=10)
    assert stored is not None and stored.messages[-1]["content"].startswith("la la")


async def test_chat_service_ephemeral_actor_stops_after_turn(sup: Supervisor) -> None:
    settings = load_settings(ROOT / "config", env={})
    llm = ScriptedLLM([[LLMTextDelta("hi"), LLMFinish("stop")]])

    class OneModel:
        def choose(self, *a: Any) -> str:
            return "m"

        async def engine(self, model_id: str) -> ScriptedLLM:
            return llm

    svc = ChatService(
        app=settings.app,
        supervisor=sup,
        personalities=personalities(),
        llms=OneModel(),  # type: ignore[arg-type]
        catalog=ToolCatalog(BUILTIN_TOOLS.values()),
        store=InMemoryConversationStore(),
    )
    handle = await svc.start_turn(ChatRequest(messages=[{"role": "user", "content": "x"}]))
    events = await drain(handle)
    assert isinstance(events[0], TextDelta) and isinstance(events[-1], TurnDone)
    for _ in range(50):
        if len(sup.directory) == 0:
            break
        await asyncio.sleep(0.01)
    assert len(sup.directory) == 0
    with pytest.raises(CozyError) as exc:
        await svc.start_turn(ChatRequest(messages=[{"role": "user", "content": "x"}], personality_id="nope"))
    assert exc.value.status == 404
    with pytest.raises(CozyError) as exc:
        await svc.start_turn(ChatRequest(messages=[{"role": "tool", "content": "x"}]))
    assert exc.value.status == 400 and "tool_call_id" in exc.value.message


async def test_session_end_fails_running_turn(sup: Supervisor) -> None:
    store = InMemoryConversationStore()
    ref = await sup.spawn(lambda aid: ConversationActor(aid, deps(store), session_id="s4"), "s4")

    class Slow(ScriptedLLM):
        async def stream_chat(self, req: Any) -> Any:
            await asyncio.sleep(10)
            yield LLMTextDelta("never")

    handle = await ref.ask(StartTurn(request(Slow([]), "hello")), timeout=2)
    await ref.stop()
    events = await asyncio.wait_for(drain(handle), 2)
    assert isinstance(events[-1], TurnFailed) and events[-1].code == "RESOURCE_SESSION_ENDED"
