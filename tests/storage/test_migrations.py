"""Migrations on a real, empty PostgreSQL database: order, idempotence, refusal of edited files."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from cozy_actors.storage.migrate import Migration, MigrationError, bundled_migrations, current_version, migrate

TABLES = {"users", "api_keys", "sessions", "messages", "audit_events", "cozy_schema_migrations"}


async def test_migrate_from_empty_then_noop(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        assert await current_version(conn) == 0
        applied = await migrate(conn)
        assert [m.version for m in applied] == [m.version for m in bundled_migrations()]
        assert await current_version(conn) == bundled_migrations()[-1].version
        names = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert TABLES <= names
        assert await migrate(conn) == []  # second run: nothing to do
        # gen_random_uuid() is core: ids are filled without any extension
        uid = await conn.fetchval("INSERT INTO users (name) VALUES ('ann') RETURNING id")
        assert uid is not None
    finally:
        await conn.close()


async def test_concurrent_starts_apply_each_migration_once(pg_url: str) -> None:
    conns = [await asyncpg.connect(pg_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(bundled_migrations())]
        count = await conns[0].fetchval("SELECT count(*) FROM cozy_schema_migrations")
        assert count == len(bundled_migrations())
    finally:
        for c in conns:
            await c.close()


async def test_edited_migration_is_refused(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        first = Migration(1, "one", "CREATE TABLE t1 (id int)")
        await migrate(conn, [first])
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, [Migration(1, "one", "CREATE TABLE t1 (id bigint)")])
        # a new migration on top is fine, and a failing one leaves no trace
        await migrate(conn, [first, Migration(2, "two", "CREATE TABLE t2 (id int)")])
        with pytest.raises(MigrationError, match="0003_bad failed"):
            await migrate(
                conn,
                [
                    first,
                    Migration(2, "two", "CREATE TABLE t2 (id int)"),
                    Migration(3, "bad", "CREATE TABLE t3 (id int); SELECT nope"),
                ],
            )
        assert await current_version(conn) == 2
        assert await conn.fetchval("SELECT to_regclass('t3')") is None
        with pytest.raises(MigrationError, match="newer CozyEngine"):
            await migrate(conn, [first])
    finally:
        await conn.close()
