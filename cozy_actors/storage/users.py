"""Users and their API keys in PostgreSQL.

Keys are looked up by the SHA-256 of the whole key (a unique index), so verifying one is a single
indexed read; the key itself is never stored or logged, only its first characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .db import Conflict, Database
from .records import UserRecord

_USER_COLS = "id, name, role, disabled, created_at"


@dataclass(frozen=True)
class KeyMatch:
    """An active API key and the user holding it."""

    user: UserRecord
    key_id: str
    prefix: str
    rate_limit_rpm: float | None
    rate_limit_burst: int | None


def _user(row: Any) -> UserRecord:
    return UserRecord(str(row["id"]), row["name"], row["role"], row["disabled"], row["created_at"])


class PgUserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, role: str = "user", *, password_hash: str | None = None) -> UserRecord:
        try:
            row = await self.db.fetchrow(
                "user.create",
                f"INSERT INTO users (name, role, password_hash) VALUES ($1, $2, $3) RETURNING {_USER_COLS}",
                name,
                role,
                password_hash,
            )
        except Conflict as exc:
            raise Conflict(f"user {name!r} already exists", param="name") from exc
        assert row is not None
        return _user(row)

    async def get(self, user_id: str) -> UserRecord | None:
        row = await self.db.fetchrow("user.get", f"SELECT {_USER_COLS} FROM users WHERE id = $1", user_id)
        return None if row is None else _user(row)

    async def by_name(self, name: str) -> tuple[UserRecord, str | None] | None:
        """The user and their password hash (None when they have none)."""
        row = await self.db.fetchrow(
            "user.by_name", f"SELECT {_USER_COLS}, password_hash FROM users WHERE name = $1", name
        )
        return None if row is None else (_user(row), row["password_hash"])

    async def count(self) -> int:
        return int(await self.db.fetchval("user.count", "SELECT count(*) FROM users"))

    async def add_key(
        self,
        user_id: str,
        key_hash: bytes,
        prefix: str,
        *,
        name: str | None = None,
        rate_limit_rpm: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> str:
        key_id = await self.db.fetchval(
            "api_key.create",
            "INSERT INTO api_keys (user_id, key_hash, prefix, name, rate_limit_rpm, rate_limit_burst) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            user_id,
            key_hash,
            prefix,
            name,
            rate_limit_rpm,
            rate_limit_burst,
        )
        return str(key_id)

    async def find_key(self, key_hash: bytes) -> KeyMatch | None:
        """The active key with this hash and its enabled user; marks the key used."""
        row = await self.db.fetchrow(
            "api_key.find",
            "UPDATE api_keys k SET last_used_at = now() FROM users u "
            "WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.id = k.user_id AND NOT u.disabled "
            "RETURNING k.id AS key_id, k.prefix, k.rate_limit_rpm, k.rate_limit_burst, "
            "u.id, u.name, u.role, u.disabled, u.created_at",
            key_hash,
        )
        if row is None:
            return None
        return KeyMatch(_user(row), str(row["key_id"]), row["prefix"], row["rate_limit_rpm"], row["rate_limit_burst"])

    async def key_exists(self, key_hash: bytes) -> bool:
        """Whether any key (active or revoked) has this hash."""
        return bool(
            await self.db.fetchval("api_key.exists", "SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = $1)",
                                   key_hash)
        )

    async def revoke_key(self, key_id: str) -> bool:
        done = await self.db.fetchval(
            "api_key.revoke",
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id",
            key_id,
        )
        return done is not None
