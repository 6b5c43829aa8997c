"""Background write queue: Redis Streams when Redis is configured and up, in-process otherwise.

Used for writes that may lag a little (audit events now, memory/profile updates later), never for
chat messages, which are written synchronously. `publish` never fails a caller: with Redis down it
falls back to the in-process queue, whose worker runs in every process.
"""

from __future__ import annotations

from cozy_actors.cache.link import RedisDown, RedisLink

from .base import Handler, Payload, QueuePolicy
from .local import LocalQueue
from .streams import StreamQueue


class WriteQueue:
    def __init__(self, policy: QueuePolicy, link: RedisLink | None = None) -> None:
        self.local = LocalQueue(policy)
        self.streams = StreamQueue(link, policy) if link is not None else None
        self.link = link

    @property
    def backend(self) -> str:
        return "redis" if self.streams is not None else "memory"

    def register(self, topic: str, handler: Handler, *, bounded: bool = True) -> None:
        """`bounded=False`: entries of this topic are never dropped for space (the in-process queue
        grows, the Redis stream is not trimmed); for writes that must not be lost, e.g. admin audit."""
        self.local.register(topic, handler, bounded=bounded)
        if self.streams is not None:
            self.streams.register(topic, handler, bounded=bounded)

    async def publish(self, topic: str, payload: Payload) -> None:
        if self.streams is not None and self.link is not None and self.link.available:
            try:
                await self.streams.publish(topic, payload)
                return
            except RedisDown:
                pass
        self.local.publish_nowait(topic, payload)

    def backlog(self) -> dict[str, int]:
        """Entries not yet written, per topic (in-process plus what this node last saw in Redis)."""
        topics = self.local.topics()
        return {t: self.local.backlog(t) + (self.streams.backlog(t) if self.streams else 0) for t in sorted(topics)}

    async def start(self) -> None:
        await self.local.start()
        if self.streams is not None:
            await self.streams.start()

    async def stop(self, timeout: float = 5.0) -> None:
        if self.streams is not None:
            await self.streams.stop(timeout)
        await self.local.stop(timeout)


__all__ = ["Handler", "LocalQueue", "Payload", "QueuePolicy", "StreamQueue", "WriteQueue"]
