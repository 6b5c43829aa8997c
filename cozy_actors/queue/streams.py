"""Background writes on Redis Streams: durable, shared by every node, at-least-once.

One stream per topic (`<prefix>:stream:<topic>`) and one consumer group (`writers`); each node is a
consumer. An entry is acknowledged and deleted once its handler succeeded, so the stream length is
the backlog. A failed entry stays pending; after `retry_after_s` idle it is claimed again (which
also rescues entries of a node that died mid-batch), and after `max_attempts` deliveries it moves
to `<prefix>:dead:<topic>` for an operator to inspect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import orjson
from redis.exceptions import RedisError, ResponseError

from cozy_actors.cache.link import RedisDown, RedisLink
from cozy_actors.observability.metrics import QUEUE_BACKLOG, QUEUE_EVENTS
from cozy_core.aio import cancel_and_wait

from .base import Handler, Payload, QueuePolicy

log = logging.getLogger("cozy.queue")
GROUP = "writers"
_MAXLEN = 1_000_000  # approximate cap per stream: a runaway producer must not eat Redis memory


class StreamQueue:
    backend = "redis"

    def __init__(self, link: RedisLink, policy: QueuePolicy, *, consumer: str | None = None) -> None:
        self.link = link
        self.policy = policy
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._handlers: dict[str, Handler] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._groups: set[str] = set()
        self._backlog: dict[str, int] = {}
        self._maxlen: dict[str, int | None] = {}

    def stream(self, topic: str) -> str:
        return self.link.key("stream", topic)

    def dead_stream(self, topic: str) -> str:
        return self.link.key("dead", topic)

    def register(self, topic: str, handler: Handler, *, bounded: bool = True) -> None:
        self._handlers[topic] = handler
        self._maxlen[topic] = _MAXLEN if bounded else None  # None: the stream is never trimmed

    async def publish(self, topic: str, payload: Payload) -> None:
        """XADD; raises RedisDown (the caller falls back to the in-process queue)."""
        data = orjson.dumps(payload)
        key, maxlen = self.stream(topic), self._maxlen.get(topic, _MAXLEN)
        await self.link.call("queue", lambda r: r.xadd(key, {"data": data}, maxlen=maxlen, approximate=True))

    def backlog(self, topic: str) -> int:
        return self._backlog.get(topic, 0)

    async def start(self) -> None:
        for topic in self._handlers:
            if topic not in self._tasks:
                self._tasks[topic] = asyncio.create_task(self._consume(topic), name=f"stream-{topic}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop consuming; entries left in the stream are picked up by the next process (durable)."""
        tasks, self._tasks = self._tasks, {}
        await cancel_and_wait(*tasks.values(), timeout=timeout)  # a single cancel can be lost (3.11)

    async def _ensure_group(self, topic: str) -> None:
        if topic in self._groups:
            return
        try:
            await self.link.client.xgroup_create(self.stream(topic), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(topic)

    async def _consume(self, topic: str) -> None:
        handler = self._handlers[topic]
        key = self.stream(topic)
        block_ms = int(self.policy.block_s * 1000)
        while True:
            if not self.link.available:
                await asyncio.sleep(min(1.0, self.link.retry_s))
                continue
            try:
                await self._ensure_group(topic)
                await self._retry_pending(topic, handler)
                reader = self.link.blocking_client(self.policy.block_s)
                resp = await reader.xreadgroup(
                    GROUP, self.consumer, {key: ">"}, count=self.policy.batch_size, block=block_ms
                )
                entries = [(eid, fields) for _, items in resp or [] for eid, fields in items]
                if entries:
                    await self._process(topic, handler, entries)
                self._backlog[topic] = int(await self.link.client.xlen(key))
                QUEUE_BACKLOG.labels(topic, self.backend).set(self._backlog[topic])
                self.link.succeeded()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                self._groups.discard(topic)  # a restarted Redis may have lost the group
                self.link.failed(f"queue:{topic}", exc)
                await asyncio.sleep(min(1.0, self.link.retry_s))
            except Exception:
                log.exception("stream consumer %s failed; continuing", topic)
                await asyncio.sleep(1.0)

    async def _process(self, topic: str, handler: Handler, entries: list[tuple[Any, dict[Any, Any]]]) -> None:
        key = self.stream(topic)
        decoded = [(eid, orjson.loads(fields[b"data"])) for eid, fields in entries if b"data" in fields]
        done: list[Any] = [eid for eid, fields in entries if b"data" not in fields]  # malformed: drop
        try:
            await handler([p for _, p in decoded])
            done += [eid for eid, _ in decoded]
            QUEUE_EVENTS.labels(topic, "ok").inc(len(decoded))
        except Exception as exc:
            if len(decoded) > 1:
                for eid, payload in decoded:
                    try:
                        await handler([payload])
                    except Exception as one_exc:
                        QUEUE_EVENTS.labels(topic, "retried").inc()
                        log.warning("background write %s %s failed, will retry: %r", topic, eid, one_exc)
                    else:
                        done.append(eid)
                        QUEUE_EVENTS.labels(topic, "ok").inc()
            else:
                QUEUE_EVENTS.labels(topic, "retried").inc(len(decoded))
                log.warning("background write %s failed, will retry: %r", topic, exc)
        if done:
            async with self.link.client.pipeline(transaction=False) as pipe:
                pipe.xack(key, GROUP, *done)
                pipe.xdel(key, *done)
                await pipe.execute()

    async def _retry_pending(self, topic: str, handler: Handler) -> None:
        """Claim entries idle past `retry_after_s`; dead-letter those delivered `max_attempts` times."""
        key = self.stream(topic)
        idle_ms = int(self.policy.retry_after_s * 1000)
        client = self.link.client
        pending = await client.xpending_range(key, GROUP, "-", "+", self.policy.batch_size, idle=idle_ms)
        if not pending:
            return
        dead = [p["message_id"] for p in pending if p["times_delivered"] >= self.policy.max_attempts]
        retry = [p["message_id"] for p in pending if p["times_delivered"] < self.policy.max_attempts]
        for eid in dead:
            found = await client.xrange(key, eid, eid)
            fields = found[0][1] if found else {b"data": b"null"}
            await client.xadd(self.dead_stream(topic), {**fields, b"source_id": eid}, maxlen=_MAXLEN, approximate=True)
            await client.xack(key, GROUP, eid)
            await client.xdel(key, eid)
            QUEUE_EVENTS.labels(topic, "dead").inc()
            log.error("background write %s %s dead-lettered after %d attempts", topic, eid, self.policy.max_attempts)
        if retry:
            claimed = await client.xclaim(key, GROUP, self.consumer, idle_ms, retry)
            entries = [(eid, fields) for eid, fields in claimed if fields]
            if entries:
                await self._process(topic, handler, entries)


__all__ = ["GROUP", "RedisDown", "StreamQueue"]
