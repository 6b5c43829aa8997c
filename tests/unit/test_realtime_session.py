"""Realtime session on the real runtime with a scripted model: event order, tools, cancel, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cozy_actors.config.limits import RealtimeLimitsConfig
from cozy_actors.conversation.resolve import Resolved
from cozy_actors.engines.llm.base import LLMFinish, LLMTextDelta, LLMUsage
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.engines.tools.builtin import BUILTIN_TOOLS
from cozy_actors.personalities import PersonalityStore
from cozy_actors.realtime.actor import ClientEvent, RealtimeActor
from cozy_actors.realtime.session import RealtimeDeps
from cozy_actors.runtime import Supervisor, SupervisorPolicy
from cozy_actors.storage import InMemoryConversationStore

from .test_turn import ScriptedLLM, call

ROOT = Path(__file__).resolve().parents[2]


class Client:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.new = asyncio.Event()

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.new.set()

    async def until(self, etype: str, count: int = 1, timeout: float = 3) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.of(etype)) < count:
                self.new.clear()
                await self.new.wait()
        return self.of(etype)

    def of(self, etype: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == etype]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


async def open_session(
    llm: ScriptedLLM,
    store: InMemoryConversationStore | None = None,
    persist_id: str | None = None,
    limits: RealtimeLimitsConfig | None = None,
) -> tuple[Any, Client, Supervisor]:
    personalities = PersonalityStore(ROOT / "personalities", "assistant")
    personalities.reload()
    p = personalities.get("assistant")
    assert p is not None
    resolved = Resolved(p, "m", llm, dict(BUILTIN_TOOLS))
    deps = RealtimeDeps(
        catalog=ToolCatalog(BUILTIN_TOOLS.values()),
        store=store or InMemoryConversationStore(),
        limits=limits or RealtimeLimitsConfig(),
    )
    client = Client()
    sup = Supervisor(SupervisorPolicy(max_duration_s=None, idle_timeout_s=None))
    memo: dict[str, Any] = {}
    incarnations = [0]

    def factory(aid: str) -> RealtimeActor:  # as RealtimeService builds it
        incarnations[0] += 1
        return RealtimeActor(
            aid,
            resolved=resolved,
            deps=deps,
            emit=client.emit,
            persist_id=persist_id,
            restarted=incarnations[0] > 1,
            memo=memo,
        )

    ref = await sup.spawn(factory, "s1")
    await client.until("session.created")
    return ref, client, sup


def send(ref: Any, event: dict[str, Any], control: bool = False) -> None:
    ref.tell(ClientEvent(event), control=control)


USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}


async def test_text_response_event_order_and_history() -> None:
    llm = ScriptedLLM([[LLMTextDelta("Hel"), LLMTextDelta("lo"), LLMFinish("stop"), LLMUsage(7, 2)]])
    store = InMemoryConversationStore()
    ref, client, sup = await open_session(llm, store, persist_id="p1")
    send(ref, {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
    send(ref, {"type": "conversation.item.create", "item": USER})
    send(ref, {"type": "response.create"})
    done = (await client.until("response.done"))[0]
    assert client.types()[1:] == [
        "session.updated",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert done["response"]["status"] == "completed"
    usage = done["response"]["usage"]
    assert {k: usage[k] for k in ("total_tokens", "input_tokens", "output_tokens")} == {
        "total_tokens": 9,
        "input_tokens": 7,
        "output_tokens": 2,
    }
    assert usage["input_token_details"]["text_tokens"] == 7 and usage["output_token_details"]["audio_tokens"] == 0
    assert done["response"]["output"][0]["content"] == [{"type": "output_text", "text": "Hello"}]
    assert client.of("response.output_text.done")[0]["text"] == "Hello"
    await asyncio.sleep(0.05)
    stored = await store.load("p1", limit=10)
    assert stored is not None and [m["content"] for m in stored.messages] == ["hi", "Hello"]
    # The next response sees the first exchange.
    llm.rounds.append([LLMTextDelta("again"), LLMFinish("stop")])
    send(ref, {"type": "response.create", "response": {"instructions": "Be brief."}})
    await client.until("response.done", 2)
    prompt = llm.requests[1].messages
    assert prompt[0]["content"].endswith("Be brief.")
    assert [m["content"] for m in prompt[1:]] == ["hi", "Hello"]
    await sup.shutdown(2)


async def test_client_function_call_and_output_round_trip() -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    llm = ScriptedLLM(
        [
            [*call(0, "call_9", "get_weather", {"city": "Paris"}), LLMFinish("tool_calls")],
            [LLMTextDelta("Sunny."), LLMFinish("stop")],
        ]
    )
    ref, client, sup = await open_session(llm)
    send(
        ref, {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "tools": [tool]}}
    )
    send(ref, {"type": "conversation.item.create", "item": USER})
    send(ref, {"type": "response.create"})
    await client.until("response.done")
    args_done = client.of("response.function_call_arguments.done")[0]
    assert (args_done["call_id"], args_done["name"], args_done["arguments"]) == (
        "call_9",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert "".join(e["delta"] for e in client.of("response.function_call_arguments.delta")) == '{"city":"Paris"}'
    assert client.of("response.done")[0]["response"]["output"][0]["type"] == "function_call"
    send(
        ref,
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_9", "output": '{"sky":"clear"}'},
        },
    )
    send(ref, {"type": "response.create"})
    await client.until("response.done", 2)
    msgs = llm.requests[1].messages
    assert msgs[-2]["tool_calls"][0]["id"] == "call_9" and msgs[-1] == {
        "role": "tool",
        "tool_call_id": "call_9",
        "content": '{"sky":"clear"}',
    }
    await sup.shutdown(2)


async def test_server_tool_runs_inside_the_response() -> None:
    llm = ScriptedLLM(
        [
            [*call(0, "c1", "calculator", {"expression": "6*7"}), LLMFinish("tool_calls")],
            [LLMTextDelta("42"), LLMFinish("stop")],
        ]
    )
    ref, client, sup = await open_session(llm)
    send(ref, {"type": "conversation.item.create", "item": USER})
    send(ref, {"type": "response.create", "response": {"output_modalities": ["text"]}})
    done = (await client.until("response.done"))[0]
    assert not client.of("response.function_call_arguments.delta")
    assert done["response"]["output"][0]["content"][0]["text"] == "42"
    await sup.shutdown(2)


async def test_cancel_stops_deltas_and_reports_cancelled() -> None:
    class Endless(ScriptedLLM):
        async def stream_chat(self, request: Any) -> Any:
            self.requests.append(request)
            while True:
                await asyncio.sleep(0.005)
                yield LLMTextDelta("la ")

    ref, client, sup = await open_session(Endless([]))
    send(ref, {"type": "conversation.item.create", "item": USER})
    send(ref, {"type": "response.create", "response": {"output_modalities": ["text"]}})
    await client.until("response.output_text.delta", 3)
    send(ref, {"type": "response.create"})  # a second one while active: error, session unaffected
    err = (await client.until("error"))[0]
    assert err["error"]["code"] == "conversation_already_has_active_response"
    send(ref, {"type": "response.cancel", "event_id": "c1"}, control=True)
    done = (await client.until("response.done"))[0]
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    after = client.types()[client.types().index("response.done") :]
    n = len(client.of("response.output_text.delta"))
    await asyncio.sleep(0.05)
    assert len(client.of("response.output_text.delta")) == n and after == ["response.done"]
    await sup.shutdown(2)


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"type": "nope"}, "invalid_event"),
        ({"type": "input_audio_buffer.append", "audio": "@@@"}, "invalid_audio"),
        ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty"),
        ({"type": "conversation.item.create", "item": {"type": "message", "role": "robot"}}, "invalid_value"),
        ({"type": "conversation.item.delete", "item_id": "missing"}, "item_not_found"),
        ({"type": "conversation.item.truncate", "item_id": "missing", "audio_end_ms": 1}, "item_not_found"),
        (
            {"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/wav"}}}}},
            "invalid_value",
        ),
        ({"type": "response.cancel"}, "response_cancel_not_active"),
    ],
)
async def test_bad_events_get_error_and_session_continues(event: dict[str, Any], code: str) -> None:
    ref, client, sup = await open_session(ScriptedLLM([[LLMTextDelta("ok"), LLMFinish("stop")]]))
    send(ref, {**event, "event_id": "client_7"})
    err = (await client.until("error"))[0]
    assert err["error"]["code"] == code and err["error"]["event_id"] == "client_7"
    send(ref, {"type": "conversation.item.create", "item": USER})
    await client.until("conversation.item.done")
    await sup.shutdown(2)


async def test_audio_commit_creates_user_item() -> None:
    import base64

    ref, client, sup = await open_session(ScriptedLLM([]))
    send(ref, {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}})
    send(ref, {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0\0" * 4800).decode()})
    send(ref, {"type": "input_audio_buffer.commit"})
    committed = (await client.until("input_audio_buffer.committed"))[0]
    added = (await client.until("conversation.item.added"))[0]
    assert added["item"]["id"] == committed["item_id"] and added["item"]["content"][0]["type"] == "input_audio"
    send(ref, {"type": "conversation.item.retrieve", "item_id": committed["item_id"]})
    got = (await client.until("conversation.item.retrieved"))[0]
    assert len(base64.b64decode(got["item"]["content"][0]["audio"])) == 9600
    await sup.shutdown(2)


async def test_resume_loads_history_as_items() -> None:
    store = InMemoryConversationStore()
    await store.append(
        "p9", "assistant", [{"role": "user", "content": "my name is Ada"}, {"role": "assistant", "content": "Hi Ada"}]
    )
    llm = ScriptedLLM([[LLMTextDelta("yes"), LLMFinish("stop")]])
    ref, client, sup = await open_session(llm, store, persist_id="p9")
    send(ref, {"type": "response.create", "response": {"output_modalities": ["text"]}})
    await client.until("response.done")
    assert [m["content"] for m in llm.requests[0].messages[1:]] == ["my name is Ada", "Hi Ada"]
    await sup.shutdown(2)


async def test_crashed_session_restarts_and_keeps_its_config() -> None:
    llm = ScriptedLLM([[LLMTextDelta("ok"), LLMFinish("stop")]])
    ref, client, sup = await open_session(llm)
    send(ref, {"type": "session.update", "session": {"type": "realtime", "instructions": "Be terse."}})
    await client.until("session.updated")
    ref.tell(object())  # an unexpected message makes the handler raise: the actor crashes
    err = (await client.until("error"))[0]
    assert err["error"]["code"] == "session_restarted" and ref.restarts == 1
    assert len(client.of("session.created")) == 1  # the client's session carries on, not a new one
    send(ref, {"type": "conversation.item.create", "item": USER})
    send(ref, {"type": "response.create", "response": {"output_modalities": ["text"]}})
    await client.until("response.done")
    assert llm.requests[0].messages[0]["content"].endswith("Be terse.")
    await sup.shutdown(2)


async def test_items_held_in_memory_are_bounded_by_config() -> None:
    """api.realtime.max_items: a long call's conversation stops growing; the oldest item leaves first."""
    ref, client, sup = await open_session(ScriptedLLM([]), limits=RealtimeLimitsConfig(max_items=3))
    for i in range(4):
        item = {**USER, "id": f"item_{i}", "content": [{"type": "input_text", "text": f"hi {i}"}]}
        send(ref, {"type": "conversation.item.create", "item": item})
    await client.until("conversation.item.done", 4)
    send(ref, {"type": "conversation.item.retrieve", "item_id": "item_0"})
    send(ref, {"type": "conversation.item.retrieve", "item_id": "item_1"})
    err = (await client.until("error"))[0]
    assert err["error"]["code"] == "item_not_found", err
    got = (await client.until("conversation.item.retrieved"))[0]
    assert got["item"]["id"] == "item_1"
    await sup.shutdown()


async def test_model_sees_the_personalitys_recent_history_not_the_whole_call() -> None:
    """As text chat: memory.max_history_messages (50 for `assistant`) past messages, then the turn."""
    llm = ScriptedLLM([[LLMTextDelta("ok"), LLMFinish("stop")]])
    ref, client, sup = await open_session(llm)
    send(ref, {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
    for i in range(70):
        role, part = ("user", "input_text") if i % 2 == 0 else ("assistant", "output_text")
        item = {"type": "message", "role": role, "content": [{"type": part, "text": f"m{i}"}]}
        send(ref, {"type": "conversation.item.create", "item": item})
    now = {**USER, "content": [{"type": "input_text", "text": "now"}]}
    send(ref, {"type": "conversation.item.create", "item": now})
    send(ref, {"type": "response.create"})
    await client.until("response.done")
    sent = llm.requests[0].messages
    assert sent[0]["role"] == "system" and sent[-1]["content"] == "now"
    past = [m for m in sent[1:-1] if m["role"] != "system"]
    assert len(past) == 50 and past[0]["role"] == "user" and past[-1]["content"] == "m69", past[:2]
    await sup.shutdown()
