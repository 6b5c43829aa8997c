"""API keys in PostgreSQL: the per-request lookup and the admins' list / add / revoke.

Keys are looked up by the SHA-256 of the whole key (a unique index), so verifying one is a single
indexed read; the key itself is never stored or logged, only its first characters. A revoked key
stays in the table (revoked_at set) so its owner's key list keeps its history and the bootstrap
key is never silently re-added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .db import Database
from .records import KeyRecord, Page, UserRecord, decode_created_cursor, encode_created_cursor, user_record

_KEY_COLS = "id, user_id, prefix, name, rate_limit_rpm, rate_limit_burst, created_at, last_used_at, revoked_at"


@dataclass(frozen=True)
class KeyMatch:
    """An active API key and the user holding it."""

    user: UserRecord
    key_id: str
    prefix: str
    rate_limit_rpm: float | None
    rate_limit_burst: int | None


def _key(row: Any) -> KeyRecord:
    return KeyRecord(**{**{k: row[k] for k in row.keys()}, "id": str(row["id"]), "user_id": str(row["user_id"])})


class PgApiKeyQueries:
    """The api_keys half of PgUserStore (a base class, so callers keep one store for accounts)."""

    db: Database

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
        """The active key with this hash and its enabled user; marks the key used.

        A read first: an unknown key (a flood of bogus tokens) costs one indexed read, never a write."""
        row = await self.db.fetchrow(
            "api_key.find",
            "SELECT k.id AS key_id, k.prefix, k.rate_limit_rpm, k.rate_limit_burst, "
            "u.id, u.name, u.role, u.disabled, u.created_at FROM api_keys k JOIN users u ON u.id = k.user_id "
            "WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND NOT u.disabled",
            key_hash,
        )
        if row is None:
            return None
        await self.db.execute("api_key.used", "UPDATE api_keys SET last_used_at = now() WHERE id = $1", row["key_id"])
        return KeyMatch(
            user_record(row), str(row["key_id"]), row["prefix"], row["rate_limit_rpm"], row["rate_limit_burst"]
        )

    async def key_exists(self, key_hash: bytes) -> bool:
        """Whether any key (active or revoked) has this hash."""
        return bool(
            await self.db.fetchval(
                "api_key.exists", "SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = $1)", key_hash
            )
        )

    async def get_key(self, key_id: str) -> KeyRecord | None:
        row = await self.db.fetchrow("api_key.get", f"SELECT {_KEY_COLS} FROM api_keys WHERE id = $1", key_id)
        return None if row is None else _key(row)

    async def list_keys(self, user_id: str, *, limit: int, cursor: str | None = None) -> Page[KeyRecord]:
        """A user's keys, revoked ones included, in creation order (keyset paging)."""
        created, last_id = decode_created_cursor(cursor)
        rows = await self.db.fetch(
            "api_key.list",
            f"SELECT {_KEY_COLS} FROM api_keys WHERE user_id = $1 "
            "AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid)) "
            "ORDER BY created_at, id LIMIT $4",
            user_id,
            created,
            last_id,
            limit + 1,
        )
        items = [_key(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_created_cursor(items[-1].created_at, items[-1].id) if more else None)

    async def revoke_key(self, key_id: str, *, user_id: str | None = None) -> KeyRecord | None:
        """Revoke an active key (of `user_id`, when given); None when there is no such active key."""
        row = await self.db.fetchrow(
            "api_key.revoke",
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2) "
            f"AND revoked_at IS NULL RETURNING {_KEY_COLS}",
            key_id,
            user_id,
        )
        return None if row is None else _key(row)
