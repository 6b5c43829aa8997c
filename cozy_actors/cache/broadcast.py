"""Cluster notices: "personalities reloaded", "tools refreshed", "key revoked", "session deleted".

Why: several worker processes (`cozy serve --workers N`) and nodes behind a load balancer share
PostgreSQL and maybe Redis (DESIGN, Placement); an admin's reload reaches one of them, and every
one must then serve the same personalities and tools. A process publishes what it did; the
others do the same on receipt. The notices go over Redis pub/sub when Redis is configured, else
over PostgreSQL LISTEN/NOTIFY (pg_broadcast.py), which every deployment has. Both lose messages
while a process is disconnected, so one that (re)subscribes runs every handler once to catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from cozy_core.aio import cancel_and_wait

from .link import RedisDown, RedisLink

if TYPE_CHECKING:
    from cozy_actors.storage.db import Database

log = logging.getLogger("cozy.broadcast")

# A handler gets the notice's data, or None after a (re)subscription: "you may have missed some".
Handler = Callable[[dict[str, Any] | None], Awaitable[Any]]


class Notices:
    """What both backends share: handlers by action, decoding, and skipping our own notices."""

    def __init__(self, node_id: str | None = None) -> None:
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self._handlers: dict[str, Handler] = {}
        self._task: asyncio.Task[None] | None = None
        self.received = 0  # notices from other nodes acted on (tests, metrics)

    def on(self, action: str, handler: Handler) -> None:
        """Run `handler(data)` when another node announces `action`."""
        self._handlers[action] = handler

    def encode(self, action: str, data: dict[str, Any] | None) -> bytes:
        return orjson.dumps({"action": action, "origin": self.node_id, "data": data or {}})

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)  # a single cancel can be lost inside redis-py on Python 3.11

    async def catch_up(self) -> None:
        """After a (re)subscription: notices sent meanwhile are lost, so every handler runs once."""
        for action in list(self._handlers):
            await self._run(action, None)

    async def _dispatch(self, data: Any) -> None:
        try:
            notice = orjson.loads(data)
            action, origin, data = notice["action"], notice["origin"], dict(notice.get("data") or {})
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            log.warning("ignored a malformed broadcast: %r", data)
            return
        if origin != self.node_id and action in self._handlers:
            await self._run(action, data)

    async def _run(self, action: str, data: dict[str, Any] | None) -> None:
        try:
            await self._handlers[action](data)
            self.received += 1
        except Exception:
            log.exception("broadcast handler for %s failed", action)


class Broadcaster(Notices):
    """Over Redis pub/sub; with `link=None` publishing does nothing (one process, nothing to tell)."""

    def __init__(self, link: RedisLink | None, *, node_id: str | None = None) -> None:
        super().__init__(node_id)
        self.link = link
        self.channel = link.key("broadcast") if link is not None else ""

    async def publish(self, action: str, data: dict[str, Any] | None = None) -> None:
        """Tell the other nodes; a Redis outage only logs (this node already did the work)."""
        if self.link is None:
            return
        message = self.encode(action, data)
        try:
            await self.link.call("broadcast", lambda r: r.publish(self.channel, message))
        except RedisDown as exc:
            log.warning("could not tell other nodes about %s: %s", action, exc)

    async def start(self) -> None:
        if self.link is not None and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="cozy-broadcast")

    async def _listen(self) -> None:
        assert self.link is not None
        first = True
        while True:
            client = self.link.subscriber_client()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if not first:  # notices sent while we were away are lost: catch up once
                    await self.catch_up()
                first = False
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None:
                        await self._dispatch(message.get("data"))
            except (RedisError, OSError, TimeoutError) as exc:
                self.link.failed("broadcast", exc)
                await asyncio.sleep(self.link.retry_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()


def make_broadcaster(link: RedisLink | None, db: Database | None) -> Notices:
    """Redis pub/sub when Redis is configured, else PostgreSQL LISTEN/NOTIFY on `db`."""
    if link is not None or db is None:
        return Broadcaster(link)
    from .pg_broadcast import PgBroadcaster

    return PgBroadcaster(db)
