"""Cluster notices over the machine's real PostgreSQL (LISTEN/NOTIFY), the broadcast without Redis:
another process acts, the sender does not, other databases never hear it, a lost listener
connection comes back and catches up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from cozy_actors.cache import RedisLink
from cozy_actors.cache.broadcast import Broadcaster, make_broadcaster
from cozy_actors.cache.pg_broadcast import PgBroadcaster
from cozy_actors.storage.db import Database
from tests.support.pg import REDIS_URL, create_database, drop_database


def recorder(
    seen: list[tuple[int, dict | None]], i: int, event: asyncio.Event, after: int = 1
) -> Callable[[dict | None], Awaitable[None]]:
    async def run(data: dict | None) -> None:
        seen.append((i, data))
        if len(seen) >= after:
            event.set()

    return run


async def test_a_notice_reaches_the_other_workers_only(db: Database) -> None:
    nodes = [PgBroadcaster(db) for _ in range(3)]
    seen: list[tuple[int, dict | None]] = []
    got = asyncio.Event()
    for i, node in enumerate(nodes):
        node.on("personalities.reload", recorder(seen, i, got, after=2))
        await node.start()
    name, url = create_database("cozy_st")  # another deployment on the same server
    other_db = Database(url)
    await other_db.start()
    other = PgBroadcaster(other_db)
    other.on("personalities.reload", recorder(seen, 9, got))
    await other.start()
    try:
        for node in (*nodes, other):
            await asyncio.wait_for(node.listening.wait(), 5)
        await db.execute("t", "SELECT pg_notify($1, $2)", nodes[0].channel, "not json")  # ignored
        await nodes[0].publish("personalities.reload", {"by": "admin"})
        await nodes[0].publish("tools.refresh")  # nobody handles it: ignored
        await asyncio.wait_for(got.wait(), 5)
        await asyncio.sleep(0.2)  # time for a wrong delivery (the sender, the other database) to show
        assert sorted(seen, key=lambda s: s[0]) == [(1, {"by": "admin"}), (2, {"by": "admin"})]
        assert nodes[0].received == 0 and nodes[1].received == 1 and other.received == 0
    finally:
        for node in (*nodes, other):
            await node.close()
        await other_db.close()
        drop_database(name)


async def test_a_lost_listener_reconnects_and_catches_up(db: Database) -> None:
    sender, listener = PgBroadcaster(db), PgBroadcaster(db, retry_s=0.1, ping_s=30)
    seen: list[tuple[int, dict | None]] = []
    got = asyncio.Event()
    listener.on("auth.forget", recorder(seen, 1, got))
    await listener.start()
    try:
        await asyncio.wait_for(listener.listening.wait(), 5)
        async with db.connection("t") as conn:  # the listener's backend is killed (a PostgreSQL restart, a proxy)
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
        assert killed == 1
        await asyncio.wait_for(got.wait(), 5)
        assert seen == [(1, None)]  # caught up: "you may have missed some"
        assert listener.reconnects == 1
        await asyncio.wait_for(listener.listening.wait(), 5)
        got.clear()
        await sender.publish("auth.forget", {"key_id": "k1"})
        await asyncio.wait_for(got.wait(), 5)
        assert seen[-1] == (1, {"key_id": "k1"})
    finally:
        await listener.close()


async def test_publishing_while_the_database_is_down_only_logs(pg_url: str) -> None:
    down = Database(pg_url)  # never started: every call is STORAGE_UNAVAILABLE
    await PgBroadcaster(down).publish("personalities.reload")


async def test_redis_when_configured_else_postgresql(db: Database) -> None:
    link = RedisLink(REDIS_URL, prefix="unused")
    try:
        assert type(make_broadcaster(link, db)) is Broadcaster
        assert type(make_broadcaster(None, db)) is PgBroadcaster
    finally:
        await link.close()
