"""Throwaway databases on the machine's PostgreSQL and key prefixes on its Redis, for test isolation.

Every database made here is dropped by `drop_database`, or at interpreter exit at the latest, so a
failed test never leaves one behind. Override the server with COZY_TEST_PG_ADMIN_URL / COZY_TEST_REDIS_URL.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import uuid

import asyncpg
import redis

ADMIN_URL = os.environ.get("COZY_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COZY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_created: set[str] = set()
_prefixes: set[str] = set()
_lock = threading.Lock()


def _url_for(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro: object) -> None:
    """Run a coroutine from sync code, even inside a running event loop (in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)  # type: ignore[arg-type]
        return
    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)  # type: ignore[arg-type]
        except BaseException as exc:
            error.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if error:
        raise error[0]


_swept = False


async def _sweep(older_than_s: float) -> None:
    """Drop throwaway databases of earlier runs that were killed before their cleanup ran (an hour
    old and without connections: a concurrent run's databases are young or in use)."""
    conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT d.datname FROM pg_database d WHERE d.datname ~ '^cozy_(test|e2e|st)_' "
            "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname) "
            "AND (SELECT modification FROM pg_stat_file('base/' || d.oid || '/PG_VERSION')) "
            "    < now() - make_interval(secs => $1)",
            older_than_s,
        )
        for row in rows:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


def create_database(prefix: str = "cozy_test") -> tuple[str, str]:
    """A new empty database; returns (name, asyncpg URL)."""
    global _swept
    if not _swept:
        _swept = True
        try:
            _run(_sweep(3600))
        except Exception:  # housekeeping only
            pass
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    with _lock:
        _created.add(name)
    return name, _url_for(name)


def drop_database(name: str) -> None:
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    with _lock:
        _created.discard(name)


def redis_prefix(prefix: str = "cozytest") -> str:
    """A fresh key prefix (its keys are deleted by `drop_redis_prefix`, or at exit)."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    with _lock:
        _prefixes.add(name)
    return name


def drop_redis_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key under `<prefix>:`; returns how many. The prefix stays registered, so the
    exit sweep also removes keys a straggling consumer recreated after this."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        return client.delete(*keys) if keys else 0
    finally:
        client.close()


@atexit.register
def _drop_leftovers() -> None:
    with _lock:
        names = list(_created)
    for name in names:
        try:
            drop_database(name)
        except Exception:
            pass
    with _lock:
        prefixes = list(_prefixes)
    for prefix in prefixes:
        try:
            drop_redis_prefix(prefix)
        except Exception:
            pass
