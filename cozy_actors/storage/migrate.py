"""Ordered SQL migrations (`migrations/NNNN_name.sql`), applied at start-up and by `cozy db migrate`.

Each file runs once, in its own transaction, recorded with its checksum; an advisory lock makes
concurrent starts (several nodes, a CLI next to a server) apply each migration exactly once. A
file edited after it was applied stops the server: the schema would no longer match the code.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from cozy_core.errors import CozyError

log = logging.getLogger("cozy.storage")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x0C02E_5EED  # advisory lock key shared by every CozyEngine process


class MigrationError(CozyError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="STORAGE_MIGRATION_FAILED", status=503)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in this package, in version order."""
    folder = resources.files("cozy_actors.storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m[1]), m[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {folder}")
    return found


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply the pending migrations; returns the ones applied now (empty when up to date)."""
    migrations = bundled_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS cozy_schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM cozy_schema_migrations")
        applied = {r["version"]: r for r in rows}
        known = {m.version for m in migrations}
        newer = sorted(v for v in applied if v not in known)
        if newer:
            raise MigrationError(
                f"the database has migration(s) {newer} this version does not know "
                "(it was migrated by a newer CozyEngine)"
            )
        done: list[Migration] = []
        for mig in migrations:
            row = applied.get(mig.version)
            if row is not None:
                if row["checksum"] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name} changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            try:
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO cozy_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        mig.version,
                        mig.name,
                        mig.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {mig.version:04d}_{mig.name} failed: {exc}") from exc
            log.info("applied migration %04d_%s", mig.version, mig.name)
            done.append(mig)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)


async def current_version(conn: asyncpg.Connection) -> int:
    """The highest applied migration (0 on an empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('cozy_schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM cozy_schema_migrations"))
