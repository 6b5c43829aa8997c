"""In-process background queue (asyncio): the backend without Redis, and the fallback while it is down.

Same contract as the Redis Streams one (batches, retries, dead letters after `max_attempts`), but
not durable: entries still queued when the process dies are lost, which is why chat messages are
never written through a queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from cozy_actors.observability.metrics import QUEUE_BACKLOG, QUEUE_EVENTS
from cozy_core.aio import cancel_and_wait

from .base import Handler, Payload, QueuePolicy

log = logging.getLogger("cozy.queue")


@dataclass
class _Entry:
    payload: Payload
    attempts: int = 0


class LocalQueue:
    backend = "memory"

    def __init__(self, policy: QueuePolicy, *, max_size: int = 100_000, max_dead: int = 1000) -> None:
        self.policy = policy
        self.max_size = max_size
        self._handlers: dict[str, Handler] = {}
        self._queues: dict[str, asyncio.Queue[_Entry]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._delayed: set[asyncio.TimerHandle] = set()
        self.dead: dict[str, deque[Payload]] = {}
        self._max_dead = max_dead
        self._busy: dict[str, int] = {}  # entries being processed now
        self._waiting: dict[str, int] = {}  # failed entries waiting for their retry
        self._unbounded: set[str] = set()

    def register(self, topic: str, handler: Handler, *, bounded: bool = True) -> None:
        self._handlers[topic] = handler
        if not bounded:
            self._unbounded.add(topic)
        self._queues.setdefault(topic, asyncio.Queue())
        self.dead.setdefault(topic, deque(maxlen=self._max_dead))
        self._busy.setdefault(topic, 0)
        self._waiting.setdefault(topic, 0)

    def publish_nowait(self, topic: str, payload: Payload) -> None:
        queue = self._queues.get(topic)
        if queue is None:
            raise KeyError(f"no handler registered for topic {topic!r}")
        if queue.qsize() >= self.max_size and topic not in self._unbounded:
            QUEUE_EVENTS.labels(topic, "dropped").inc()
            log.error("background queue %s is full (%d entries): dropping an entry", topic, queue.qsize())
            return
        queue.put_nowait(_Entry(payload))
        self._gauge(topic)

    def topics(self) -> list[str]:
        return sorted(self._handlers)

    def backlog(self, topic: str) -> int:
        queue = self._queues.get(topic)
        return 0 if queue is None else queue.qsize() + self._busy.get(topic, 0) + self._waiting.get(topic, 0)

    def _gauge(self, topic: str) -> None:
        QUEUE_BACKLOG.labels(topic, self.backend).set(self.backlog(topic))

    async def start(self) -> None:
        for topic in self._handlers:
            if topic not in self._workers:
                self._workers[topic] = asyncio.create_task(self._work(topic), name=f"queue-{topic}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Process what is queued (up to `timeout`), then stop the workers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(self.backlog(t) for t in self._queues) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
        workers, self._workers = self._workers, {}
        await cancel_and_wait(*workers.values(), timeout=max(1.0, deadline - loop.time()))
        left = {t: self.backlog(t) for t in self._queues if self.backlog(t)}
        if left:
            log.error("background queue stopped with unprocessed entries: %s", left)

    async def _work(self, topic: str) -> None:
        queue = self._queues[topic]
        handler = self._handlers[topic]
        while True:
            batch = [await queue.get()]
            while len(batch) < self.policy.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            self._busy[topic] = len(batch)
            try:
                await self._process(topic, handler, batch)
            finally:
                self._busy[topic] = 0
                self._gauge(topic)

    async def _process(self, topic: str, handler: Handler, batch: list[_Entry]) -> None:
        try:
            await handler([e.payload for e in batch])
        except Exception as exc:
            if len(batch) == 1:
                self._failed(topic, batch[0], exc)
                return
            for entry in batch:  # isolate the poison entry, if there is one
                try:
                    await handler([entry.payload])
                except Exception as one_exc:
                    self._failed(topic, entry, one_exc)
                else:
                    QUEUE_EVENTS.labels(topic, "ok").inc()
            return
        QUEUE_EVENTS.labels(topic, "ok").inc(len(batch))

    def _failed(self, topic: str, entry: _Entry, exc: BaseException) -> None:
        entry.attempts += 1
        if entry.attempts >= self.policy.max_attempts:
            self.dead[topic].append(entry.payload)
            QUEUE_EVENTS.labels(topic, "dead").inc()
            log.error("background write %s dead-lettered after %d attempts: %r", topic, entry.attempts, exc)
            return
        QUEUE_EVENTS.labels(topic, "retried").inc()
        log.warning("background write %s failed (attempt %d), retrying: %r", topic, entry.attempts, exc)
        queue = self._queues[topic]
        self._waiting[topic] += 1

        def requeue() -> None:
            self._delayed.discard(handle)
            self._waiting[topic] -= 1
            queue.put_nowait(entry)

        handle = asyncio.get_running_loop().call_later(self.policy.retry_after_s, requeue)
        self._delayed.add(handle)
