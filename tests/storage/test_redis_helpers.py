"""Cache, rate limiter and background queue on the machine's Redis (own key prefix per test), the
in-process versions, and what happens when a Redis of our own is killed mid-run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cozy_actors.cache import Cache, RateLimiter, RedisLink
from cozy_actors.observability.metrics import QUEUE_BACKLOG, QUEUE_EVENTS
from cozy_actors.queue import LocalQueue, QueuePolicy, StreamQueue, WriteQueue
from tests.support.procs import ManagedProcess

FAST = QueuePolicy(max_attempts=3, batch_size=10, retry_after_s=0.2, block_s=0.1)


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    assert predicate()


class Sink:
    """A batch handler that records payloads and fails for the ones marked `fail`."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.calls = 0

    async def __call__(self, batch: list[dict[str, Any]]) -> None:
        self.calls += 1
        if any(p.get("fail") for p in batch):
            raise RuntimeError("poison")
        self.seen.extend(batch)


async def test_cache_l1_l2_and_ttl(redis_link: RedisLink) -> None:
    a = Cache("t", redis_link, l1_ttl_s=0.2)
    b = Cache("t", redis_link, l1_ttl_s=0.2)  # another node
    await a.set("k", {"v": 1}, ttl_s=0.6)
    assert await a.get("k") == {"v": 1}
    assert await b.get("k") == {"v": 1}  # through Redis
    await b.delete("k")
    await asyncio.sleep(0.25)  # a's L1 copy expires
    assert await a.get("k") is None
    await a.set("gone", 1, ttl_s=0.1)
    await asyncio.sleep(0.3)
    assert await a.get("gone") is None
    local = Cache("t")
    await local.set("x", [1, 2], ttl_s=5)
    assert await local.get("x") == [1, 2]


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_rate_limiter_token_bucket(backend: str, redis_link: RedisLink) -> None:
    link = redis_link if backend == "redis" else None
    limiter = RateLimiter(requests_per_minute=60, burst=3, link=link)
    decisions = [await limiter.check("k1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert 0 < decisions[-1].retry_after_s <= 1.0 and decisions[-1].retry_after_header == "1"
    assert (await limiter.check("k2")).allowed  # buckets are per key
    assert [(await limiter.check("k3", rpm=600, burst=1)).allowed for _ in range(2)] == [True, False]
    await asyncio.sleep(1.05)
    assert (await limiter.check("k1")).allowed  # one token back after a second
    if link is not None:  # shared between nodes through Redis
        other = RateLimiter(requests_per_minute=60, burst=3, link=link)
        assert not (await other.check("k1")).allowed


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_rate_limiter_refund_gives_a_token_back_up_to_the_burst(backend: str, redis_link: RedisLink) -> None:
    """What the failed-authentication limit relies on: take before the work, give back on success."""
    limiter = RateLimiter(requests_per_minute=1, burst=2, link=redis_link if backend == "redis" else None)
    assert [(await limiter.check("f")).allowed for _ in range(3)] == [True, True, False]
    await limiter.refund("f")
    assert [(await limiter.check("f")).allowed for _ in range(2)] == [True, False]
    for _ in range(5):
        await limiter.refund("g")  # never more than the burst
    assert [(await limiter.check("g")).allowed for _ in range(3)] == [True, True, False]


async def test_local_queue_batches_retries_and_dead_letters() -> None:
    q = LocalQueue(FAST)
    sink = Sink()
    q.register("t", sink)
    await q.start()
    for i in range(5):
        q.publish_nowait("t", {"i": i})
    q.publish_nowait("t", {"i": 99, "fail": True})
    await eventually(lambda: len(sink.seen) == 5 and len(q.dead["t"]) == 1)
    assert sorted(p["i"] for p in sink.seen) == [0, 1, 2, 3, 4]
    assert q.dead["t"][0]["i"] == 99 and q.backlog("t") == 0
    await q.stop()


async def test_stream_queue_delivers_retries_and_dead_letters(redis_link: RedisLink) -> None:
    q = StreamQueue(redis_link, FAST, consumer="test-1")
    sink = Sink()
    q.register("t", sink)
    dead_before = QUEUE_EVENTS.labels("t", "dead")._value.get()
    await q.start()
    try:
        for i in range(4):
            await q.publish("t", {"i": i})
        await q.publish("t", {"i": 99, "fail": True})
        await eventually(lambda: len(sink.seen) == 4, timeout=5)
        await eventually(lambda: QUEUE_EVENTS.labels("t", "dead")._value.get() == dead_before + 1, timeout=8)
        dead = await redis_link.client.xrange(q.dead_stream("t"))
        assert len(dead) == 1 and b'"i":99' in dead[0][1][b"data"]
        await eventually(lambda: q.backlog("t") == 0, timeout=3)
        assert await redis_link.client.xlen(q.stream("t")) == 0  # acknowledged entries are deleted
        assert QUEUE_BACKLOG.labels("t", "redis")._value.get() == 0
    finally:
        await q.stop()


async def test_stream_entries_survive_a_consumer_restart(redis_link: RedisLink) -> None:
    """Durable: what was published while no consumer ran is processed by the next one."""
    q1 = StreamQueue(redis_link, FAST, consumer="n1")
    q1.register("t", Sink())
    await q1.publish("t", {"i": 1})
    await q1.publish("t", {"i": 2})
    q2 = StreamQueue(redis_link, FAST, consumer="n2")
    sink = Sink()
    q2.register("t", sink)
    await q2.start()
    try:
        await eventually(lambda: len(sink.seen) == 2)
    finally:
        await q2.stop()


async def test_redis_outage_mid_run_degrades_to_in_process(private_redis: tuple[ManagedProcess, str]) -> None:
    proc, url = private_redis
    link = RedisLink(url, prefix="outage", timeout_s=0.3, retry_s=0.5)
    queue = WriteQueue(FAST, link)
    sink = Sink()
    queue.register("t", sink)
    limiter = RateLimiter(requests_per_minute=6000, burst=100, link=link)
    cache = Cache("c", link, l1_ttl_s=0.05)
    await queue.start()
    try:
        await queue.publish("t", {"i": "before"})
        assert (await limiter.check("k")).allowed
        await cache.set("x", 1, ttl_s=10)
        await eventually(lambda: len(sink.seen) == 1)
        assert link.up
        proc.stop()  # Redis goes away mid-run
        await asyncio.sleep(0.1)
        start = time.perf_counter()
        await queue.publish("t", {"i": "during"})  # falls back to the in-process queue
        assert (await limiter.check("k")).allowed  # in-process bucket
        assert await cache.get("x") is None  # L1 expired, L2 down: a miss, not an error
        assert time.perf_counter() - start < 1.0
        assert not link.up and not link.available
        await eventually(lambda: [p["i"] for p in sink.seen] == ["before", "during"])
        for _ in range(20):  # while the breaker is open nothing waits on Redis
            await queue.publish("t", {"i": "more"})
        await eventually(lambda: len(sink.seen) == 22)
        ok, _ = await link.ping()
        assert not ok
    finally:
        await queue.stop()
        await link.close()
