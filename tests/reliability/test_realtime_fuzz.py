"""Malformed realtime events of every client type, against a real `cozy serve` (issue 10, item 9).

Every client event of the GA protocol and the beta dialect is sent broken in every way a hostile
or buggy client could: each field with the wrong JSON type, null, a huge string or nested garbage;
an unknown field; a required field missing; the event not an object at all. Each one must be
answered by exactly one `error` event (echoing a string `event_id`), with no disconnect and no
actor crash: afterwards a normal text turn on the same connection still works, the server counted
no actor restart and logged no traceback. A hypothesis barrage of random JSON values follows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.realtime_latency import config_dir
from tests.reliability.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, start_cozy_server
from tests.support.procs import StubLLMServer

HUGE = "x" * 100_001  # not base64 either (length), so invalid as `audio` too
GARBAGE = {"a": [{"b": {"c": [None, 1.5, {"d": []}]}}]}
WRONG = [1, 1.5, True, [], {}, GARBAGE, HUGE]  # invalid for every field below, but the few skipped

USER_TEXT = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
# One valid example of every client event; the barrage breaks each field of each in turn.
VALID: dict[str, dict[str, Any]] = {
    "session.update": {"session": {"type": "realtime", "instructions": "Be brief."}},
    "input_audio_buffer.append": {"audio": "AAAA"},
    "input_audio_buffer.commit": {},
    "input_audio_buffer.clear": {},
    "output_audio_buffer.clear": {},
    "conversation.item.create": {"item": USER_TEXT, "previous_item_id": "root"},
    "conversation.item.retrieve": {"item_id": "item_1"},
    "conversation.item.delete": {"item_id": "item_1"},
    "conversation.item.truncate": {"item_id": "item_1", "content_index": 0, "audio_end_ms": 10},
    "response.create": {"response": {"instructions": "Say hi.", "output_modalities": ["text"]}},
    "response.cancel": {"response_id": "resp_1"},
}
BETA_SESSION = {"modalities": ["text"], "input_audio_format": "pcm16", "voice": "alloy", "turn_detection": None}
REQUIRED = {"session", "audio", "item", "item_id", "audio_end_ms"}
# Nested fields broken one by one too (path inside the event -> its valid value).
NESTED = {
    "session.update": [
        ("session", "instructions"),
        ("session", "output_modalities"),
        ("session", "audio"),
        ("session", "tools"),
        ("session", "max_output_tokens"),
    ],
    "conversation.item.create": [
        ("item", "type"),
        ("item", "role"),
        ("item", "id"),
        ("item", "content"),
        ("item", "content", 0),
        ("item", "content", 0, "text"),
        ("item", "content", 0, "type"),
    ],
    "response.create": [
        ("response", "instructions"),
        ("response", "output_modalities"),
        ("response", "max_output_tokens"),
        ("response", "conversation"),
        ("response", "metadata"),
        ("response", "tools"),
    ],
}


def _set(event: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(event))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def malformed(etype: str, base: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any] | Any]]:
    """(description, event) pairs: every way of breaking one event, each of them invalid."""
    event = {"type": etype, **base}
    yield "unknown field", {**event, "cozy_unknown_field": 1}
    yield "event_id not a string", {**event, "event_id": GARBAGE}
    for name in base:
        for value in WRONG:
            if not (name in ("session", "response") and value == {}):  # no changes: valid
                yield f"{name}={str(value)[:20]}", {**event, name: value}
        if name in REQUIRED:
            yield f"{name} null", {**event, name: None}
            yield f"{name} missing", {k: v for k, v in event.items() if k != name}
    for path in NESTED.get(etype, ()):
        for value in WRONG[:-1]:
            if (path[-1], value) in (("tools", []), ("metadata", {}), ("audio", {}), ("max_output_tokens", 1)):
                continue  # [] clears the tools, {} changes nothing: valid
            yield f"{'.'.join(map(str, path))}={str(value)[:20]}", _set(event, path, value)
        if isinstance(path[-1], str) and isinstance(path[-2], str):  # the parent is an object
            yield f"{'.'.join(map(str, path))} unknown field", _set(event, (*path[:-1], "cozy_unknown_field"), 1)


NOT_OBJECTS = [[], [{"type": "session.update"}], 1, "session.update", None, {"type": ["session.update"]}, {}]


@pytest.fixture(scope="module")
def rt_server(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CozyServer]:
    """Stub speech engines (instant STT/TTS through the real remote providers): voice turns are on,
    so audio events reach the VAD/STT pipeline, and nothing waits for bundled models."""
    cfg = config_dir("stub", stub_llm.base_url, tmp_path_factory.mktemp("cfg"))
    server = start_cozy_server(stub_llm, config_dir=cfg)
    try:
        yield server
    finally:
        server.stop()


class Conn:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, event: Any) -> None:
        await self.ws.send(json.dumps(event))

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def until(self, etype: str, timeout: float = 20) -> list[dict[str, Any]]:
        seen = []
        async with asyncio.timeout(timeout):
            while True:
                seen.append(await self.next(timeout))
                if seen[-1]["type"] == etype:
                    return seen


async def connect(server: CozyServer, beta: bool = False) -> Any:
    url = server.base_url.replace("http://", "ws://") + f"/realtime?model={STUB_MODEL}"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", **({"OpenAI-Beta": "realtime=v1"} if beta else {})}
    return websockets.connect(url, additional_headers=headers, max_size=None)


async def barrage(conn: Conn, events: list[tuple[str, Any]]) -> None:
    """Each event must be answered by one `error` event and nothing else."""
    for i, (what, event) in enumerate(events):
        eid = None
        if isinstance(event, dict) and "event_id" not in event:
            event = {**event, "event_id": f"fuzz_{i}"}
            eid = event["event_id"]
        await conn.send(event)
        try:
            reply = await conn.next()
        except TimeoutError:
            raise AssertionError(f"{what}: no answer to {str(event)[:300]}") from None
        assert reply["type"] == "error", f"{what}: {str(event)[:300]} -> {str(reply)[:300]}"
        err = reply["error"]
        assert isinstance(err["message"], str) and err["message"] and isinstance(err["code"], str), reply
        assert err["code"] != "session_restarted", f"{what}: the actor crashed ({str(event)[:300]})"
        assert err["event_id"] == eid, f"{what}: {reply}"
        assert err["param"] is None or isinstance(err["param"], str), reply


async def text_turn(conn: Conn, beta: bool = False) -> dict[str, Any]:
    """A normal turn still works: the user's item is added and the stub's reply completes."""
    item = {**USER_TEXT, "content": [{"type": "input_text", "text": "still here?"}]}
    await conn.send({"type": "conversation.item.create", "item": item})
    await conn.until("conversation.item.created" if beta else "conversation.item.added")
    await conn.send({"type": "response.create", "response": {"modalities" if beta else "output_modalities": ["text"]}})
    done = (await conn.until("response.done"))[-1]
    assert done["response"]["status"] == "completed", done
    return done


def assert_no_crash(server: CozyServer) -> None:
    assert server.metric("cozy_actor_restarts_total") == 0, server.output()[-4000:]
    log = server.output()
    assert "Traceback" not in log and "crashed" not in log, log[-4000:]


def all_malformed(session: dict[str, Any] | None = None) -> list[tuple[str, Any]]:
    valid = dict(VALID)
    if session is not None:
        valid["session.update"] = {"session": session}
    out = [(f"{etype}: {what}", ev) for etype, base in valid.items() for what, ev in malformed(etype, base)]
    return out + [(f"not an event: {str(v)[:30]}", v) for v in NOT_OBJECTS]


async def test_item_create_with_non_string_text_is_an_error_not_a_crash(rt_server: CozyServer) -> None:
    """The measured failure: `text` not a string crashed the session actor."""
    async with await connect(rt_server) as ws:
        conn = Conn(ws)
        assert (await conn.next())["type"] == "session.created"
        item = {**USER_TEXT, "content": [{"type": "input_text", "text": 5}]}
        await conn.send({"type": "conversation.item.create", "item": item, "event_id": "bad_text"})
        err = await conn.next()
        assert err["type"] == "error" and err["error"]["event_id"] == "bad_text", err
        assert err["error"]["param"] == "item.content[0].text", err
        await text_turn(conn)
    assert_no_crash(rt_server)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("beta", [False, True], ids=["ga", "beta"])
async def test_every_malformed_event_gets_one_error_and_the_session_lives(rt_server: CozyServer, beta: bool) -> None:
    events = all_malformed(BETA_SESSION if beta else None)
    assert len(events) > 200  # every event type, every field, every way
    async with await connect(rt_server, beta) as ws:
        conn = Conn(ws)
        assert (await conn.next())["type"] == "session.created"
        await barrage(conn, events)
        await text_turn(conn, beta)
    assert_no_crash(rt_server)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = sorted({k for base in VALID.values() for k in base} | {"session", "response", "item", "content"})


@st.composite
def random_event(draw: st.DrawFn) -> dict[str, Any]:
    etype = draw(st.sampled_from(sorted(VALID)))
    event: dict[str, Any] = {"type": etype}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        event[name] = draw(JSON)
    return event


@pytest.mark.timeout(180)
def test_random_events_never_crash_or_disconnect(rt_server: CozyServer) -> None:
    """Random JSON in random fields of random events (some may be valid): the connection stays up,
    every server event is well-formed, no actor restarts, and a normal turn works afterwards."""
    events: list[dict[str, Any]] = []

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(random_event())
    def collect(event: dict[str, Any]) -> None:
        if event["type"] != "response.create":  # a valid one would start a turn; the turn below tests that
            events.append(event)

    collect()

    async def run() -> None:
        async with await connect(rt_server) as ws:
            conn = Conn(ws)
            assert (await conn.next())["type"] == "session.created"
            for event in events:
                await conn.send(event)
            # A fence: every event sent before it has been handled once its error arrives.
            await conn.send({"type": "conversation.item.retrieve", "item_id": "fence", "event_id": "fence"})
            async with asyncio.timeout(60):
                while True:
                    event = await conn.next(60)
                    assert isinstance(event.get("type"), str) and event.get("event_id"), event
                    if event["type"] == "error":
                        assert event["error"]["code"] != "session_restarted", event
                        if event["error"]["event_id"] == "fence":
                            break
            reset = {"instructions": "", "tools": [], "tool_choice": "auto", "max_output_tokens": "inf"}
            await conn.send({"type": "session.update", "session": {"type": "realtime", **reset}})
            await conn.until("session.updated")
            await text_turn(conn)

    asyncio.run(run())
    assert_no_crash(rt_server)
