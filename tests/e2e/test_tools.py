"""Tools end to end: client-declared tools come back as tool_calls; built-in tools run in the
server's loop (bounded by max_tool_iterations); the offered set follows personality and request."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai

from tests.e2e.conftest import MAX_TOOL_ITERATIONS, STUB_MODEL, sse_events, tool_names, user
from tests.support.procs import StubLLMServer

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL_WEATHER = 'CALL get_weather {"city":"Paris"}'
CALL_ID = re.compile(r"^call_\d+$")  # the stub's ids; a repeated id would read call_5call_5


def cozy_of(obj: Any) -> dict[str, Any]:
    assert obj.model_extra is not None and "cozy" in obj.model_extra, obj
    return obj.model_extra["cozy"]


def tool_result(content: str, prefix: str) -> dict[str, Any]:
    """Parse `Tool <name> returned: <json>` from the stub's tool summary line."""
    assert content.startswith(prefix), content
    return json.loads(content[len(prefix) :])


# --- client-declared tools --------------------------------------------------------------------
def test_client_tool_call_non_stream(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    reply = client.chat.completions.create(model=STUB_MODEL, messages=user(CALL_WEATHER), tools=[WEATHER_TOOL])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert CALL_ID.match(call.id), call.id
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"Paris"}'
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert cozy_of(reply)["tool_iterations"] == 0
    (sent,) = upstream.requests()
    assert "get_weather" in tool_names(sent)
    assert next(t for t in sent["tools"] if t["function"]["name"] == "get_weather") == WEATHER_TOOL


def test_client_tool_call_stream_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model=STUB_MODEL, messages=user(CALL_WEATHER), tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert CALL_ID.match(call.id), call.id  # id/name sent once: the SDK concatenates repeats
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"Paris"}'


