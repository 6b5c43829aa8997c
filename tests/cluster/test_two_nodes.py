"""Two nodes behind a real HAProxy (issue 11, items 1 to 3 and 6), one cluster for the module:

- round robin: one session's turns alternate nodes and the model sees the whole history every time;
- two turns at once on two nodes: one answers, the other is 409 RESOURCE_SESSION_BUSY, and only the
  one answer is stored;
- a live call on node A and text turns through node B (JSON, then SSE): each is answered inside
  the call (the call's client sees the typed user item and the reply item, the HTTP caller gets
  the reply, and all are answered from the one history);
- a user's live calls count against its quota on both nodes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import uuid
from typing import Any

import httpx
import pytest
import websockets

from tests.cluster.calls import ASSISTANT_ITEM, USER_ITEM, is_item, open_call
from tests.cluster.conftest import (
    Cluster,
    Node,
    auth,
    chat,
    exchange,
    model_saw,
    served_by,
    stored,
    wait_stored,
)
from tests.cluster.proxy import NAMES
from tests.e2e.conftest import STUB_MODEL

pytestmark = pytest.mark.timeout(120)


def sid() -> str:
    return f"cl-{uuid.uuid4().hex[:12]}"


def test_alternating_nodes_see_the_whole_history(cluster: Cluster) -> None:
    session = sid()
    texts = [f"turn {i} of {session}" for i in range(6)]
    nodes = []
    with httpx.Client(base_url=cluster.proxy.root_url) as client:
        for i, text in enumerate(texts):
            r, reply = chat(client, session, text, stream=i >= 4)  # the last two streamed (SSE)
            assert r.status_code == 200, r.text
            assert reply == f"Echo: {text}"
            nodes.append(served_by(r))
            saw = model_saw(cluster.upstream, text)
            earlier = sum(1 for role, _ in saw if role == "user") - 1
            assert saw == [*exchange(*texts[:i]), ("user", text)], (
                f"turn {i} on {nodes[-1]}: the model saw {earlier} earlier user messages, wanted {i}: {saw}"
            )
        assert stored(client, session) == exchange(*texts)
    assert all(a != b for a, b in itertools.pairwise(nodes)), f"round robin did not alternate: {nodes}"


def test_concurrent_turns_on_two_nodes_one_answers(cluster: Cluster) -> None:
    session = sid()
    texts = [f"SLEEP 1 racer {i} of {session}" for i in range(2)]
    with (
        httpx.Client(base_url=cluster.proxy.root_url) as first,
        httpx.Client(base_url=cluster.proxy.root_url) as second,
    ):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda job: chat(job[0], session, job[1]), [(first, texts[0]), (second, texts[1])]))
        responses = [r for r, _ in results]
        assert {served_by(r) for r in responses} == set(cluster.nodes), "the two turns did not reach two nodes"
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 409], (
            f"wanted one answer and one 409, got {[(r.status_code, r.text) for r in responses]}"
        )
        (won,) = [i for i, r in enumerate(responses) if r.status_code == 200]
        lost = responses[1 - won]
        assert lost.json()["error"]["code"] == "RESOURCE_SESSION_BUSY", lost.text
        assert results[won][1] == f"Echo: {texts[won]}"
        assert stored(first, session) == exchange(texts[won])
        after = f"after the race of {session}"
        r, _ = chat(first, session, after)
        assert r.status_code == 200, r.text
        assert model_saw(cluster.upstream, after) == [*exchange(texts[won]), ("user", after)]


async def test_text_turn_through_the_other_node_lands_in_the_call(cluster: Cluster) -> None:
    """Both wire shapes go through the other node: a JSON reply, then a streamed (SSE) one."""
    session = f"cl-call-{uuid.uuid4().hex[:12]}"
    first, typed, streamed, after = (
        f"{what} of {session}" for what in ("said in the call", "typed meanwhile", "typed and streamed", "said after")
    )
    call = await open_call(cluster.proxy, session)
    try:
        assert await call.turn(first) == f"Echo: {first}"
        through = cluster.other(call.node)
        with httpx.Client(base_url=cluster.proxy.root_url) as client:
            for n, text in enumerate((typed, streamed)):
                start = len(call.events)
                r, reply = await asyncio.to_thread(chat, client, session, text, pin=through, stream=n == 1)
                assert r.status_code == 200, f"{r.status_code} from {r.headers.get('x-cozy-node')}: {r.text}"
                assert served_by(r) == through
                assert reply == f"Echo: {text}"
                assert model_saw(cluster.upstream, text) == [*exchange(first, *(typed,) * n), ("user", text)]
                await call.wait_for(is_item("user", text, USER_ITEM), f"the typed user item {text!r}", start=start)
                await call.wait_for(
                    is_item("assistant", reply, ASSISTANT_ITEM), f"the reply item {reply!r}", start=start
                )
            assert await call.turn(after) == f"Echo: {after}"
            assert model_saw(cluster.upstream, after) == [*exchange(first, typed, streamed), ("user", after)]
            await asyncio.to_thread(wait_stored, client, session, exchange(first, typed, streamed, after))
    finally:
        await call.close()


async def test_a_users_calls_count_on_both_nodes(cluster: Cluster) -> None:
    """Quotas across nodes: a user's live realtime sessions on node A count on node B (each process
    mirrors its counts to the shared database every second); a refusal is the documented error
    event and close 1013, and a slot freed on one node is usable on the other."""
    a, b = (cluster.nodes[name] for name in NAMES)
    async with httpx.AsyncClient(timeout=30) as http:
        body = {"name": f"q{uuid.uuid4().hex[:10]}"}
        r = await http.post(f"{a.root_url}/v1/admin/users", json=body, headers=auth())
    assert r.status_code == 201, r.text
    headers = {"authorization": f"Bearer {r.json()['api_key']}"}  # a user: admins are exempt

    def ws_url(node: Node) -> str:
        return node.root_url.replace("http://", "ws://") + f"/v1/realtime?model={STUB_MODEL}"

    async def open_on(node: Node) -> tuple[Any, dict[str, Any]]:
        ws = await websockets.connect(ws_url(node), additional_headers=headers)
        return ws, json.loads(await asyncio.wait_for(ws.recv(), 10))

    held = []
    for node in (a, a, b, b):  # the shipped share: 4 realtime sessions per user
        ws, first = await open_on(node)
        assert first["type"] == "session.created", first
        held.append(ws)
    try:
        await asyncio.sleep(2.5)  # two sync intervals: each node has seen the other's two
        for node in (a, b):
            ws, first = await open_on(node)
            assert first["type"] == "error" and first["error"]["code"] == "RESOURCE_QUOTA_EXCEEDED", first
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1013
        await held.pop().close()  # one of node B's ends: node A may take its place
        await asyncio.sleep(2.5)
        ws, first = await open_on(a)
        assert first["type"] == "session.created", first
        held.append(ws)
    finally:
        for ws in held:
            await ws.close()
