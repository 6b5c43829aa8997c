"""One shared Redis connection with a circuit breaker.

Redis is an accelerator here, never a dependency of a chat: every caller asks `available` first and
uses its in-process fallback when it is not. A failure opens the breaker for `retry_s` (one warning,
not one per request); the next call after that tries Redis again and closes it on success. Commands
have a short timeout and no client-side retries, so a hung or dead Redis costs at most one timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from cozy_actors.observability.metrics import REDIS_FALLBACKS, REDIS_UP

log = logging.getLogger("cozy.redis")
T = TypeVar("T")


class RedisDown(Exception):
    """Redis failed or its breaker is open; use the in-process fallback."""


class RedisLink:
    def __init__(self, url: str, *, prefix: str = "cozy", timeout_s: float = 0.5, retry_s: float = 5.0) -> None:
        self.prefix = prefix
        self.retry_s = retry_s
        self._url = url
        self._timeout_s = timeout_s
        self.client = self._make(timeout_s)
        self._blocking: aioredis.Redis | None = None
        self._down_until = 0.0
        self._down_reason: str | None = None
        self.last_error: str | None = None
        REDIS_UP.set(1)

    def _make(self, timeout_s: float | None) -> aioredis.Redis:
        return aioredis.from_url(
            self._url,
            socket_timeout=timeout_s,
            socket_connect_timeout=self._timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    def subscriber_client(self) -> aioredis.Redis:
        """A fresh client for a pub/sub subscription (its reads wait for messages, so no timeout)."""
        return self._make(None)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def available(self) -> bool:
        """False while the breaker is open (Redis failed less than `retry_s` ago)."""
        return time.monotonic() >= self._down_until

    @property
    def up(self) -> bool:
        return self._down_reason is None

    def blocking_client(self, block_s: float) -> aioredis.Redis:
        """A second client for blocking reads (XREADGROUP BLOCK), whose timeout outlasts the block."""
        if self._blocking is None:
            self._blocking = self._make(block_s + max(1.0, self._timeout_s * 2))
        return self._blocking

    async def call(self, component: str, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run `fn(client)`; on failure open the breaker and raise RedisDown."""
        if not self.available:
            REDIS_FALLBACKS.labels(component).inc()
            raise RedisDown(self._down_reason or "redis unavailable")
        try:
            result = await fn(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self.failed(component, exc)
            REDIS_FALLBACKS.labels(component).inc()
            raise RedisDown(str(exc)) from exc
        self.succeeded()
        return result

    def failed(self, component: str, exc: BaseException) -> None:
        """Open the breaker; the first failure of an outage is logged as a warning."""
        reason = f"{type(exc).__name__}: {exc}"[:300]
        self.last_error = reason
        self._down_until = time.monotonic() + self.retry_s
        if self._down_reason is None:
            log.warning(
                "Redis unavailable (%s, during %s): using in-process cache, rate limiter and queue; "
                "retrying every %.0f s",
                reason,
                component,
                self.retry_s,
            )
            REDIS_UP.set(0)
        self._down_reason = reason

    def succeeded(self) -> None:
        if self._down_reason is not None:
            log.warning("Redis is back: leaving the in-process fallbacks")
            REDIS_UP.set(1)
        self._down_reason = None
        self._down_until = 0.0

    async def ping(self) -> tuple[bool, str]:
        """(ok, detail) for readiness; probes even while the breaker is open."""
        start = time.perf_counter()
        try:
            await self.client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            self.failed("ping", exc)
            return False, f"{type(exc).__name__}: {exc}"[:200]
        self.succeeded()
        return True, f"{(time.perf_counter() - start) * 1000:.1f} ms"

    async def close(self) -> None:
        for client in (self.client, self._blocking):
            if client is not None:
                try:
                    await client.aclose()
                except Exception:  # closing a dead connection must not fail shutdown
                    pass
