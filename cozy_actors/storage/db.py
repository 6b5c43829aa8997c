"""The asyncpg pool and the one place database failures become CozyEngine errors.

Repositories call `fetch`/`fetchrow`/`fetchval`/`execute` here instead of touching the pool, so a
lost connection is a 503 `STORAGE_UNAVAILABLE` everywhere (never a traceback or a hung request),
and JSON columns round-trip as Python objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson

from cozy_actors.observability.metrics import STORAGE_ERRORS
from cozy_core.errors import CozyError, Invalid

log = logging.getLogger("cozy.storage")


class StorageUnavailable(CozyError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="STORAGE_UNAVAILABLE", status=503)


class StorageFailure(CozyError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="STORAGE_ERROR", status=503)


class Conflict(CozyError):
    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, code="RESOURCE_ALREADY_EXISTS", status=409, param=param)


_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("jsonb", "json"):
        await conn.set_type_codec(
            kind, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """No reset query on release: asyncpg's default (unlock advisory locks, CLOSE ALL, UNLISTEN,
    RESET ALL) is a server round trip after every pooled query, and nothing here leaves such
    session state (the migration lock is released explicitly). Open transactions are still
    rolled back by asyncpg itself."""

    def get_reset_query(self) -> str:
        return ""


class Database:
    """A lazily started pool; `url` may be set after construction (embedded server, tests)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.command_timeout_s = command_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    async def start(self) -> None:
        if self._pool is not None:
            return
        if not self.url:
            raise StorageUnavailable("no database URL")
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                command_timeout=self.command_timeout_s,
                timeout=self.connect_timeout_s,
                init=_init_connection,
                connection_class=_PooledConnection,
            )
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"cannot connect to the database: {exc}") from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, Exception):  # a hung connection must not block shutdown
                pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageUnavailable("the database is not started")
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self, op: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; failures inside are mapped to STORAGE_* errors."""
        with _mapped(op):
            async with self.pool.acquire() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def transaction(self, op: str) -> AsyncIterator[asyncpg.Connection]:
        with _mapped(op):
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn

    async def fetch(self, op: str, query: str, *args: Any) -> list[asyncpg.Record]:
        with _mapped(op):
            return await self.pool.fetch(query, *args)

    async def fetchrow(self, op: str, query: str, *args: Any) -> asyncpg.Record | None:
        with _mapped(op):
            return await self.pool.fetchrow(query, *args)

    async def fetchval(self, op: str, query: str, *args: Any) -> Any:
        with _mapped(op):
            return await self.pool.fetchval(query, *args)

    async def execute(self, op: str, query: str, *args: Any) -> str:
        with _mapped(op):
            return await self.pool.execute(query, *args)

    async def ping(self, timeout: float = 2.0) -> tuple[bool, str]:
        """(ok, detail) for readiness: one round trip under a short timeout."""
        if self._pool is None:
            return False, "not started"
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await self._pool.fetchval("SELECT 1")
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"[:200]
        return True, f"{(time.perf_counter() - start) * 1000:.1f} ms"


# PostgreSQL text and jsonb cannot hold U+0000: asyncpg reports it as one of these (SQLSTATE 22021, 22P05).
_UNSTORABLE_TEXT = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)


@contextlib.contextmanager
def _mapped(op: str) -> Any:
    try:
        yield
    except CozyError:
        raise
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"{op}: already exists") from exc
    except _UNSTORABLE_TEXT as exc:  # the client's data, not the database: U+0000 in text or JSON
        raise Invalid(f"{op}: text must not contain the NUL character (U+0000)") from exc
    except _UNAVAILABLE as exc:
        STORAGE_ERRORS.labels(op, "unavailable").inc()
        log.warning("database unavailable during %s: %s", op, exc)
        raise StorageUnavailable(f"the database is unavailable ({op})") from exc
    except asyncpg.PostgresError as exc:
        STORAGE_ERRORS.labels(op, "error").inc()
        log.error("database error during %s: %s", op, exc)
        raise StorageFailure(f"database error ({op})") from exc
