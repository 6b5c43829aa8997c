"""What the realtime tests receive, kept in arrival order so a test can wait for an event type.

Events reach the tests over an SDK connection, a raw WebSocket or a WebRTC data channel, as SDK
objects or JSON dicts; the waiting is the same, so it is written once here. A subclass says how
its events arrive (`follow` an async iterable, or call `record` from a callback) and, where they
are not dicts with a "type", how an event's type is read (`type_of`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable
from typing import Any, Generic, TypeVar

E = TypeVar("E")


class Recorder(Generic[E]):
    """Received events with their arrival times (`items`: (perf_counter, event) pairs)."""

    timeout: float = 20.0  # the default wait, in seconds: a subclass may allow more

    def __init__(self) -> None:
        self.items: list[tuple[float, E]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def type_of(self, event: E) -> str | None:
        """An event's type; JSON events by default (an SDK object or a lax dict overrides this)."""
        return event["type"]

    def record(self, event: E) -> None:
        """Keep `event` and wake whoever waits (for a source that calls back)."""
        self.items.append((time.perf_counter(), event))
        self._changed.set()

    def follow(self, source: AsyncIterable[Any], decode: Callable[[Any], E] = lambda e: e) -> None:
        """Record everything `source` yields, decoded, in a background task that `close` stops."""

        async def run() -> None:
            async for raw in source:
                self.record(decode(raw))

        self._task = asyncio.create_task(run())

    @property
    def events(self) -> list[E]:
        """The events alone, in arrival order."""
        return [e for _, e in self.items]

    def of(self, etype: str) -> list[E]:
        return [e for _, e in self.items if self.type_of(e) == etype]

    def times(self, etype: str) -> list[float]:
        """When each event of `etype` arrived (perf_counter seconds)."""
        return [t for t, e in self.items if self.type_of(e) == etype]

    async def until(self, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until `done()` holds, re-checked on every new event; TimeoutError past `timeout`."""
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def wait(self, etype: str, count: int = 1, timeout: float | None = None) -> list[E]:
        """The events of `etype` once there are at least `count` of them."""
        await self.until(lambda: len(self.of(etype)) >= count, timeout)
        return self.of(etype)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
