"""Token-bucket rate limiting per API key: one atomic Lua call in Redis (shared by every node); without
Redis, atomic upserts in PostgreSQL (a busy key takes its tokens in batches) when several worker
processes share the port (pg_buckets.py); else, or while the shared store is down, an in-process
bucket map (then each process limits on its own)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from cozy_core.errors import CozyError

from .link import RedisDown, RedisLink
from .pg_buckets import PgBuckets

# KEYS[1] bucket; ARGV: rate (tokens/s), burst, cost (1: take a token; -1: give one back).
# Server time, so nodes with skewed clocks agree.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3] or '1')
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if cost < 0 then
  tokens = math.min(burst, tokens - cost)
  allowed = 1
elseif tokens >= 1 then
  tokens = tokens - cost
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0  # when refused: how long until one token is back

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1 (the HTTP header has no fractions)."""
        return str(max(1, math.ceil(self.retry_after_s)))


class LocalBuckets:
    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, rate: float, burst: int, cost: int = 1) -> Decision:
        """Take `cost` tokens (a negative cost gives tokens back, up to `burst`)."""
        now = time.monotonic()
        tokens, ts = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - ts) * rate)
        if cost < 0:
            decision = Decision(True)
            tokens = min(float(burst), tokens - cost)
        elif tokens >= 1:
            decision = Decision(True)
            tokens -= cost
        else:
            decision = Decision(False, (1 - tokens) / rate)
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return decision


class RateLimiter:
    def __init__(
        self,
        *,
        requests_per_minute: float,
        burst: int,
        link: RedisLink | None = None,
        enabled: bool = True,
        shared: PgBuckets | None = None,
    ) -> None:
        self.default_rpm = requests_per_minute
        self.burst = burst
        self.link = link
        self.shared = shared if link is None else None  # Redis, when configured, is the shared store
        self.enabled = enabled
        self.local = LocalBuckets()
        self._script = link.client.register_script(_LUA) if link is not None else None

    async def check(self, key: str, rpm: float | None = None, burst: int | None = None) -> Decision:
        """Take one token from `key`'s bucket (`rpm`/`burst` override the defaults, e.g. per API key)."""
        return await self._take(key, rpm, burst, 1)

    async def refund(self, key: str, rpm: float | None = None, burst: int | None = None) -> None:
        """Give back the token a `check` took, when what it guarded turned out not to count (a limit
        on failures takes before the work, so concurrent attempts cannot overshoot it)."""
        await self._take(key, rpm, burst, -1)

    async def _take(self, key: str, rpm: float | None, burst: int | None, cost: int) -> Decision:
        if not self.enabled:
            return Decision(True)
        rate = (rpm or self.default_rpm) / 60.0
        burst = burst or self.burst
        if self.link is not None and self.link.available and self._script is not None:
            script = self._script
            rkey = self.link.key("rl", key)
            try:
                args = [rate, burst, cost]
                allowed, wait = await self.link.call("ratelimit", lambda r: script(keys=[rkey], args=args))
            except RedisDown:
                pass
            else:
                return Decision(bool(int(allowed)), float(wait))
        elif self.shared is not None:
            try:
                ok, wait = await self.shared.take(key, rate, burst, cost)
            except CozyError:  # the database is down: this process limits on its own meanwhile
                pass
            else:
                return Decision(ok, wait)
        return self.local.take(key, rate, burst, cost)
