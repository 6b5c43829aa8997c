"""The stub upstream speaks OpenAI's wire format: checked with the real openai SDK as the client."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.procs import StubLLMServer
from tests.support.stub_llm import make_plan

TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
    for n in ("get_weather", "get_time")
]


@pytest.fixture(scope="module")
def client(stub_llm: StubLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stub_llm.base_url, api_key="test", max_retries=0) as c:
        yield c


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_models_and_non_stream(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["stub-model"]
    reply = client.chat.completions.create(model="any-model", messages=user("hello there world"))
    assert reply.model == "any-model"
    assert reply.choices[0].message.content == "Echo: hello there world"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (3, 4, 7)


def test_stream_with_usage(client: openai.OpenAI, stub_llm: StubLLMServer) -> None:
    kwargs = {
        "model": "stub-model",
        "messages": user("hi you"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = list(client.chat.completions.create(**kwargs))
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == "Echo: hi you"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1]) and len({c.id for c in chunks}) == 1
    raw = httpx.post(f"{stub_llm.base_url}/chat/completions", json=kwargs).text.strip().split("\n\n")
    assert raw[-1] == "data: [DONE]" and '"choices":[],"usage":{' in raw[-2]


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    args = '{"city": "Paris", "unit": "celsius"}'
    with client.chat.completions.stream(
        model="stub-model", messages=user(f"CALL get_weather {args}"), tools=TOOLS
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert re.fullmatch(r"call_\d+", call.id), call.id
    assert (call.function.name, call.function.arguments) == ("get_weather", args)


def test_parallel_tool_calls(client: openai.OpenAI) -> None:
    text = 'CALL get_weather {"city":"Oslo"}\nCALL get_time {"tz":"UTC"}'
    with client.chat.completions.stream(model="stub-model", messages=user(text), tools=TOOLS) as stream:
        calls = stream.get_final_completion().choices[0].message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather", '{"city":"Oslo"}'),
        ("get_time", '{"tz":"UTC"}'),
    ]
    assert calls[0].id != calls[1].id
    reply = client.chat.completions.create(model="stub-model", messages=user(text), tools=TOOLS)
    assert len(reply.choices[0].message.tool_calls) == 2


@pytest.mark.parametrize(("status", "error"), [(404, openai.NotFoundError), (500, openai.InternalServerError)])
def test_fail_status(client: openai.OpenAI, status: int, error: type[openai.APIStatusError]) -> None:
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="stub-model", messages=user(f"FAIL {status}"))
    assert caught.value.status_code == status and caught.value.code == f"stub_{status}"


def test_fail_midstream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="stub-model", messages=user("FAIL_MIDSTREAM"), stream=True)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "Echo:", " FAIL_MIDSTREAM"]


def test_request_log(client: openai.OpenAI, stub_llm: StubLLMServer) -> None:
    stub_llm.clear()
    messages = [{"role": "system", "content": "You are cozy."}, *user("SYSTEM?")]
    reply = client.chat.completions.create(model="stub-model", messages=messages, tools=TOOLS)
    assert reply.choices[0].message.content == "You are cozy."
    [body] = stub_llm.requests()
    assert body["messages"] == messages and body["tools"] == TOOLS


def _after_tool(directive: str) -> dict:
    call = {"id": "call_7", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    return {
        "tools": TOOLS,
        "messages": [
            *user(directive),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_7", "content": "noon"},
        ],
    }


@pytest.mark.parametrize(
    ("body", "text", "calls"),
    [
        (_after_tool("CALL get_time {}"), "Tool get_time returned: noon", []),
        (_after_tool("LOOP get_time {}"), "", [("get_time", "{}")]),
        ({"tools": TOOLS, "tool_choice": "none", "messages": user("CALL get_time {}")}, "Echo: CALL get_time {}", []),
        ({"messages": user("CALL not_offered {}")}, "Echo: CALL not_offered {}", []),
    ],
)
def test_plan_directives(body: dict, text: str, calls: list[tuple[str, str]]) -> None:
    plan = make_plan(body)
    assert (plan.text, plan.calls) == (text, calls)
    assert make_plan({"messages": user("SLEEP 0.5 hi")}, tokens=3).text == "tok0 tok1 tok2"
    assert make_plan({"messages": user("SLEEP 0.5 hi")}).sleep_s == 0.5
