"""One live owner per conversation across nodes (DESIGN, Placement): two `cozy serve` processes on
one PostgreSQL and Redis. A session's turns sent to A, B, A, B reach a model that sees every
earlier message each time; two concurrent turns on one session give one answer and one 409; a
realtime reconnect on the other node takes the call over (the old one ends `session_taken_over`)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, new_session_id
from tests.e2e.test_cluster import Cluster, two_nodes  # noqa: F401 (the fixture)

HEADERS = {"authorization": f"Bearer {ADMIN_KEY}"}


def chat(node: CozyServer, sid: str, text: str) -> httpx.Response:
    body = {"model": STUB_MODEL, "messages": [{"role": "user", "content": text}], "cozy": {"session_id": sid}}
    return httpx.post(f"{node.base_url}/chat/completions", json=body, headers=HEADERS, timeout=30)


def users_seen(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def test_alternating_nodes_see_the_whole_history(two_nodes: Cluster) -> None:  # noqa: F811
    a, b = two_nodes.a, two_nodes.b
    sid = new_session_id()
    for n, node in enumerate([a, b, a, b, a]):
        a.upstream.clear()
        reply = chat(node, sid, f"{sid} turn {n}")
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == f"Echo: {sid} turn {n}"
        (seen,) = a.upstream.requests()
        assert users_seen(seen) == [f"{sid} turn {i}" for i in range(n + 1)], f"turn {n} on node {'AB'[n % 2]}"
        assert [m["content"] for m in seen["messages"] if m["role"] == "assistant"] == [
            f"Echo: {sid} turn {i}" for i in range(n)
        ]


def test_concurrent_turns_on_two_nodes_one_answers(two_nodes: Cluster) -> None:  # noqa: F811
    a, b = two_nodes.a, two_nodes.b
    sid = new_session_id()
    assert chat(a, sid, "hello").status_code == 200  # the session exists; both nodes have an actor soon
    assert chat(b, sid, "hello again").status_code == 200
    slow: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: slow.setdefault("r", chat(a, sid, "SLEEP 1.5 slow one")))
    thread.start()
    time.sleep(0.5)  # A is inside its turn (the model sleeps)
    busy = chat(b, sid, "meanwhile")
    thread.join()
    assert slow["r"].status_code == 200, slow["r"].text
    assert busy.status_code == 409, busy.text
    assert busy.json()["error"]["code"] == "RESOURCE_SESSION_BUSY"
    after = chat(b, sid, "after")
    assert after.status_code == 200
    a.upstream.clear()
    chat(a, sid, "count")
    assert users_seen(a.upstream.requests()[0]) == ["hello", "hello again", "SLEEP 1.5 slow one", "after", "count"]


def _open_call(node: CozyServer, sid: str, timeout: float = 15) -> ClientConnection:
    ws = connect(
        f"ws://{node.root_url.removeprefix('http://')}/v1/realtime?model={STUB_MODEL}&cozy_session_id={sid}",
        additional_headers=HEADERS,
        open_timeout=15,
    )
    first = json.loads(ws.recv(timeout=timeout))
    assert first["type"] == "session.created", first
    ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}))
    return ws


def _turn(ws: ClientConnection, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    ws.send(json.dumps({"type": "response.create"}))
    while json.loads(ws.recv(timeout=10))["type"] != "response.done":
        pass


def test_a_call_reconnecting_on_the_other_node_takes_it_over(two_nodes: Cluster) -> None:  # noqa: F811
    a, b = two_nodes.a, two_nodes.b
    sid = new_session_id()
    _open_call(b, new_session_id(), timeout=90).close()  # speech models loaded: what is timed below is the takeover
    on_a = _open_call(a, sid, timeout=90)
    try:
        _turn(on_a, "said on A")
        started = time.monotonic()
        on_b = _open_call(b, sid)  # A is asked to let go (broadcast), B takes the lease
        took = time.monotonic() - started
        events = []
        with pytest.raises(ConnectionClosed):
            while True:
                events.append(json.loads(on_a.recv(timeout=10)))
        assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "session_taken_over", events
        assert took < 4, f"takeover took {took:.1f} s (should not wait for the 5 s lease expiry)"
        a.upstream.clear()
        _turn(on_b, "said on B")
        assert users_seen(a.upstream.requests()[-1]) == ["said on A", "said on B"]
        on_b.close()
    finally:
        on_a.close()


def test_a_call_whose_node_died_is_taken_over_once_its_heartbeat_lapses(two_nodes: Cluster) -> None:  # noqa: F811
    a, b = two_nodes.a, two_nodes.b
    sid = new_session_id()
    _open_call(b, new_session_id(), timeout=90).close()  # speech models loaded: what is timed below is the takeover
    on_a = _open_call(a, sid, timeout=90)
    _turn(on_a, "said on A before it died")
    os.killpg(a.process.pid, signal.SIGKILL)  # no goodbye: A's row in `workers` stays, its heartbeat stops
    a.process.proc.wait(10)
    started = time.monotonic()
    on_b = _open_call(b, sid, timeout=30)
    took = time.monotonic() - started
    try:
        assert took < 5.0 + 1.5, f"took {took:.1f} s (ttl 5 s)"
        b.upstream.clear()
        _turn(on_b, "said on B")
        assert users_seen(b.upstream.requests()[-1]) == ["said on A before it died", "said on B"]
    finally:
        on_b.close()
        on_a.close()
