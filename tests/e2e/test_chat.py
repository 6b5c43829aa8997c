"""Plain chat completions through the openai SDK: JSON and SSE shapes (PROTOCOLS.md §2.2)."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai

from tests.e2e.conftest import STUB_MODEL, sse_events, user
from tests.support.procs import StubLLMServer

COZY_DEFAULTS = {
    "personality_id": "assistant",
    "session_id": None,
    "degraded": False,
    "degrade_reasons": [],
    "tool_iterations": 0,
    "stop_reason": None,
    "max_tool_iterations_reached": False,
}


def test_non_stream_completion_shape(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    reply = client.chat.completions.create(model=STUB_MODEL, messages=user("hello there world"))
    assert reply.id.startswith("chatcmpl-") and len(reply.id) > len("chatcmpl-")
    assert reply.object == "chat.completion"
    assert isinstance(reply.created, int) and reply.created > 1_600_000_000
    assert reply.model == STUB_MODEL
    assert len(reply.choices) == 1
    choice = reply.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: hello there world"
    assert choice.message.tool_calls is None
    usage = reply.usage
    assert usage is not None
    for value in (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens):
        assert type(value) is int and value > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens == 4  # the stub's word pieces: "Echo:", " hello", " there", " world"
    assert reply.model_extra is not None
    assert reply.model_extra["cozy"] == COZY_DEFAULTS
    # One upstream request, with the personality's system prompt first and the user message last.
    (sent,) = upstream.requests()
    assert sent["model"] == STUB_MODEL
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][-1] == {"role": "user", "content": "hello there world"}


def test_stream_chunks_without_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=STUB_MODEL, messages=user("stream me please"), stream=True))
    assert len(chunks) >= 3
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert len({c.created for c in chunks}) == 1
    assert {c.model for c in chunks} == {STUB_MODEL}
    assert all(len(c.choices) == 1 and c.choices[0].index == 0 for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: stream me please"
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert all(c.usage is None for c in chunks)
    last = chunks[-1]
    assert last.model_extra is not None
    assert last.model_extra["cozy"] == COZY_DEFAULTS


def test_stream_chunks_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=STUB_MODEL, messages=user("count my words"), stream=True, stream_options={"include_usage": True}
        )
    )
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    final = chunks[-1]
    assert final.choices == []
    assert final.id == chunks[0].id and final.object == "chat.completion.chunk"
    assert final.usage is not None
    assert type(final.usage.prompt_tokens) is int and final.usage.prompt_tokens > 0
    assert final.usage.completion_tokens == 4
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens
    body = chunks[:-1]
    assert "".join(c.choices[0].delta.content or "" for c in body) == "Echo: count my words"
    assert body[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in body[:-1])


def test_stream_wire_format(http: httpx.Client) -> None:
    """Raw SSE: data lines, [DONE] last, `usage` key present (null) only with include_usage."""
    for include_usage in (False, True):
        payload = {
            "model": STUB_MODEL,
            "messages": user("raw wire"),
            "stream": True,
            "stream_options": {"include_usage": include_usage},
        }
        response = http.post("/v1/chat/completions", json=payload)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.text)
        assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
        chunks = [json.loads(e) for e in events[:-1]]
        for chunk in chunks:
            assert {"id", "object", "created", "model", "choices"} <= set(chunk)
            for choice in chunk["choices"]:
                assert {"index", "delta", "finish_reason"} <= set(choice)
        if include_usage:
            assert all(c["usage"] is None for c in chunks[:-1])
            assert chunks[-1]["choices"] == [] and set(chunks[-1]["usage"]) >= {
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
            }
        else:
            assert all("usage" not in c for c in chunks)


def test_stream_helper_final_completion(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=STUB_MODEL, messages=user("helper final"), stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.id.startswith("chatcmpl-")
    assert final.model == STUB_MODEL
    choice = final.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: helper final"
    assert not choice.message.tool_calls
    assert final.usage is not None and final.usage.completion_tokens == 3


async def test_async_client_stream(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(model=STUB_MODEL, messages=user("async hello"), stream=True)
    parts = [c.choices[0].delta.content or "" async for c in stream]
    assert "".join(parts) == "Echo: async hello"
    reply = await aclient.chat.completions.create(model=STUB_MODEL, messages=user("async json"))
    assert reply.choices[0].message.content == "Echo: async json"


def test_max_tokens_truncates_with_length(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    reply = client.chat.completions.create(model=STUB_MODEL, messages=user("hello there world"), max_tokens=2)
    assert reply.choices[0].message.content == "Echo: hello"
    assert reply.choices[0].finish_reason == "length"
    chunks = list(
        client.chat.completions.create(
            model=STUB_MODEL, messages=user("hello there world"), max_completion_tokens=2, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: hello"
    assert chunks[-1].choices[0].finish_reason == "length"
    first, second = upstream.requests()
    assert first["max_tokens"] == 2 and second["max_tokens"] == 2


def test_sampling_parameters_forwarded(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    client.chat.completions.create(
        model=STUB_MODEL,
        messages=user("params"),
        temperature=0.2,
        top_p=0.9,
        seed=7,
        stop=["zzz"],
        presence_penalty=0.5,
        user="e2e-user",
        extra_body={"cozy": {"personality_id": "assistant"}},
    )
    client.chat.completions.create(model=STUB_MODEL, messages=user("defaults"))
    explicit, defaults = upstream.requests()
    assert explicit["temperature"] == 0.2 and explicit["top_p"] == 0.9 and explicit["seed"] == 7
    assert explicit["stop"] == ["zzz"] and explicit["presence_penalty"] == 0.5 and explicit["user"] == "e2e-user"
    assert "cozy" not in explicit and "cozy" not in defaults  # the extension never leaves the server
    # Without them, the personality's sampling settings apply (personalities/assistant.yaml).
    assert defaults["temperature"] == 0.7 and defaults["max_tokens"] == 512


async def test_concurrent_stateless_requests(aclient: openai.AsyncOpenAI) -> None:
    async def one(i: int) -> tuple[str | None, str | None]:
        if i % 2:
            reply = await aclient.chat.completions.create(model=STUB_MODEL, messages=user(f"parallel {i}"))
            return reply.choices[0].message.content, reply.choices[0].finish_reason
        stream = await aclient.chat.completions.create(model=STUB_MODEL, messages=user(f"parallel {i}"), stream=True)
        chunks = [c async for c in stream]
        return "".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1].choices[0].finish_reason

    results = await asyncio.gather(*(one(i) for i in range(24)))
    assert results == [(f"Echo: parallel {i}", "stop") for i in range(24)]
