"""Storage-level fixtures on the machine's real PostgreSQL and Redis (127.0.0.1), one test each:
a fresh database per test (CREATE DATABASE costs ~30 ms here) and a fresh Redis key prefix."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from cozy_actors.cache.link import RedisLink
from cozy_actors.storage.db import Database
from cozy_actors.storage.migrate import migrate
from tests.support.pg import REDIS_URL, create_database, drop_database, drop_redis_prefix, redis_prefix
from tests.support.procs import ManagedProcess, free_port, start_process


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL (dropped after the test)."""
    name, url = create_database("cozy_st")
    try:
        yield url
    finally:
        drop_database(name)


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    """A started pool on a migrated fresh database."""
    database = Database(pg_url, min_size=1, max_size=4)
    await database.start()
    async with database.connection("migrate") as conn:
        await migrate(conn)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def redis_link() -> AsyncIterator[RedisLink]:
    """A link to the machine's Redis under a key prefix of its own (keys deleted after)."""
    prefix = redis_prefix("st")
    link = RedisLink(REDIS_URL, prefix=prefix, timeout_s=0.5, retry_s=0.3)
    try:
        yield link
    finally:
        await link.close()
        drop_redis_prefix(prefix)


@pytest.fixture
def private_redis() -> Iterator[tuple[ManagedProcess, str]]:
    """A redis-server of our own on a free port, for outage tests (never the shared one)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; the Redis outage tests need it")
    port = free_port()
    proc = start_process(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        r"Ready to accept connections",
        timeout=15,
    )
    try:
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()
