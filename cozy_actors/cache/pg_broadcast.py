"""Cluster notices over PostgreSQL LISTEN/NOTIFY: the broadcast when Redis is not configured.

Why: `cozy serve --workers N` on the embedded defaults has no Redis, yet an admin's reload or a
key revocation that reaches one worker must take effect on all of them (DESIGN, Placement). Every
deployment has PostgreSQL: a notice is one `pg_notify` through the pool, and each process listens
on its own dedicated connection (LISTEN holds a session, so never a pooled one). A lost
connection is noticed at once (asyncpg's termination callback) or by a ping every `ping_s`; the
listener reconnects and catches up like the Redis path (notices sent meanwhile are lost).
NOTIFY is per database, so deployments sharing a PostgreSQL server never hear each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from cozy_actors.storage.db import Database
from cozy_core.errors import CozyError

from .broadcast import Notices

log = logging.getLogger("cozy.broadcast")
CHANNEL = "cozy_broadcast"
_LOST = object()  # queued by the termination callback: reconnect now


class PgBroadcaster(Notices):
    def __init__(
        self,
        db: Database,
        *,
        node_id: str | None = None,
        channel: str = CHANNEL,
        retry_s: float = 1.0,
        ping_s: float = 5.0,
    ) -> None:
        super().__init__(node_id)
        self.db = db
        self.channel = channel
        self.retry_s = retry_s
        self.ping_s = ping_s
        self.listening = asyncio.Event()  # set while LISTEN is active (tests wait for it)
        self.reconnects = 0

    async def publish(self, action: str, data: dict[str, Any] | None = None) -> None:
        """Tell the other processes; a database outage only logs (this one already did the work)."""
        payload = self.encode(action, data).decode()
        try:
            await self.db.execute("broadcast", "SELECT pg_notify($1, $2)", self.channel, payload)
        except CozyError as exc:
            log.warning("could not tell other workers about %s: %s", action, exc)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="cozy-pg-broadcast")

    async def close(self) -> None:
        await super().close()
        self.listening.clear()

    async def _listen(self) -> None:
        first = True
        while True:
            conn: asyncpg.Connection | None = None
            queue: asyncio.Queue[Any] = asyncio.Queue()
            try:
                conn = await self._subscribe(queue)
                self.listening.set()
                if not first:
                    self.reconnects += 1
                    log.info("broadcast: listening again on PostgreSQL; catching up")
                    await self.catch_up()
                first = False
                await self._receive(conn, queue)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("broadcast: PostgreSQL listener lost (%s); retrying in %.0f s", exc, self.retry_s)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
                    if not conn.is_closed():
                        conn.terminate()
            await asyncio.sleep(self.retry_s)

    async def _subscribe(self, queue: asyncio.Queue[Any]) -> asyncpg.Connection:
        """A dedicated connection that LISTENs; notices and its loss land in `queue`."""
        conn = await asyncpg.connect(self.db.url, timeout=self.db.connect_timeout_s)
        try:
            conn.add_termination_listener(lambda _conn: queue.put_nowait(_LOST))
            await conn.add_listener(self.channel, lambda _c, _pid, _ch, payload: queue.put_nowait(payload))
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _receive(self, conn: asyncpg.Connection, queue: asyncio.Queue[Any]) -> None:
        """Dispatch notices until the connection is lost (termination callback or a failed ping)."""
        while True:
            try:
                payload = await asyncio.wait_for(queue.get(), self.ping_s)
            except TimeoutError:
                await conn.fetchval("SELECT 1", timeout=self.ping_s)  # a dead peer raises here
                continue
            if payload is _LOST:
                raise OSError("connection closed")
            await self._dispatch(payload)
