"""One actor per conversation (issue 11, item 1): a text chat turn for a conversation with a live
realtime call is answered inside the call. Real `cozy serve`, a raw websockets client for the call,
httpx for the chat completions, the stub LLM upstream (which records every prompt it is sent)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, new_session_id, sse_events
from tests.support.events import Recorder

pytestmark = pytest.mark.timeout(120)

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
TEXT_SESSION = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}


class Call(Recorder[dict[str, Any]]):
    """A realtime WebSocket call with its events collected in the background."""

    def __init__(self, ws: Any) -> None:
        super().__init__()
        self.ws = ws
        self.follow(ws, json.loads)

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def say(self, text: str) -> None:
        """A typed user turn of the call itself (realtime text mode)."""
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        await self.send({"type": "conversation.item.create", "item": item})
        await self.send({"type": "response.create"})


def call_url(server: CozyServer, session: str) -> str:
    return server.base_url.replace("http://", "ws://") + f"/realtime?model={STUB_MODEL}&cozy_session_id={session}"


async def open_call(server: CozyServer, session: str, *, text: bool = True) -> tuple[Any, Call]:
    ws = await websockets.connect(call_url(server, session), additional_headers=AUTH)
    call = Call(ws)
    created = (await call.wait("session.created"))[0]
    assert created["session"]["id"].startswith("sess_"), created  # the wire id stays a realtime id
    if text:
        await call.send(TEXT_SESSION)
        await call.wait("session.updated")
    return ws, call


def chat_body(session: str, text: str, *, stream: bool) -> dict[str, Any]:
    return {
        "model": STUB_MODEL,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
        "cozy": {"session_id": session},
    }


async def chat_stream(http: httpx.AsyncClient, session: str, text: str) -> tuple[str, dict[str, Any]]:
    """The streamed reply's text and its final chunk."""
    async with http.stream("POST", "/v1/chat/completions", json=chat_body(session, text, stream=True)) as r:
        assert r.status_code == 200, await r.aread()
        body = (await r.aread()).decode()
    chunks = [json.loads(d) for d in sse_events(body) if d != "[DONE]"]
    assert sse_events(body)[-1] == "[DONE]", body
    text_out = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    return text_out, chunks[-1]


