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


async def test_a_busy_key_takes_batches_and_the_budget_stays_one(db: Database) -> None:
    # 200 tokens, next to nothing refills during the test: two workers hand out 200 between them,
    # each taking batches (up to 10% of the burst) instead of one statement per request.
    def busy() -> RateLimiter:
        return RateLimiter(requests_per_minute=0.01, burst=200, shared=PgBuckets(db, lease_s=0.3))

    a, b = busy(), busy()
    allowed = sum([(await (a if i % 2 else b).check("key:busy")).allowed for i in range(200)])
    statements = a.shared.statements + b.shared.statements  # type: ignore[union-attr]
    assert 150 <= allowed <= 200  # the rest is held in the leases, unspent
    assert statements <= 40, statements  # 1 a request without the leases
    await asyncio.sleep(0.7)  # both leases ended: their unspent tokens went back (b's by the sweep)
    assert not a.shared._leases and not b.shared._leases  # type: ignore[union-attr]
    for i in range(100):
        allowed += (await (a if i % 2 else b).check("key:busy")).allowed
    assert allowed == 200  # every token spent once, none twice
    refused = await a.check("key:busy")
    assert not refused.allowed and refused.retry_after_s > 1000  # about 1 / rate


async def test_a_small_budget_is_never_batched(db: Database) -> None:
    buckets = PgBuckets(db)
    lim = RateLimiter(requests_per_minute=60, burst=10, shared=buckets)
    assert [(await lim.check("key:small")).allowed for _ in range(11)] == [True] * 10 + [False]
    assert buckets.statements == 11 and not buckets._leases  # burst 10 x 10% < 2: every check asks


async def test_concurrent_requests_wait_for_one_statement(db: Database) -> None:
    # 150 requests at once on a burst of 100: the batches serve them, one statement at a time,
    # and exactly the budget is allowed (the refused ones share the statement that found it empty).
    buckets = PgBuckets(db)
    lim = RateLimiter(requests_per_minute=0.01, burst=100, shared=buckets)
    decisions = await asyncio.gather(*(lim.check("key:herd") for _ in range(150)))
    assert sum(d.allowed for d in decisions) == 100
    assert buckets.statements <= 20, buckets.statements  # 150 without the leases
