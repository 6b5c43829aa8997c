"""Token buckets in PostgreSQL: rate limits shared by worker processes when there is no Redis.

Why: with `cozy serve --workers N` and no Redis, per-process buckets would let each caller make
N times its limit. One upsert per check takes (or refuses) a token atomically under the row's
lock, with the server's clock, exactly as the Redis Lua script does (ratelimit.py). Buckets
untouched for longer than a refill are full again, so a purge every minute deletes them.
"""

from __future__ import annotations

import asyncio
import time

from cozy_actors.storage.db import Database

# $1 key, $2 rate (tokens/s), $3 burst, $4 cost (1: take; -1: give back). `refill` is the bucket
# after the time since its last touch: least(burst, tokens + elapsed * rate).
_REFILL = "least($3::float8, b.tokens + greatest(0, extract(epoch FROM now() - b.ts)) * $2::float8)"
_TAKE = f"""
INSERT INTO rate_buckets AS b (key, tokens, ts, allowed, expires_at)
VALUES ($1, least($3::float8, $3::float8 - $4::float8), now(), true,
        now() + make_interval(secs => $3::float8 / $2::float8 + 1))
ON CONFLICT (key) DO UPDATE SET
    tokens = CASE WHEN $4 < 0 THEN least($3::float8, {_REFILL} - $4::float8)
                  WHEN {_REFILL} >= 1 THEN {_REFILL} - $4::float8
                  ELSE {_REFILL} END,
    allowed = ($4 < 0 OR {_REFILL} >= 1),
    ts = now(),
    expires_at = now() + make_interval(secs => $3::float8 / $2::float8 + 1)
RETURNING allowed, tokens
"""
_PURGE = "DELETE FROM rate_buckets WHERE expires_at < now()"


class PgBuckets:
    """`take` returns (allowed, seconds until one token is back); raises STORAGE_* when down."""

    def __init__(self, db: Database, *, purge_every_s: float = 60.0) -> None:
        self.db = db
        self.purge_every_s = purge_every_s
        self._next_purge = time.monotonic() + purge_every_s
        self._purge: asyncio.Task[str] | None = None

    async def take(self, key: str, rate: float, burst: int, cost: int = 1) -> tuple[bool, float]:
        row = await self.db.fetchrow("ratelimit", _TAKE, key, rate, burst, cost)
        assert row is not None
        self._maybe_purge()
        allowed, tokens = bool(row["allowed"]), float(row["tokens"])
        return allowed, 0.0 if allowed else (1 - tokens) / rate

    def _maybe_purge(self) -> None:
        """Expired buckets go in the background, at most once a minute (never on the request's time)."""
        now = time.monotonic()
        if now < self._next_purge or (self._purge is not None and not self._purge.done()):
            return
        self._next_purge = now + self.purge_every_s
        self._purge = asyncio.create_task(self.db.execute("ratelimit.purge", _PURGE), name="cozy-rl-purge")
        self._purge.add_done_callback(lambda t: t.cancelled() or t.exception())
