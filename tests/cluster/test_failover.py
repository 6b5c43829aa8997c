"""kill -9 of the node holding a call (issue 11, items 3 and 6): the client reconnects through the
proxy with the same cozy_session_id, lands on the other node (the proxy's health check took the
dead one out), carries on with the history, and the survivor now owns the conversation: a text turn
lands in the resumed call. This module kills a node, so it has a cluster of its own."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.cluster.calls import USER_ITEM, is_item, open_call, reconnect
from tests.cluster.conftest import Cluster, chat, exchange, model_saw, served_by, wait_stored

pytestmark = pytest.mark.timeout(120)


async def test_kill_9_of_the_calls_node_the_call_carries_on_elsewhere(cluster: Cluster) -> None:
    session = f"cl-kill-{uuid.uuid4().hex[:12]}"
    one, two, three, typed = (f"{what} of {session}" for what in ("first", "second", "after the kill", "typed"))
    call = await open_call(cluster.proxy, session)
    holder = call.node
    try:
        assert await call.turn(one) == f"Echo: {one}"
        assert await call.turn(two) == f"Echo: {two}"
        with httpx.Client(base_url=cluster.nodes[cluster.other(holder)].root_url) as client:
            await asyncio.to_thread(wait_stored, client, session, exchange(one, two))
        cluster.kill(holder)
        killed_at = time.monotonic()
        await call.wait_closed()
    finally:
        await call.close()
    again, failures = await reconnect(cluster.proxy, session, timeout=30)
    took = time.monotonic() - killed_at
    try:
        assert again.node == cluster.other(holder), f"reconnected to {again.node}, the killed node was {holder}"
        assert await again.turn(three) == f"Echo: {three}"
        assert model_saw(cluster.upstream, three) == [*exchange(one, two), ("user", three)], (
            f"the call resumed on {again.node} {took:.1f} s after the kill ({len(failures)} refused attempts)"
        )
        start = len(again.events)
        with httpx.Client(base_url=cluster.proxy.root_url) as client:
            r, reply = await asyncio.to_thread(chat, client, session, typed)
            assert r.status_code == 200, r.text
            assert served_by(r) == again.node
            assert reply == f"Echo: {typed}"
        await again.wait_for(is_item("user", typed, USER_ITEM), f"the typed user item {typed!r}", start=start)
        assert model_saw(cluster.upstream, typed) == [*exchange(one, two, three), ("user", typed)]
    finally:
        await again.close()
    print(f"\nfailover: call resumed on {again.node} {took:.2f} s after kill -9 of {holder}; refused: {failures}")
