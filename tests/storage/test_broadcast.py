"""Cluster notices over the machine's real Redis: another node acts, the sender does not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from cozy_actors.cache import RedisLink
from cozy_actors.cache.broadcast import Broadcaster
from tests.support.pg import REDIS_URL, redis_prefix


async def test_a_notice_reaches_other_nodes_only() -> None:
    prefix = redis_prefix("bcast")
    links = [RedisLink(REDIS_URL, prefix=prefix) for _ in range(3)]
    nodes = [Broadcaster(link) for link in links]
    calls = {i: 0 for i in range(3)}
    both = asyncio.Event()

    seen: list[dict] = []

    def handler(i: int) -> Callable[[dict | None], Awaitable[None]]:
        async def run(data: dict | None) -> None:
            calls[i] += 1
            seen.append(data or {})
            if calls[1] and calls[2]:
                both.set()

        return run

    for i, node in enumerate(nodes):
        node.on("personalities.reload", handler(i))
        await node.start()
    other = Broadcaster(RedisLink(REDIS_URL, prefix=redis_prefix("bcast-other")))  # another cluster
    other.on("personalities.reload", handler(2))
    await other.start()
    try:
        await asyncio.sleep(0.3)  # subscriptions are live
        await links[0].client.publish(nodes[0].channel, b"not json")  # ignored, the listener goes on
        await nodes[0].publish("personalities.reload", {"by": "admin"})
        await nodes[0].publish("tools.refresh")  # nobody handles it: ignored
        await asyncio.wait_for(both.wait(), 5)
        await asyncio.sleep(0.2)
        assert calls == {0: 0, 1: 1, 2: 1}  # the sender already did the work itself
        assert nodes[1].received == 1 and seen == [{"by": "admin"}, {"by": "admin"}]
    finally:
        for node in nodes:
            await node.close()
        for link in links:
            await link.close()
        await other.close()
        await other.link.close()  # type: ignore[union-attr]


async def test_without_redis_publishing_is_a_no_op() -> None:
    node = Broadcaster(None)
    node.on("personalities.reload", lambda data: asyncio.sleep(0))
    await node.start()
    await node.publish("personalities.reload")
    await node.close()
    assert node.received == 0
