"""GA rules inside the session (issue 12): out-of-band responses are not stored or added, and a
spoken-or-text message followed by a client tool call is done before the call is announced."""

from __future__ import annotations

import asyncio

from cozy_actors.engines.llm.base import LLMFinish, LLMTextDelta, LLMUsage
from cozy_actors.storage import InMemoryConversationStore

from .test_realtime_session import USER, open_session, send
from .test_turn import ScriptedLLM, call

TEXT = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


async def test_out_of_band_response_is_neither_added_nor_stored() -> None:
    llm = ScriptedLLM([[LLMTextDelta("side answer"), LLMFinish("stop"), LLMUsage(3, 2)]])
    store = InMemoryConversationStore()
    ref, client, sup = await open_session(llm, store, persist_id="p-oob")
    send(ref, TEXT)
    send(ref, {"type": "conversation.item.create", "item": USER})
    await client.until("conversation.item.done")
    user_id = client.of("conversation.item.added")[0]["item"]["id"]
    ref_input = [{"type": "item_reference", "id": user_id}]
    send(ref, {"type": "response.create", "response": {"conversation": "none", "input": ref_input}})
    done = (await client.until("response.done"))[0]["response"]
    assert done["status"] == "completed" and done["conversation_id"] is None
    assert len(client.of("conversation.item.added")) == 1  # only the user's item
    assert [m["content"] for m in llm.requests[0].messages[1:]] == ["hi"]  # the referenced item
    send(ref, {"type": "conversation.item.retrieve", "item_id": done["output"][0]["id"]})
    assert (await client.until("error"))[0]["error"]["code"] == "item_not_found"
    await asyncio.sleep(0.05)
    stored = await store.load("p-oob", limit=10)
    assert stored is not None and [m["content"] for m in stored.messages] == ["hi"]  # the reply was not stored
    send(ref, {"type": "response.create", "response": {"input": [{"type": "item_reference", "id": "nope"}]}})
    err = (await client.until("error", 2))[1]["error"]
    assert err["code"] == "item_not_found" and err["param"] == "response.input[0].id"
    await sup.shutdown()


async def test_text_then_call_each_item_done_before_the_next_is_announced() -> None:
    llm = ScriptedLLM(
        [[LLMTextDelta("Checking."), *call(0, "c1", "get_weather", {"city": "Paris"}), LLMFinish("tool_calls")]]
    )
    ref, client, sup = await open_session(llm)
    send(
        ref,
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "tools": [WEATHER]}},
    )
    send(ref, {"type": "conversation.item.create", "item": USER})
    send(ref, {"type": "response.create"})
    done = (await client.until("response.done"))[0]["response"]
    assert [i["type"] for i in done["output"]] == ["message", "function_call"]
    seq = [e["type"] for e in client.events if e["type"].startswith("response.output_item")]
    assert seq == ["response.output_item.added", "response.output_item.done"] * 2
    added = [e for e in client.events if e["type"] == "conversation.item.added"]
    assert added[2]["previous_item_id"] == added[1]["item"]["id"]  # the call follows the message
    await sup.shutdown()
