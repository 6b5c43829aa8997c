"""Token buckets in PostgreSQL: rate limits shared by worker processes when there is no Redis.

Why: with `cozy serve --workers N` and no Redis, per-process buckets would let each caller make
N times its limit. One upsert takes (or refuses) tokens atomically under the row's lock, with the
server's clock, exactly as the Redis Lua script does (ratelimit.py). Buckets untouched for longer
than a refill are full again, so a purge every minute deletes them.

Why leases: one statement per request is a round trip and a row write in PostgreSQL for every
request of every worker (6000 checks of one key: 6000 statements; with leases, 24). A key that keeps
being checked takes a batch of tokens in one statement and spends them here; the batch grows while
the lease runs out before `lease_s` and shrinks to what was used when it does not, capped at
`batch_share` of the burst (a small budget, burst < 2 / batch_share, is never batched: the next
worker must see every token). What a lease has not spent when it ends goes back to the shared bucket
(with the key's next statement, or a sweep `lease_s` later), so every token is spent at most once,
by one worker: one shared budget. Concurrent requests for a key wait for the one statement in flight
and share its batch (or its refusal), so 50 requests at once cost one round trip, not 50.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from cozy_actors.storage.db import Database

LEASE_S = 0.5  # how long a worker keeps tokens it took for a key before unspent ones go back
BATCH_SHARE = 0.1  # at most this share of a key's burst is held by one worker's lease

# $1 key, $2 rate (tokens/s), $3 burst, $4 tokens wanted (all or nothing; 0: only give back),
# $5 tokens given back. `refill` is the bucket after the time since its last touch, `level` the
# bucket with what is given back: least(burst, tokens + elapsed * rate + back).
_REFILL = "least($3::float8, b.tokens + greatest(0, extract(epoch FROM now() - b.ts)) * $2::float8)"
_LEVEL = f"least($3::float8, {_REFILL} + $5::float8)"
_TAKE = f"""
INSERT INTO rate_buckets AS b (key, tokens, ts, allowed, expires_at)
VALUES ($1, CASE WHEN $3::float8 >= $4::float8 THEN $3::float8 - $4::float8 ELSE $3::float8 END, now(),
        $3::float8 >= $4::float8, now() + make_interval(secs => $3::float8 / $2::float8 + 1))
ON CONFLICT (key) DO UPDATE SET
    tokens = CASE WHEN {_LEVEL} >= $4::float8 THEN {_LEVEL} - $4::float8 ELSE {_LEVEL} END,
    allowed = {_LEVEL} >= $4::float8,
    ts = now(),
    expires_at = now() + make_interval(secs => $3::float8 / $2::float8 + 1)
