"""The Turn's tool loop, client tools, max iterations and failures, on a scripted model.

The scripted engine stands in for the external model service only; tools, catalog and Turn are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson

from cozy_actors.conversation.events import ServerToolCall, TextDelta, ToolCallDelta, TurnDone, TurnFailed
from cozy_actors.conversation.turn import Turn, TurnSpec
from cozy_actors.engines.llm.base import (
    LLMEngine,
    LLMEvent,
    LLMFinish,
    LLMRequest,
    LLMTextDelta,
    LLMToolCallDelta,
    LLMUsage,
)
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.engines.tools.builtin import BUILTIN_TOOLS
from cozy_core.engines import EngineError

Script = list[list[LLMEvent]]


class ScriptedLLM(LLMEngine):
    provider: ClassVar[str] = "scripted"

    def __init__(self, rounds: Script, *, repeat_last: bool = False) -> None:
        super().__init__("scripted", None)
        self.rounds = rounds
        self.repeat_last = repeat_last
        self.requests: list[LLMRequest] = []

    async def stream_chat(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        self.requests.append(LLMRequest(list(request.messages), request.tools))
        i = len(self.requests) - 1
        events = self.rounds[min(i, len(self.rounds) - 1)] if self.repeat_last else self.rounds[i]
        for ev in events:
            await asyncio.sleep(0)
            if isinstance(ev, Exception):
                raise ev
            yield ev


def call(index: int, cid: str, name: str, args: dict[str, Any]) -> list[LLMEvent]:
    raw = orjson.dumps(args).decode()
    half = len(raw) // 2
    return [LLMToolCallDelta(index, cid, name, raw[:half]), LLMToolCallDelta(index, None, None, raw[half:])]


def catalog() -> ToolCatalog:
    return ToolCatalog(BUILTIN_TOOLS.values(), allowed_side_effects=["read-only"])


async def run(spec: TurnSpec) -> list[Any]:
    return [ev async for ev in Turn(spec, catalog()).events()]


def spec(engine: LLMEngine, **kw: Any) -> TurnSpec:
    base: dict[str, Any] = {
        "engine": engine,
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "server_tools": dict(BUILTIN_TOOLS),
    }
    base.update(kw)
    return TurnSpec(**base)


async def test_plain_text_turn() -> None:
    llm = ScriptedLLM([[LLMTextDelta("Hel"), LLMTextDelta("lo"), LLMFinish("stop"), LLMUsage(5, 2)]])
    events = await run(spec(llm))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo"]
    done = events[-1]
    assert isinstance(done, TurnDone)
    assert (done.finish_reason, done.tool_iterations, done.usage.total_tokens) == ("stop", 0, 7)
    assert done.new_messages == [{"role": "assistant", "content": "Hello"}]
    assert {t["function"]["name"] for t in llm.requests[0].tools or []} == {"calculator", "get_current_time"}


async def test_server_tool_is_executed_and_fed_back() -> None:
    llm = ScriptedLLM(
        [
            [*call(0, "c1", "calculator", {"expression": "6*7"}), LLMFinish("tool_calls"), LLMUsage(3, 1)],
            [LLMTextDelta("It is 42."), LLMFinish("stop"), LLMUsage(9, 3)],
        ]
    )
    events = await run(spec(llm))
    assert not any(isinstance(e, ToolCallDelta) for e in events)
    (tool,) = [e for e in events if isinstance(e, ServerToolCall)]
    assert tool.name == "calculator" and tool.ok
    second = llm.requests[1].messages
    assert second[-2]["tool_calls"][0]["function"] == {"name": "calculator", "arguments": '{"expression":"6*7"}'}
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "c1"
    assert orjson.loads(second[-1]["content"])["result"] == 42
    done = events[-1]
    assert isinstance(done, TurnDone) and done.tool_iterations == 1 and done.usage.total_tokens == 16
    assert [m["role"] for m in done.new_messages] == ["assistant", "tool", "assistant"]


async def test_invalid_tool_arguments_become_a_tool_error_for_the_model() -> None:
    llm = ScriptedLLM(
        [
            [*call(0, "c1", "calculator", {"expr": "1"}), LLMFinish("tool_calls")],
            [LLMTextDelta("sorry"), LLMFinish("stop")],
        ]
    )
    events = await run(spec(llm))
    tool_msg = llm.requests[1].messages[-1]
    assert "invalid arguments" in orjson.loads(tool_msg["content"])["error"]
    assert isinstance(events[-1], TurnDone)


async def test_client_tool_is_streamed_out_and_ends_the_turn() -> None:
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    llm = ScriptedLLM([[*call(0, "w1", "get_weather", {"city": "Paris"}), LLMFinish("tool_calls")]])
    events = await run(spec(llm, client_tools=[weather]))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id == "w1" and deltas[0].name == "get_weather"
    assert all(d.id is None and d.name is None for d in deltas[1:])
    assert "".join(d.arguments for d in deltas) == '{"city":"Paris"}'
    done = events[-1]
    assert isinstance(done, TurnDone) and done.finish_reason == "tool_calls"
    assert len(llm.requests) == 1


async def test_client_tools_are_reindexed_after_server_calls() -> None:
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    llm = ScriptedLLM(
        [[*call(0, "s", "calculator", {"expression": "1"}), *call(1, "w", "get_weather", {}), LLMFinish("tool_calls")]]
    )
    events = await run(spec(llm, client_tools=[weather]))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert {d.index for d in deltas} == {0} and deltas[0].name == "get_weather"


async def test_max_tool_iterations_ends_with_marker() -> None:
    llm = ScriptedLLM([[*call(0, "c", "calculator", {"expression": "1+1"}), LLMFinish("tool_calls")]], repeat_last=True)
    events = await run(spec(llm, max_tool_iterations=3))
    done = events[-1]
    assert isinstance(done, TurnDone)
    assert done.stop_reason == "max_tool_iterations" and done.tool_iterations == 3
    assert len(llm.requests) == 4
    assert len([e for e in events if isinstance(e, ServerToolCall)]) == 3


async def test_tool_not_offered_is_never_executed() -> None:
    # The model asks for calculator although only get_current_time is offered: it is treated as a
    # client-side call (returned, not executed), never run on the server.
    offered = {"get_current_time": BUILTIN_TOOLS["get_current_time"]}
    llm = ScriptedLLM([[*call(0, "c", "calculator", {"expression": "1"}), LLMFinish("tool_calls")]])
    events = await run(spec(llm, server_tools=offered))
    assert not any(isinstance(e, ServerToolCall) for e in events)
    assert [t["function"]["name"] for t in llm.requests[0].tools or []] == ["get_current_time"]


async def test_engine_error_fails_the_turn_with_partial_text() -> None:
    llm = ScriptedLLM([[LLMTextDelta("par"), EngineError("boom", code="ENGINE_UPSTREAM_ERROR", status=502)]])
    events = await run(spec(llm))
    failed = events[-1]
    assert isinstance(failed, TurnFailed)
    assert (failed.code, failed.status, failed.partial_text) == ("ENGINE_UPSTREAM_ERROR", 502, "par")


async def test_llm_timeout() -> None:
    class Slow(ScriptedLLM):
        async def stream_chat(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
            await asyncio.sleep(5)
            yield LLMTextDelta("late")

    events = await run(spec(Slow([]), llm_timeout_s=0.05))
    assert isinstance(events[-1], TurnFailed) and events[-1].status == 504
