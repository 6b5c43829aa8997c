"""The system of record and its helpers, started and stopped in dependency order.

PostgreSQL: `storage.database_url`, else an embedded server under `<data_dir>/postgres` (the log
says which). Migrations run before anything reads. Redis (`storage.redis_url`) backs the cache,
the rate limiter and the write queue; without it (or while it is down) in-process versions serve.
Construction does no I/O, so a bad configuration fails before anything is started.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import platformdirs

from cozy_actors.audit import AuditLog
from cozy_actors.auth.service import AuthService
from cozy_actors.cache import Cache, RateLimiter, RedisLink
from cozy_actors.cache.pg_buckets import PgBuckets
from cozy_actors.config import Settings
from cozy_actors.queue import QueuePolicy, WriteQueue
from cozy_actors.storage.audit import PgAuditStore
from cozy_actors.storage.checkpoints import TurnCheckpoints
from cozy_actors.storage.db import Database
from cozy_actors.storage.embedded import EmbeddedPostgres
from cozy_actors.storage.migrate import migrate
from cozy_actors.storage.sessions import PgSessionStore
from cozy_actors.storage.users import PgUserStore
from cozy_actors.worker import sibling_workers

log = logging.getLogger("cozy.storage")


def data_dir(settings: Settings) -> Path:
    """`app.data_dir` (COZY_DATA_DIR), else the per-user data folder of this OS."""
    return Path(settings.app.data_dir or platformdirs.user_data_dir("cozyengine")).expanduser().resolve()


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class Infra:
    def __init__(self, settings: Settings, *, queue_on_redis: bool = True) -> None:
        """`queue_on_redis=False` (the CLI): background writes go through the in-process queue,
        which `stop` drains into the database, so a short-lived process leaves nothing behind."""
        st = settings.storage
        self.settings = settings
        url = st.database_url.get_secret_value() if st.database_url else None
        self.embedded = None if url else EmbeddedPostgres(data_dir(settings) / "postgres")
        self.db = Database(
            url,
            min_size=st.pool_min_size,
            max_size=st.pool_max_size,
            command_timeout_s=st.command_timeout_s,
            connect_timeout_s=st.connect_timeout_s,
        )
        redis_url = st.redis_url.get_secret_value() if st.redis_url else None
        self.redis = (
            RedisLink(redis_url, prefix=st.redis_prefix, timeout_s=st.redis_timeout_s, retry_s=st.redis_retry_s)
            if redis_url
            else None
        )
        q = st.queue
        policy = QueuePolicy(q.max_attempts, q.batch_size, q.retry_after_s, q.block_s)
        self.queue = WriteQueue(policy, self.redis if queue_on_redis else None)
        self.audit = AuditLog(self.queue)
        self.users = PgUserStore(self.db)
        self.sessions = PgSessionStore(self.db)
        dur = st.durability
        self.checkpoints = TurnCheckpoints(
            self.db, interval_s=dur.checkpoint_interval_s, orphan_after_s=dur.orphan_turn_after_s
        )
        self.audit_store = PgAuditStore(self.db)
        self.audit.attach(self.audit_store.insert_many)  # admin actions: a lane that never drops
        sec = settings.security
        self.auth = AuthService(
            self.users, sec, audit=self.audit, cache=Cache("auth", self.redis, l1_ttl_s=sec.auth_cache_ttl_s)
        )
        rl = sec.rate_limit
        # Several workers on one port and no Redis: their buckets live in PostgreSQL (one per caller, not N).
        shared = PgBuckets(self.db) if self.redis is None and sibling_workers() > 1 else None
        self.ratelimit = RateLimiter(
            requests_per_minute=rl.requests_per_minute,
            burst=rl.burst,
            link=self.redis,
            enabled=rl.enabled,
            shared=shared,
        )
        self.auth.passwords.limiter = self.ratelimit
        afl = sec.auth_failure_limit
        self.auth.failures.limiter = RateLimiter(
            requests_per_minute=afl.per_client_per_minute, burst=afl.per_client_burst, link=self.redis, shared=shared
        )
        self.cache = Cache("general", self.redis, l1_ttl_s=min(30.0, st.cache_ttl_s))
        self.first_admin_key: str | None = None
        self.started = False

    @property
    def database_kind(self) -> str:
        return "embedded" if self.embedded is not None else "external"

    async def open_database(self) -> list[Any]:
        """Start the embedded server if there is no DATABASE_URL, open the pool, apply migrations;
        returns the migrations applied now (the CLI uses this without the rest)."""
        if self.embedded is not None:
            started = time.perf_counter()
            self.db.url = await self.embedded.start()
            log.info(
                "database: embedded PostgreSQL in %s (ready in %.2f s); set DATABASE_URL to use another server",
                self.embedded.pgdata,
                time.perf_counter() - started,
            )
        else:
            log.info("database: external PostgreSQL at %s", redact_url(self.db.url or ""))
        await self.db.start()
        async with self.db.connection("migrate") as conn:
            applied = await migrate(conn)
        if applied:
            log.info("database migrated to version %d", applied[-1].version)
        return applied

    async def start(self) -> None:
        try:
            await self.open_database()
            if self.redis is not None:
                ok, detail = await self.redis.ping()
                log.info("redis: %s (%s)", "connected" if ok else "unavailable, using in-process fallbacks", detail)
            else:
                log.info("redis: not configured; in-process cache, rate limiter and queue")
            await self.queue.start()
            await self.checkpoints.start()  # also stores what a crashed node cut off as incomplete
            await self.audit.start()
            self.first_admin_key = await self.auth.start()
        except BaseException:
            await self.stop()
            raise
        self.started = True

    async def stop(self) -> None:
        """Flush audit events and queued writes, then close Redis, the pool and the embedded server."""
        self.started = False
        await self.checkpoints.stop()
        await self.audit.stop()
        await self.queue.stop()
        if self.redis is not None:
            await self.redis.close()
        await self.db.close()
        if self.embedded is not None:
            await self.embedded.stop()

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """The database must answer; Redis is reported but never makes the server unready (it degrades)."""
        ok, detail = await self.db.ping()
        checks: dict[str, Any] = {"database": {"ok": ok, "kind": self.database_kind, "detail": detail}}
        if self.redis is not None:
            r_ok, r_detail = await self.redis.ping()
            checks["redis"] = {"ok": r_ok, "detail": r_detail, "degraded": not r_ok}
        checks["queue"] = {"backend": self.queue.backend, "backlog": self.queue.backlog()}
        return ok, checks