RETURNING allowed, tokens
"""
_PURGE = "DELETE FROM rate_buckets WHERE expires_at < now()"


@dataclass(slots=True)
class _Lease:
    tokens: int  # taken from the shared bucket and not spent yet
    until: float  # monotonic time it ends: what is left then goes back
    want: int  # what its last statement asked for
    rate: float
    burst: int


class PgBuckets:
    """`take` returns (allowed, seconds until one token is back); raises STORAGE_* when down."""

    def __init__(
        self,
        db: Database,
        *,
        purge_every_s: float = 60.0,
        lease_s: float = LEASE_S,
        batch_share: float = BATCH_SHARE,
    ) -> None:
        self.db = db
        self.purge_every_s = purge_every_s
        self.lease_s = lease_s
        self.batch_share = batch_share
        self.statements = 0  # take statements sent (tests and benchmarks: the point of the leases)
        self._next_purge = time.monotonic() + purge_every_s
        self._purge: asyncio.Task[str] | None = None
        self._leases: dict[str, _Lease] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._returning: set[asyncio.Task[tuple[bool, float]]] = set()  # give-backs in flight
        self._flights: dict[str, asyncio.Future[tuple[bool, float] | None]] = {}  # key -> its statement

    async def take(self, key: str, rate: float, burst: int, cost: int = 1) -> tuple[bool, float]:
        if cost < 0:  # a refund goes straight back to the shared bucket: any worker may spend it
            await self._statement(key, rate, burst, 0, -cost)
            return True, 0.0
        while True:
            lease = self._leases.get(key)
            if (
                lease is not None
                and lease.tokens >= cost
                and lease.rate == rate
                and lease.burst == burst
                and time.monotonic() < lease.until
            ):
                lease.tokens -= cost
                return True, 0.0
            flight = self._flights.get(key)
            if flight is None:
                break
            # One statement a key at a time: concurrent requests wait for its batch, not send their own.
            refused = await asyncio.shield(flight)
            if refused is not None:
                return refused  # the bucket had less than a token a moment ago
        flight = self._flights[key] = asyncio.get_running_loop().create_future()
        outcome: tuple[bool, float] | None = None
        try:
            outcome = await self._fetch(key, rate, burst, cost)
            return outcome
        finally:
            del self._flights[key]
            flight.set_result(outcome if outcome is not None and not outcome[0] else None)

    async def _fetch(self, key: str, rate: float, burst: int, cost: int) -> tuple[bool, float]:
        """One statement (two when a batch is refused but a token is left): a new lease, or not."""
        now = time.monotonic()
        lease = self._leases.get(key)
        if lease is not None and lease.rate == rate and lease.burst == burst:
            # Ran out within its time: ask for twice as much; ended: for what it used.
            want = lease.want * 2 if now < lease.until else lease.want - lease.tokens
        else:
            want = cost
        back = 0
        if lease is not None:  # what it has left goes back in this very statement
            back = lease.tokens
            del self._leases[key]
        cap = int(burst * self.batch_share)
        want = max(cost, min(want, cap)) if cap >= 2 else cost
        allowed, tokens = await self._statement(key, rate, burst, want, back)
        if not allowed and want > cost and tokens >= cost:  # too few for a batch: just this request's
            want = cost
            allowed, tokens = await self._statement(key, rate, burst, want, 0)
        if not allowed:
            return False, (1 - tokens) / rate
        if cap >= 2:  # kept even when empty: how fast it ran out sizes the next batch
            self._keep(key, _Lease(want - cost, time.monotonic() + self.lease_s, want, rate, burst))
        return True, 0.0

    async def _statement(self, key: str, rate: float, burst: int, want: int, back: int) -> tuple[bool, float]:
        self.statements += 1
        row = await self.db.fetchrow("ratelimit", _TAKE, key, rate, burst, want, back)
        assert row is not None
        self._maybe_purge()
        return bool(row["allowed"]), float(row["tokens"])

    def _keep(self, key: str, lease: _Lease) -> None:
        """Hold `lease` for `key` (merged with one another request took meanwhile); sweep later."""
        old = self._leases.get(key)
        if old is not None and old.rate == lease.rate and old.burst == lease.burst:
            lease.tokens += old.tokens
        elif old is not None:
            self._give_back(key, old)
        self._leases[key] = lease
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.lease_s, self._sweep_ended)

    def _sweep_ended(self) -> None:
        """Leases past their time give their unspent tokens back (keys nobody checks any more)."""
        self._sweep = None
        now = time.monotonic()
        for key, lease in list(self._leases.items()):
            if lease.until <= now:
                del self._leases[key]
                self._give_back(key, lease)
        if self._leases:  # next when the first of the others ends
            due = min(lease.until for lease in self._leases.values()) - now
            self._sweep = asyncio.get_running_loop().call_later(max(self.lease_s / 4, due), self._sweep_ended)

    def _give_back(self, key: str, lease: _Lease) -> None:
        if lease.tokens <= 0:
            return
        task = asyncio.create_task(self._statement(key, lease.rate, lease.burst, 0, lease.tokens))
        self._returning.add(task)
        task.add_done_callback(self._returned)

    def _returned(self, task: asyncio.Task[tuple[bool, float]]) -> None:
        self._returning.discard(task)
        if not task.cancelled():
            task.exception()  # the database is down: those tokens come back by refilling anyway

    def _maybe_purge(self) -> None:
        """Expired buckets go in the background, at most once a minute (never on the request's time)."""
        now = time.monotonic()
        if now < self._next_purge or (self._purge is not None and not self._purge.done()):
            return
        self._next_purge = now + self.purge_every_s
        self._purge = asyncio.create_task(self.db.execute("ratelimit.purge", _PURGE), name="cozy-rl-purge")
        self._purge.add_done_callback(lambda t: t.cancelled() or t.exception())
