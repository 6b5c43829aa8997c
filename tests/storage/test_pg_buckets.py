"""Rate limits shared by worker processes through PostgreSQL (no Redis): two limiters on one
database (two workers) hand out one caller's burst once between them, not once each."""

from __future__ import annotations

import asyncio

from cozy_actors.cache.pg_buckets import PgBuckets
from cozy_actors.cache.ratelimit import RateLimiter
from cozy_actors.storage.db import Database


def limiter(db: Database | None) -> RateLimiter:
    return RateLimiter(requests_per_minute=60, burst=3, shared=PgBuckets(db) if db else None)


async def test_two_workers_share_one_bucket(db: Database) -> None:
    a, b = limiter(db), limiter(db)
    decisions = [await (a if i % 2 else b).check("key:k1") for i in range(6)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False, False]
    assert 0.5 < decisions[3].retry_after_s <= 1.0  # 1 token/s: about a second until the next
    assert (await a.check("key:other")).allowed  # buckets are per key
    await b.refund("key:k1")  # what a check took and did not count comes back, on either worker
    assert (await a.check("key:k1")).allowed and not (await b.check("key:k1")).allowed
    await asyncio.sleep(1.05)
    assert (await b.check("key:k1")).allowed  # refilled at the configured rate


async def test_without_the_shared_store_each_process_limits_alone(db: Database) -> None:
    a, b = limiter(None), limiter(None)
    allowed = [(await (a if i % 2 else b).check("key:k1")).allowed for i in range(6)]
    assert allowed == [True] * 6  # what --workers N without the shared store would allow: N x burst


async def test_a_database_outage_falls_back_to_this_process(pg_url: str) -> None:
    down = Database(pg_url)  # never started: STORAGE_UNAVAILABLE on every call
    lim = limiter(down)
    assert [(await lim.check("key:k1")).allowed for _ in range(4)] == [True, True, True, False]


async def test_expired_buckets_are_purged(db: Database) -> None:
    buckets = PgBuckets(db, purge_every_s=0)
    await buckets.take("key:old", 600.0, 1)  # full again after 0.1 s: expires after 1.1 s
    await db.execute("t", "UPDATE rate_buckets SET expires_at = now() - interval '1 s'")
    await buckets.take("key:new", 600.0, 1)  # this call starts the purge in the background
    assert buckets._purge is not None
    await buckets._purge
    keys = [r["key"] for r in await db.fetch("t", "SELECT key FROM rate_buckets")]
    assert keys == ["key:new"]
