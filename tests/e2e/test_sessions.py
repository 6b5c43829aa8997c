"""Server-side sessions: the client sends only the new message; the server keeps the history."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.e2e.conftest import STUB_MODEL, new_session_id, user
from tests.support.procs import StubLLMServer


def _conversation(body: dict) -> list[dict]:
    """An upstream request's messages without the personality's system prompt."""
    assert body["messages"][0]["role"] == "system"
    return [{"role": m["role"], "content": m.get("content")} for m in body["messages"][1:]]


def test_session_keeps_history(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    sid = new_session_id()
    cozy = {"cozy": {"session_id": sid}}
    one = client.chat.completions.create(model=STUB_MODEL, messages=user("my name is Ada"), extra_body=cozy)
    assert one.choices[0].message.content == "Echo: my name is Ada"
    assert one.model_extra["cozy"]["session_id"] == sid
    two = client.chat.completions.create(model=STUB_MODEL, messages=user("what is my name"), extra_body=cozy)
    assert two.choices[0].message.content == "Echo: what is my name"
    assert two.model_extra["cozy"]["session_id"] == sid
    first, second = upstream.requests()
    assert _conversation(first) == [{"role": "user", "content": "my name is Ada"}]
    assert _conversation(second) == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "Echo: my name is Ada"},
        {"role": "user", "content": "what is my name"},
    ]


def test_session_history_in_streaming(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    sid = new_session_id()
    cozy = {"cozy": {"session_id": sid}}
    chunks = list(
        client.chat.completions.create(model=STUB_MODEL, messages=user("streamed first"), extra_body=cozy, stream=True)
    )
    assert chunks[-1].model_extra["cozy"]["session_id"] == sid
    client.chat.completions.create(model=STUB_MODEL, messages=user("then json"), extra_body=cozy)
    _, second = upstream.requests()
    assert _conversation(second) == [
        {"role": "user", "content": "streamed first"},
        {"role": "assistant", "content": "Echo: streamed first"},
        {"role": "user", "content": "then json"},
    ]


def test_sessions_are_isolated(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    a, b = new_session_id(), new_session_id()
    client.chat.completions.create(
        model=STUB_MODEL, messages=user("secret of A"), extra_body={"cozy": {"session_id": a}}
    )
    client.chat.completions.create(
        model=STUB_MODEL, messages=user("hello from B"), extra_body={"cozy": {"session_id": b}}
    )
    client.chat.completions.create(model=STUB_MODEL, messages=user("stateless"))
    _, from_b, stateless = upstream.requests()
    assert _conversation(from_b) == [{"role": "user", "content": "hello from B"}]
    assert _conversation(stateless) == [{"role": "user", "content": "stateless"}]


def test_session_tool_turn_history(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    """A server tool round is part of the kept history, in a shape the upstream accepts."""
    sid = new_session_id()
    cozy = {"cozy": {"session_id": sid}}
    client.chat.completions.create(
        model=STUB_MODEL, messages=user('CALL calculator {"expression":"6*7"}'), extra_body=cozy
    )
    client.chat.completions.create(model=STUB_MODEL, messages=user("thanks"), extra_body=cozy)
    *_, last = upstream.requests()
    roles = [m["role"] for m in last["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    call_id = last["messages"][2]["tool_calls"][0]["id"]
    assert last["messages"][3]["tool_call_id"] == call_id


async def test_busy_session_is_409(aclient: openai.AsyncOpenAI, upstream: StubLLMServer) -> None:
    sid = new_session_id()
    cozy = {"cozy": {"session_id": sid}}
    slow = asyncio.create_task(
        aclient.chat.completions.create(model=STUB_MODEL, messages=user("SLEEP 1 slow one"), extra_body=cozy)
    )
    # Wait until the first turn is really running (its request reached the upstream, which sleeps 1 s).
    for _ in range(100):
        if any(
            _conversation(r)[-1]["content"] == "SLEEP 1 slow one" for r in await asyncio.to_thread(upstream.requests)
        ):
            break
        await asyncio.sleep(0.02)
    assert not slow.done()
    with pytest.raises(openai.ConflictError) as info:
        await aclient.chat.completions.create(model=STUB_MODEL, messages=user("too soon"), extra_body=cozy)
    err = info.value
    assert err.status_code == 409
    assert err.code == "RESOURCE_SESSION_BUSY"
    assert err.body["request_id"] == err.response.headers["x-request-id"]
    reply = await slow
    assert reply.choices[0].message.content == "Echo: SLEEP 1 slow one"
    # The refused message never entered the history.
    await aclient.chat.completions.create(model=STUB_MODEL, messages=user("after"), extra_body=cozy)
    *_, last = upstream.requests()
    assert _conversation(last) == [
        {"role": "user", "content": "SLEEP 1 slow one"},
        {"role": "assistant", "content": "Echo: SLEEP 1 slow one"},
        {"role": "user", "content": "after"},
    ]


def test_invalid_session_id_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=STUB_MODEL, messages=user("hi"), extra_body={"cozy": {"session_id": "has spaces/and slashes"}}
        )
    assert info.value.code == "VALIDATION_ERROR"
    assert info.value.param == "cozy.session_id"
