"""Realtime conversation items held compactly: the wire form is exactly what was sent or announced,
and a long call's items cost a few hundred bytes each (issue 10's soak: RSS per session-hour)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from cozy_actors.config.limits import RealtimeLimitsConfig
from cozy_actors.conversation.resolve import Resolved
from cozy_actors.engines.llm.base import LLMEngine, LLMFinish, LLMTextDelta, LLMUsage
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.engines.tools.builtin import BUILTIN_TOOLS
from cozy_actors.personalities import PersonalityStore
from cozy_actors.realtime.actor import ClientEvent, RealtimeActor
from cozy_actors.realtime.items import Item, Items, validate_item
from cozy_actors.realtime.session import RealtimeDeps
from cozy_actors.runtime import Supervisor, SupervisorPolicy
from cozy_actors.storage import InMemoryConversationStore

ROOT = Path(__file__).resolve().parents[2]

CLIENT_ITEMS: list[dict[str, Any]] = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    {"content": [{"text": "keys in another order", "type": "input_text"}], "role": "user", "type": "message"},
    {"id": "item_x", "object": "realtime.item", "status": "incomplete", "type": "message", "role": "assistant",
     "content": [{"type": "output_audio", "transcript": "said"}, {"type": "text", "text": "two parts"}]},
    {"type": "message", "role": "user", "content": [
        {"type": "input_audio", "audio": "AAAA", "transcript": "audio before transcript"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
        {"type": "input_audio", "transcript": None, "audio": "AAAA"},
        {"type": "input_audio", "transcript": None},
    ]},
    {"type": "message", "role": "system", "content": [{"type": "input_text", "text": ""}], "name": "odd"},
    {"type": "function_call", "name": "lookup", "arguments": "{}", "call_id": "call_1"},
    {"type": "function_call", "name": "lookup"},
    {"type": "function_call_output", "call_id": "call_1", "output": "42", "id": "item_out"},
]  # fmt: skip


@pytest.mark.parametrize("raw", CLIENT_ITEMS)
def test_wire_form_is_the_normalized_client_item_byte_for_byte(raw: dict[str, Any]) -> None:
    given = {**raw, "id": raw.get("id", "item_given")}  # fixed ids, so the expected bytes are known
    if raw["type"] == "function_call":
        given.setdefault("call_id", "call_given")
    normalized = {k: v for k, v in given.items() if v is not None}  # what validate_item announced before
    normalized["object"] = "realtime.item"
    normalized.setdefault("status", "completed")
    if raw["type"] == "function_call":
        normalized.setdefault("arguments", "")
    item = validate_item(given)
    assert orjson.dumps(item.wire()) == orjson.dumps(normalized)
    assert item.wire() is not item.wire()  # a new dict each time: an event cannot edit the item


def test_audio_kept_for_the_newest_items_only_and_transcripts_filled_in() -> None:
    items = Items(keep_audio_items=2)
    for i in range(4):
        items.add(Item.message(f"item_{i}", "user", (("input_audio", None),)))
        items.attach_audio(f"item_{i}", f"AUDIO{i}")
        items.get(f"item_{i}").set_transcript(f"words {i}")  # type: ignore[union-attr]
    items.add(Item.message("item_t", "user", (("input_text", "typed"),)))
    parts = [items.get(f"item_{i}").wire()["content"] for i in range(4)]  # type: ignore[union-attr]
    assert [p[0].get("audio") for p in parts] == [None, None, "AUDIO2", "AUDIO3"]
    assert [p[0]["transcript"] for p in parts] == ["words 0", "words 1", "words 2", "words 3"]
    assert list(parts[0][0]) == ["type", "transcript"] and list(parts[3][0]) == ["type", "transcript", "audio"]
    assert [m["content"] for m in items.messages()] == ["words 0", "words 1", "words 2", "words 3", "typed"]


class ReplyLLM(LLMEngine):
    """A short reply each turn, nothing recorded (so only the session's own state grows)."""

    provider: ClassVar[str] = "reply"

    def __init__(self) -> None:
        super().__init__("reply", None)

    async def stream_chat(self, request: Any) -> Any:
        for word in ("Sure, ", "here is ", "a reply of ", "an ordinary ", "length for you."):
            await asyncio.sleep(0)
            yield LLMTextDelta(word)
        yield LLMFinish("stop")
        yield LLMUsage(7, 5)


async def test_a_long_call_costs_a_few_hundred_bytes_per_item() -> None:
    """240 text turns (480 items, under max_items) through the session: the heap it keeps per item.
    Held as wire dicts (fb699e5) it was 826 B; a 50-session soak needs well under ~600."""
    personalities = PersonalityStore(ROOT / "personalities", "assistant")
    personalities.reload()
    p = personalities.get("assistant")
    assert p is not None
    deps = RealtimeDeps(
        catalog=ToolCatalog(BUILTIN_TOOLS.values()),
        store=InMemoryConversationStore(),
        limits=RealtimeLimitsConfig(max_items=500),
    )
    resolved = Resolved(p, "m", ReplyLLM(), dict(BUILTIN_TOOLS))
    done = asyncio.Event()

    def emit(event: dict[str, Any]) -> None:
        if event["type"] in ("session.created", "response.done"):
            done.set()

    sup = Supervisor(SupervisorPolicy(max_duration_s=None, idle_timeout_s=None))
    ref = await sup.spawn(
        lambda aid: RealtimeActor(
            aid, resolved=resolved, deps=deps, emit=emit, persist_id=None, restarted=False, memo={}
        ),
        "s1",
    )
    await asyncio.wait_for(done.wait(), 5)
    ref.tell(ClientEvent({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}))

    async def turn(i: int) -> None:
        done.clear()
        text = f"Could you tell me about the weather in town number {i} today?"
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        ref.tell(ClientEvent({"type": "conversation.item.create", "item": item}))
        ref.tell(ClientEvent({"type": "response.create"}))
        await asyncio.wait_for(done.wait(), 5)

    for i in range(10):  # warm-up: caches, the first allocations of every path
        await turn(i)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10, 250):
            await turn(i)
        gc.collect()
        per_item = (tracemalloc.get_traced_memory()[0] - before) / 480
    finally:
        tracemalloc.stop()
        await sup.shutdown(2)
    assert per_item < 550, f"{per_item:.0f} B per item"
