"""Voice (Realtime) responses get the same personalization as text turns, via the realtime harness."""

from __future__ import annotations

from typing import Any

from cozy_actors.config.models import ContextConfig
from cozy_actors.context import ContextService
from cozy_actors.engines.llm.base import LLMFinish, LLMTextDelta
from tests.unit.test_realtime_session import USER, open_session, send
from tests.unit.test_turn import ScriptedLLM

from .fakes import FakeKnowledge, FakeMemory, FakeProfile


async def test_realtime_response_gets_context(monkeypatch: Any) -> None:
    """The harness has no authenticated user, so only knowledge (not per-user) is fetched."""
    memory = FakeMemory(["The user likes green tea"])
    ctx = ContextService(
        ContextConfig(memory_timeout_s=0.1),
        knowledge=FakeKnowledge(["Tea is a drink."]),
        profile=FakeProfile(["Name: Ada"]),
        memory=memory,
    )
    import cozy_actors.realtime.session as session_mod

    original = session_mod.RealtimeDeps.__init__

    def with_context(self: Any, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        self.context = ctx

    monkeypatch.setattr(session_mod.RealtimeDeps, "__init__", with_context)
    llm = ScriptedLLM([[LLMTextDelta("ok"), LLMFinish("stop")]])
    ref, client, sup = await open_session(llm)
    send(ref, {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
    send(ref, {"type": "conversation.item.create", "item": USER})
    send(ref, {"type": "response.create"})
    await client.until("response.done")
    system = llm.requests[0].messages[0]["content"]
    assert "Tea is a drink." in system and "green tea" not in system
    assert memory.queries == []
    assert llm.requests[0].messages[-1]["content"] in ("hi", [{"type": "input_text", "text": "hi"}])
    await sup.shutdown(2)
