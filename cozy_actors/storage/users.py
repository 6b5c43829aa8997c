"""Users in PostgreSQL (their API keys: api_keys.py, the base class of the store).

The one rule kept here rather than in the service: a change never leaves the server without an
enabled admin. It has to hold under concurrent changes, so it is checked in the same transaction
that makes the change, with the enabled admins' rows locked.
"""

from __future__ import annotations

from cozy_core.errors import Invalid

from .api_keys import PgApiKeyQueries
from .db import Conflict, Database
from .records import Page, UserRecord, decode_created_cursor, encode_created_cursor, user_record

_USER_COLS = "id, name, role, disabled, created_at"


class PgUserStore(PgApiKeyQueries):
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
        return user_record(row)

    async def get(self, user_id: str) -> UserRecord | None:
        row = await self.db.fetchrow("user.get", f"SELECT {_USER_COLS} FROM users WHERE id = $1", user_id)
        return None if row is None else user_record(row)

    async def by_name(self, name: str) -> tuple[UserRecord, str | None] | None:
        """The user and their password hash (None when they have none)."""
        row = await self.db.fetchrow(
            "user.by_name", f"SELECT {_USER_COLS}, password_hash FROM users WHERE name = $1", name
        )
        return None if row is None else (user_record(row), row["password_hash"])

    async def count(self) -> int:
        return int(await self.db.fetchval("user.count", "SELECT count(*) FROM users"))

    async def list(self, *, limit: int, cursor: str | None = None) -> Page[UserRecord]:
        """Every user in creation order (keyset paging: users added meanwhile never shift a page)."""
        created, last_id = decode_created_cursor(cursor)
        rows = await self.db.fetch(
            "user.list",
            f"SELECT {_USER_COLS} FROM users WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid)) "
            "ORDER BY created_at, id LIMIT $3",
            created,
            last_id,
            limit + 1,
        )
        last = rows[limit - 1] if len(rows) > limit else None
        cursor_out = None if last is None else encode_created_cursor(last["created_at"], str(last["id"]))
        return Page([user_record(r) for r in rows[:limit]], cursor_out)

    async def update(
        self, user_id: str, *, disabled: bool | None = None, role: str | None = None
    ) -> tuple[UserRecord, UserRecord] | None:
        """(before, after), or None for an unknown user. Refuses (400) to disable or demote the last
        enabled admin; the admins' rows are locked first, so two admins demoting each other at the
        same moment cannot both succeed."""
        async with self.db.transaction("user.update") as conn:
            admins = await conn.fetch(
                "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE"
            )
            row = await conn.fetchrow(f"SELECT {_USER_COLS} FROM users WHERE id = $1 FOR UPDATE", user_id)
            if row is None:
                return None
            before = user_record(row)
            new_role = before.role if role is None else role
            new_disabled = before.disabled if disabled is None else disabled
            was_admin = before.role == "admin" and not before.disabled
            if was_admin and (new_role != "admin" or new_disabled) and len(admins) <= 1:
                raise Invalid(
                    f"{before.name!r} is the last enabled admin; make another admin first",
                    param="disabled" if new_disabled else "role",
                )
            row = await conn.fetchrow(
                f"UPDATE users SET role = $2, disabled = $3 WHERE id = $1 RETURNING {_USER_COLS}",
                user_id,
                new_role,
                new_disabled,
            )
        assert row is not None
        return before, user_record(row)
