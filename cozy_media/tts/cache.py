"""Cache of finished speech, keyed by (text, voice, format, speed).

Why an async protocol for an in-process dict: the Redis L2 planned for multi-node deployments
drops in behind the same two calls without touching callers.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Protocol


def cache_key(text: str, voice: str, fmt: str, speed: float) -> str:
    """A stable key; the text is hashed so keys stay short and logs never show it."""
    raw = f"{voice}\x00{fmt}\x00{speed:.4f}\x00{text}".encode()
    return "tts:" + hashlib.sha256(raw).hexdigest()


class TTSCache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes) -> None: ...


class MemoryTTSCache:
    """LRU bounded by entry count and total bytes (an entry larger than a quarter is not kept)."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    async def get(self, key: str) -> bytes | None:
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return value

    async def set(self, key: str, value: bytes) -> None:
        if self.max_entries <= 0 or len(value) > self.max_bytes // 4:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._items[key] = value
        self._bytes += len(value)
        while self._items and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
            _, evicted = self._items.popitem(last=False)
            self._bytes -= len(evicted)