def test_client_tool_call_raw_sse_fragments(http: httpx.Client) -> None:
    payload = {"model": STUB_MODEL, "messages": user(CALL_WEATHER), "tools": [WEATHER_TOOL], "stream": True}
    response = http.post("/v1/chat/completions", json=payload)
    assert response.status_code == 200, response.text
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    fragments = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert len(fragments) >= 2  # the stub splits the arguments into at least two pieces
    first, rest = fragments[0], fragments[1:]
    assert first["index"] == 0 and CALL_ID.match(first["id"]) and first["type"] == "function"
    assert first["function"]["name"] == "get_weather"
    for frag in rest:
        assert frag["index"] == 0
        assert "id" not in frag and "type" not in frag, frag
        assert set(frag["function"]) == {"arguments"}, frag
    assert "".join(f["function"]["arguments"] for f in fragments) == '{"city":"Paris"}'
    first_delta = chunks[0]["choices"][0]["delta"]
    assert first_delta["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:] if c["choices"])
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"]]
    assert finishes[-1] == "tool_calls" and all(f is None for f in finishes[:-1])


def test_client_tool_result_round_trip(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    first = client.chat.completions.create(model=STUB_MODEL, messages=user(CALL_WEATHER), tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    messages: list[dict[str, Any]] = [
        *user(CALL_WEATHER),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c":21}'},
    ]
    upstream.clear()
    reply = client.chat.completions.create(model=STUB_MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == 'Tool get_weather returned: {"temp_c":21}'
    assert reply.choices[0].message.tool_calls is None
    (sent,) = upstream.requests()
    assert sent["messages"][-2:] == messages[-2:]


def test_mixed_client_and_server_calls(http: httpx.Client, upstream: StubLLMServer) -> None:
    """Upstream asks for a built-in (index 0) and a client tool (index 1) at once: the client sees
    only its own call, renumbered to index 0, and the turn ends with tool_calls."""
    text = 'CALL calculator {"expression":"1+2"}\nCALL get_weather {"city":"Oslo"}'
    payload = {"model": STUB_MODEL, "messages": user(text), "tools": [WEATHER_TOOL]}
    reply = http.post("/v1/chat/completions", json=payload).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_weather"]
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"city":"Oslo"}'
    streamed = http.post("/v1/chat/completions", json={**payload, "stream": True})
    chunks = [json.loads(e) for e in sse_events(streamed.text)[:-1]]
    fragments = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert {f["index"] for f in fragments} == {0}
    assert [f["function"].get("name") for f in fragments if "id" in f] == ["get_weather"]
    assert "".join(f["function"]["arguments"] for f in fragments) == '{"city":"Oslo"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# --- server-side (built-in) tools ---------------------------------------------------------------
def test_server_tool_loop(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    reply = client.chat.completions.create(model=STUB_MODEL, messages=user('CALL calculator {"expression":"6*7"}'))
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None  # the server ran it: never shown to the client
    assert tool_result(choice.message.content, "Tool calculator returned: ")["result"] == 42
    meta = cozy_of(reply)
    assert meta["tool_iterations"] == 1
    assert meta["max_tool_iterations_reached"] is False and meta["stop_reason"] is None
    first, second = upstream.requests()
    assert sorted(tool_names(first)) == ["calculator", "get_current_time"]
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assistant, tool = second["messages"][len(first["messages"]) :]
    assert assistant["role"] == "assistant" and not assistant.get("content")
    (tc,) = assistant["tool_calls"]
    assert CALL_ID.match(tc["id"]) and tc["type"] == "function"
    assert tc["function"] == {"name": "calculator", "arguments": '{"expression":"6*7"}'}
    assert tool["role"] == "tool" and tool["tool_call_id"] == tc["id"]
    assert json.loads(tool["content"])["result"] == 42


def test_server_tool_loop_stream(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=STUB_MODEL, messages=user('CALL calculator {"expression":"6*7"}'), stream=True
        )
    )
    assert all(not c.choices or not c.choices[0].delta.tool_calls for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert tool_result(text, "Tool calculator returned: ")["result"] == 42
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert cozy_of(chunks[-1])["tool_iterations"] == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])


def test_server_parallel_tool_calls(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    text = 'CALL calculator {"expression":"2+3"}\nCALL get_current_time {"timezone":"UTC"}'
    reply = client.chat.completions.create(model=STUB_MODEL, messages=user(text))
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    calc_line, time_line = choice.message.content.split("\n")
    assert tool_result(calc_line, "Tool calculator returned: ")["result"] == 5
    assert "iso" in tool_result(time_line, "Tool get_current_time returned: ")
    assert cozy_of(reply)["tool_iterations"] == 1
    first, second = upstream.requests()
    assistant, *tools = second["messages"][len(first["messages"]) :]
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["calculator", "get_current_time"]
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert len(set(ids)) == 2
    assert [t["role"] for t in tools] == ["tool", "tool"]
    assert [t["tool_call_id"] for t in tools] == ids


def test_max_tool_iterations(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    reply = client.chat.completions.create(model=STUB_MODEL, messages=user('LOOP calculator {"expression":"1+1"}'))
    meta = cozy_of(reply)
    assert meta["max_tool_iterations_reached"] is True
    assert meta["tool_iterations"] == MAX_TOOL_ITERATIONS
    assert meta["stop_reason"] == "max_tool_iterations"
    choice = reply.choices[0]
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    requests = upstream.requests()
    assert len(requests) == MAX_TOOL_ITERATIONS + 1
    # Each round carries one more assistant tool call + tool result than the one before.
    assert [len(r["messages"]) for r in requests] == [len(requests[0]["messages"]) + 2 * i for i in range(4)]


def test_max_tool_iterations_stream(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=STUB_MODEL, messages=user('LOOP calculator {"expression":"1+1"}'), stream=True
        )
    )
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    meta = cozy_of(last)
    assert meta["max_tool_iterations_reached"] is True
    assert meta["tool_iterations"] == MAX_TOOL_ITERATIONS
    assert meta["stop_reason"] == "max_tool_iterations"


# --- which tools are offered upstream ---------------------------------------------------------------
def test_allowed_tools_narrow_the_offer(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    client.chat.completions.create(
        model=STUB_MODEL, messages=user("what time"), extra_body={"cozy": {"allowed_tools": ["get_current_time"]}}
    )
    (sent,) = upstream.requests()
    assert tool_names(sent) == ["get_current_time"]


def test_allowed_tools_empty_offers_nothing(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    reply = client.chat.completions.create(
        model=STUB_MODEL,
        messages=user('CALL calculator {"expression":"1+1"}'),
        extra_body={"cozy": {"allowed_tools": []}},
    )
    (sent,) = upstream.requests()
    assert tool_names(sent) == []
    assert reply.choices[0].message.content == 'Echo: CALL calculator {"expression":"1+1"}'


def test_personality_tool_allowlist(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    concierge = {"cozy": {"personality_id": "voice-concierge"}}
    reply = client.chat.completions.create(
        model=STUB_MODEL, messages=user('CALL calculator {"expression":"6*7"}'), extra_body=concierge
    )
    # calculator was never offered, so the model could not call it: a plain echo.
    assert reply.choices[0].message.content == 'Echo: CALL calculator {"expression":"6*7"}'
    assert cozy_of(reply)["tool_iterations"] == 0
    client.chat.completions.create(
        model=STUB_MODEL,
        messages=user("hi"),
        extra_body={"cozy": {"personality_id": "voice-concierge", "allowed_tools": ["calculator", "get_current_time"]}},
    )
    first, second = upstream.requests()
    assert tool_names(first) == ["get_current_time"]
    assert tool_names(second) == ["get_current_time"]  # allowed_tools can narrow, never widen


def test_client_tools_added_to_offer(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    client.chat.completions.create(
        model=STUB_MODEL,
        messages=user("hi"),
        tools=[WEATHER_TOOL],
        extra_body={"cozy": {"allowed_tools": ["calculator"]}},
    )
    (sent,) = upstream.requests()
    assert sorted(tool_names(sent)) == ["calculator", "get_weather"]


def test_disallowed_builtin_is_not_run_by_server(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    """A client tool that shares a built-in's name, for a personality without that built-in, is the
    client's tool: the call goes back to the client and the server does not execute it."""
    own_calculator = {"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}
    reply = client.chat.completions.create(
        model=STUB_MODEL,
        messages=user('CALL calculator {"expression":"6*7"}'),
        tools=[own_calculator],
        extra_body={"cozy": {"personality_id": "voice-concierge"}},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in choice.message.tool_calls] == ["calculator"]
    assert cozy_of(reply)["tool_iterations"] == 0
    (sent,) = upstream.requests()
    assert sorted(tool_names(sent)) == ["calculator", "get_current_time"]