async def stored(http: httpx.AsyncClient, session: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The session's stored messages once there are `count` (writes land just after the reply);
    then a little longer, so a duplicate write would show too."""
    deadline = time.monotonic() + timeout
    while True:
        r = await http.get(f"/v1/chat/sessions/{session}/messages", params={"limit": 200})
        assert r.status_code == 200, r.text
        got = r.json()["data"]
        if len(got) >= count or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    r = await http.get(f"/v1/chat/sessions/{session}/messages", params={"limit": 200})
    return [(m["role"], m["content"]) for m in r.json()["data"]]


def prompt_texts(server: CozyServer) -> list[tuple[str, str]]:
    """The (role, content) of the last prompt the model was sent, system prompt left out."""
    return [(m["role"], m["content"]) for m in server.upstream.requests()[-1]["messages"] if m["role"] != "system"]


@pytest.fixture
async def http(cozy_server: CozyServer) -> Any:
    async with httpx.AsyncClient(base_url=cozy_server.root_url, headers=AUTH, timeout=30) as client:
        yield client


async def test_text_turns_land_in_the_live_call(cozy_server: CozyServer, http: httpx.AsyncClient) -> None:
    session = new_session_id()
    ws, call = await open_call(cozy_server, session)
    try:
        # A streamed text turn: answered by the call, its client sees the user item and the response.
        text, last = await chat_stream(http, session, "hello from the chat box")
        assert text == "Echo: hello from the chat box"
        assert last["cozy"]["session_id"] == session and last["choices"][0]["finish_reason"] == "stop"
        added = [e["item"] for e in call.of("conversation.item.added") if e["item"].get("role") == "user"]
        assert [i["content"][0]["text"] for i in added] == ["hello from the chat box"]
        assert call.of("conversation.item.done")[0]["item"]["id"] == added[0]["id"]
        done = (await call.wait("response.done"))[0]["response"]
        assert done["status"] == "completed"
        assert done["output"][0]["content"][0]["text"] == "Echo: hello from the chat box"
        deltas = "".join(e["delta"] for e in call.of("response.output_text.delta"))
        assert deltas == "Echo: hello from the chat box"
        assert {"response.created", "response.output_item.added", "response.output_text.done"} <= {
            e["type"] for e in call.events
        }

        # The call's own next turn sees the text turn in its history.
        await call.say("and now the call speaks")
        await call.wait("response.done", 2)
        assert prompt_texts(cozy_server)[-3:] == [
            ("user", "hello from the chat box"),
            ("assistant", "Echo: hello from the chat box"),
            ("user", "and now the call speaks"),
        ]

        # A non-streamed text turn, in the same call, sees the call's turn.
        r = await http.post("/v1/chat/completions", json=chat_body(session, "a json turn", stream=False))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Echo: a json turn"
        assert r.json()["cozy"]["session_id"] == session
        await call.wait("response.done", 3)
        assert prompt_texts(cozy_server)[-3:] == [
            ("user", "and now the call speaks"),
            ("assistant", "Echo: and now the call speaks"),
            ("user", "a json turn"),
        ]
    finally:
        await ws.close()
    expected = [
        ("user", "hello from the chat box"),
        ("assistant", "Echo: hello from the chat box"),
        ("user", "and now the call speaks"),
        ("assistant", "Echo: and now the call speaks"),
        ("user", "a json turn"),
        ("assistant", "Echo: a json turn"),
    ]
    assert await stored(http, session, 6) == expected  # each message stored once, by the call
    # After the call: a text turn (its own conversation actor again) has the whole history.
    r = await http.post("/v1/chat/completions", json=chat_body(session, "after the call", stream=False))
    assert r.status_code == 200, r.text
    assert prompt_texts(cozy_server) == [*expected, ("user", "after the call")]


async def test_text_turn_while_the_call_answers_is_busy(cozy_server: CozyServer, http: httpx.AsyncClient) -> None:
    session = new_session_id()
    ws, call = await open_call(cozy_server, session)
    try:
        await call.say("SLEEP 2 take your time")
        await call.wait("response.created")
        r = await http.post("/v1/chat/completions", json=chat_body(session, "me too", stream=False))
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "RESOURCE_SESSION_BUSY"
        await call.wait("response.done")
        assert "me too" not in json.dumps(call.events)  # the refused turn never reached the call
    finally:
        await ws.close()


async def test_call_takes_over_the_text_conversation(cozy_server: CozyServer, http: httpx.AsyncClient) -> None:
    """An idle text conversation hands over at once; one mid-turn finishes its turn first."""
    session = new_session_id()
    r = await http.post("/v1/chat/completions", json=chat_body(session, "typed first", stream=False))
    assert r.status_code == 200, r.text
    slow = asyncio.create_task(
        http.post("/v1/chat/completions", json=chat_body(session, "SLEEP 1.5 slow", stream=False))
    )
    await asyncio.sleep(0.5)  # the slow turn is in progress
    started = time.monotonic()
    ws, call = await open_call(cozy_server, session)
    try:
        waited = time.monotonic() - started
        reply = await slow
        assert reply.status_code == 200, reply.text  # not cut off by the call
        assert reply.json()["choices"][0]["message"]["content"] == "Echo: SLEEP 1.5 slow"
        assert waited > 0.7, waited  # the call opened once the turn had finished
        text, _ = await chat_stream(http, session, "into the call")
        assert text == "Echo: into the call"
        assert (await call.wait("response.done"))[0]["response"]["status"] == "completed"
        assert prompt_texts(cozy_server) == [
            ("user", "typed first"),
            ("assistant", "Echo: typed first"),
            ("user", "SLEEP 1.5 slow"),
            ("assistant", "Echo: SLEEP 1.5 slow"),
            ("user", "into the call"),
        ]
    finally:
        await ws.close()


async def test_reconnect_takes_the_call_over(cozy_server: CozyServer, http: httpx.AsyncClient) -> None:
    session = new_session_id()
    old_ws, old = await open_call(cozy_server, session)
    new_ws, new = await open_call(cozy_server, session)
    try:
        errors = await old.wait("error")
        assert errors[0]["error"]["code"] == "session_taken_over", errors
        text, _ = await chat_stream(http, session, "who answers")
        assert text == "Echo: who answers"
        await new.wait("response.done")
        assert not old.of("response.created")
    finally:
        await old_ws.close()
        await new_ws.close()


async def test_text_turn_in_a_spoken_call_is_spoken(cozy_server: CozyServer, http: httpx.AsyncClient) -> None:
    session = new_session_id()
    ws, call = await open_call(cozy_server, session, text=False)  # the default: audio out
    try:
        r = await http.post("/v1/chat/completions", json=chat_body(session, "say it aloud", stream=False))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Echo: say it aloud"
        done = (await call.wait("response.done"))[0]["response"]
        assert done["status"] == "completed" and done["output_modalities"] == ["audio"]
        assert len(call.of("response.output_audio.delta")) >= 3  # the reply was synthesized for the call
        assert call.of("response.output_audio_transcript.done")[0]["transcript"] == "Echo: say it aloud"
    finally:
        await ws.close()
