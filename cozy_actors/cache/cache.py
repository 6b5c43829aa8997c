"""Two-level cache: an in-process TTL map (L1) in front of Redis (L2, shared by every node).

Without Redis, or while it is down, the L1 alone answers: same interface, only not shared. Values
are JSON-serialisable (orjson); what is cached is always reproducible from its source of truth.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import orjson

from .link import RedisDown, RedisLink

_MISSING = object()


class TTLCache:
    """Bounded in-process map whose entries expire; least recently used entries go first."""

    def __init__(self, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return default
        if entry[0] <= time.monotonic():
            del self._data[key]
            return default
        self._data.move_to_end(key)
        return entry[1]

    def set(self, key: str, value: Any, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        self._data[key] = (time.monotonic() + ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_items:
            self._data.popitem(last=False)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class Cache:
    """`namespace` keeps users apart (`<prefix>:cache:<namespace>:<key>` in Redis)."""

    def __init__(
        self, namespace: str, link: RedisLink | None = None, *, l1_ttl_s: float = 5.0, max_items: int = 10_000
    ) -> None:
        self.namespace = namespace
        self.link = link
        self.l1_ttl_s = l1_ttl_s
        self.l1 = TTLCache(max_items)

    def _rkey(self, key: str) -> str:
        assert self.link is not None
        return self.link.key("cache", self.namespace, key)

    async def get(self, key: str) -> Any:
        """The value, or None when absent (L1 first, then Redis, which also refills L1)."""
        value = self.l1.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if self.link is None or not self.link.available:
            return None
        try:
            raw = await self.link.call("cache", lambda r: r.get(self._rkey(key)))
        except RedisDown:
            return None
        if raw is None:
            return None
        value = orjson.loads(raw)
        self.l1.set(key, value, self.l1_ttl_s)
        return value

    async def set(self, key: str, value: Any, ttl_s: float) -> None:
        self.l1.set(key, value, min(ttl_s, self.l1_ttl_s) if self.link is not None else ttl_s)
        if self.link is None or not self.link.available:
            return
        payload = orjson.dumps(value)
        try:
            await self.link.call("cache", lambda r: r.set(self._rkey(key), payload, px=max(1, int(ttl_s * 1000))))
        except RedisDown:
            pass

    async def delete(self, key: str) -> None:
        self.l1.delete(key)
        if self.link is None or not self.link.available:
            return
        try:
            await self.link.call("cache", lambda r: r.delete(self._rkey(key)))
        except RedisDown:
            pass
