"""An MCP tool inside real turns: the Turn's tool loop (text chat) and a Realtime session, with a
scripted model standing in for the LLM and the example notes server over real stdio."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cozy_actors.conversation.events import ServerToolCall, ToolCallDelta, TurnDone
from cozy_actors.conversation.resolve import Resolved
from cozy_actors.conversation.turn import Turn, TurnSpec
from cozy_actors.engines.llm.base import LLMFinish, LLMTextDelta
from cozy_actors.engines.tools.audit import ToolCaller
from cozy_actors.engines.tools.engine import ToolsEngine
from cozy_actors.personalities import PersonalityStore
from cozy_actors.realtime.actor import RealtimeActor
from cozy_actors.realtime.session import RealtimeDeps
from cozy_actors.runtime import Supervisor, SupervisorPolicy
from cozy_actors.storage import InMemoryConversationStore
from tests.support.procs import REPO_ROOT
from tests.unit.test_realtime_session import USER, Client, send
from tests.unit.test_turn import ScriptedLLM, call

from .helpers import AuditSpy, notes_server, tools_config

pytestmark = pytest.mark.asyncio(loop_scope="module")
FACT = "The Model Context Protocol lets a model use tools served by separate processes."
ALLOWLIST = ["calculator", "notes_lookup_fact", "notes_wipe_notes"]  # wipe_notes: dangerous, never offered


@pytest.fixture(scope="module")
def notes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("notes") / "notes.json"
    path.write_text('["keep me"]')
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(notes_file: Path) -> Any:
    engine = ToolsEngine(tools_config(notes_server(env={"COZY_NOTES_FILE": str(notes_file)})), audit=AuditSpy())
    await engine.start()
    assert engine.health()["notes"]["ok"], engine.health()
    yield engine
    await engine.close()


def read(path: Path) -> str:
    return path.read_text()


def offered(engine: ToolsEngine, request_allowed: list[str] | None = None) -> dict[str, Any]:
    return {t.name: t for t in engine.catalog.offered(ALLOWLIST, request_allowed)}


async def test_text_turn_calls_the_mcp_tool_and_the_model_reads_its_result(engine: ToolsEngine) -> None:
    llm = ScriptedLLM(
        [
            [*call(0, "c1", "notes_lookup_fact", {"topic": "mcp"}), LLMFinish("tool_calls")],
            [*call(0, "c2", "notes_lookup_fact", {"topic": 42}), LLMFinish("tool_calls")],  # invalid
            [LLMTextDelta("Done."), LLMFinish("stop")],
        ]
    )
    tools = offered(engine)
    assert sorted(tools) == ["calculator", "notes_lookup_fact"]
    caller = ToolCaller("u1", "ann", "req-1", "sess-1")
    spec = TurnSpec(llm, "m", [{"role": "user", "content": "hi"}], server_tools=tools, caller=caller)
    events = [ev async for ev in Turn(spec, engine.catalog).events()]
    calls = [e for e in events if isinstance(e, ServerToolCall)]
    assert [(c.name, c.ok) for c in calls] == [("notes_lookup_fact", True), ("notes_lookup_fact", False)]
    assert isinstance(events[-1], TurnDone) and events[-1].tool_iterations == 2
    assert llm.requests[0].tools is not None
    assert [t["function"]["name"] for t in llm.requests[0].tools] == ["calculator", "notes_lookup_fact"]
    assert llm.requests[1].messages[-1] == {"role": "tool", "tool_call_id": "c1", "content": FACT}
    invalid = llm.requests[2].messages[-1]
    assert invalid["tool_call_id"] == "c2" and "invalid arguments: 42 is not of type 'string'" in invalid["content"]
    audit = [e for e in engine.audit.events if e["request_id"] == "req-1"]
    assert [(e["outcome"], e["detail"]["call_id"]) for e in audit] == [("ok", "c1"), ("error", "c2")]
    assert audit[0]["user_id"] == "u1" and audit[0]["detail"]["channel"] == "text"


async def test_a_tool_outside_the_allowlist_is_never_executed(engine: ToolsEngine, notes_file: Path) -> None:
    # The model asks for the dangerous tool (never offered) and for one the request did not allow:
    # neither runs on the server; they go back to the client as calls of its own tools.
    llm = ScriptedLLM(
        [
            [
                *call(0, "w1", "notes_wipe_notes", {}),
                *call(1, "l1", "notes_lookup_fact", {"topic": "mcp"}),
                LLMFinish("tool_calls"),
            ]
        ]
    )
    tools = offered(engine, request_allowed=["calculator"])
    assert list(tools) == ["calculator"]
    before = len(engine.audit.events)
    spec = TurnSpec(llm, "m", [{"role": "user", "content": "wipe"}], server_tools=tools)
    events = [ev async for ev in Turn(spec, engine.catalog).events()]
    assert not [e for e in events if isinstance(e, ServerToolCall)]
    assert {e.name for e in events if isinstance(e, ToolCallDelta) and e.name} == {
        "notes_wipe_notes",
        "notes_lookup_fact",
    }
    assert isinstance(events[-1], TurnDone) and events[-1].finish_reason == "tool_calls"
    assert [t["function"]["name"] for t in llm.requests[0].tools or []] == ["calculator"]
    assert read(notes_file) == '["keep me"]' and len(engine.audit.events) == before


async def test_realtime_session_calls_the_mcp_tool(engine: ToolsEngine) -> None:
    personalities = PersonalityStore(REPO_ROOT / "personalities", "assistant")
    personalities.reload()
    personality = personalities.get("assistant")
    assert personality is not None
    llm = ScriptedLLM(
        [
            [*call(0, "rt1", "notes_lookup_fact", {"topic": "water"}), LLMFinish("tool_calls")],
            [LLMTextDelta("It boils at 100."), LLMFinish("stop")],
        ]
    )
    resolved = Resolved(personality, "m", llm, offered(engine))
    deps = RealtimeDeps(catalog=engine.catalog, store=InMemoryConversationStore())
    client = Client()
    sup = Supervisor(SupervisorPolicy(max_duration_s=None, idle_timeout_s=None))
    memo: dict[str, Any] = {"user_id": "voice-user"}  # as RealtimeService.open leaves it

    def factory(aid: str) -> RealtimeActor:
        return RealtimeActor(aid, resolved=resolved, deps=deps, emit=client.emit, persist_id=None, memo=memo)

    ref = await sup.spawn(factory, "rt-mcp")
    try:
        await client.until("session.created")
        send(ref, {"type": "conversation.item.create", "item": USER})
        send(ref, {"type": "response.create", "response": {"output_modalities": ["text"]}})
        done = (await client.until("response.done", timeout=10))[0]
        assert done["response"]["status"] == "completed"
        assert done["response"]["output"][0]["content"][0]["text"] == "It boils at 100."
        assert not client.of("response.function_call_arguments.delta")  # a server tool: not the client's
        tool_msg = llm.requests[1].messages[-1]
        assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "rt1"
        assert tool_msg["content"] == "Water boils at 100 degrees Celsius at sea level."
        event = next(e for e in engine.audit.events if e["detail"].get("call_id") == "rt1")
        assert event["outcome"] == "ok" and event["user_id"] == "voice-user"
        assert event["detail"]["channel"] == "realtime" and event["detail"]["session_id"] == "rt-mcp"
    finally:
        await sup.shutdown(2)
        await asyncio.sleep(0)
