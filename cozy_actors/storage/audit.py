"""The audit trail in PostgreSQL: batched inserts from the write queue, filtered reads for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .db import Database
from .records import AuditRecord, Page, decode_cursor, encode_cursor

_INSERT = """
INSERT INTO audit_events (at, type, user_id, user_name, outcome, request_id, resource, detail)
SELECT coalesce((e->>'at')::timestamptz, now()), e->>'type', (e->>'user_id')::uuid, e->>'user_name',
       coalesce(e->>'outcome', 'ok'), e->>'request_id', e->>'resource', coalesce(e->'detail', '{}'::jsonb)
FROM jsonb_array_elements($1::jsonb) AS t(e)
"""
_COLS = "id, at, type, user_id, user_name, outcome, request_id, resource, detail"


class PgAuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_many(self, events: list[dict[str, Any]]) -> None:
        """One statement for a whole batch (events as produced by AuditLog.record)."""
        if events:
            await self.db.execute("audit.insert", _INSERT, events)

    async def query(
        self,
        *,
        type: str | None = None,
        user_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[AuditRecord]:
        """Newest first. `type` ending in `.` or `*` matches a family (e.g. `auth.`)."""
        after = decode_cursor(cursor, 1)
        before_id = int(after[0]) if after else None
        type_exact, type_prefix = None, None
        if type:
            if type.endswith(("*", ".")):
                type_prefix = type.rstrip("*")
            else:
                type_exact = type
        rows = await self.db.fetch(
            "audit.query",
            f"SELECT {_COLS} FROM audit_events WHERE ($1::text IS NULL OR type = $1) "
            "AND ($2::text IS NULL OR starts_with(type, $2)) AND ($3::uuid IS NULL OR user_id = $3) "
            "AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5) "
            "AND ($6::bigint IS NULL OR id < $6) ORDER BY id DESC LIMIT $7",
            type_exact,
            type_prefix,
            user_id,
            since,
            until,
            before_id,
            limit + 1,
        )
        items = [
            AuditRecord(
                id=r["id"],
                at=r["at"],
                type=r["type"],
                user_id=None if r["user_id"] is None else str(r["user_id"]),
                user_name=r["user_name"],
                outcome=r["outcome"],
                request_id=r["request_id"],
                resource=r["resource"],
                detail=r["detail"] or {},
            )
            for r in rows[:limit]
        ]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)
