"""Sessions and messages in PostgreSQL: the conversation store and the CozyChat API's queries.

Every read is scoped by owner: a session that is someone else's, or soft-deleted, simply does not
exist for the caller (404, never 403, so ids cannot be probed). Who owns a session never changes,
so successful ownership checks are remembered in-process for a minute and the chat hot path skips
that query (a soft delete made on another node is seen here within that minute).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

from cozy_actors.placement import LeaseLost
from cozy_core.errors import NotFound

from .base import MessageMeta, StoredSession
from .db import Conflict, Database
from .records import MessageRecord, Page, SessionRecord, decode_cursor, encode_cursor

_SESSION_COLS = "id, user_id, personality_id, title, metadata, message_count, created_at, updated_at"
_MESSAGE_COLS = (
    "id, session_id, role, content, name, tool_calls, tool_call_id, model, prompt_tokens, completion_tokens, "
    "latency_ms, incomplete, created_at"
)
_CLAIM = """
WITH ins AS (
    INSERT INTO sessions (id, user_id, personality_id) VALUES ($1, $2, $3)
    ON CONFLICT (id) DO NOTHING
    RETURNING user_id, deleted_at, true AS created)
SELECT user_id, deleted_at, created FROM ins
UNION ALL
SELECT user_id, deleted_at, false FROM sessions WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM ins)
"""
# The messages (a jsonb array, `param`) of the one session row in CTE `source`, in order; shared
# with the turn lease's first write (cozy_actors/placement/lease.py).
INSERT_MESSAGES = """
    INSERT INTO messages (session_id, role, content, name, tool_calls, tool_call_id, model,
                          prompt_tokens, completion_tokens, latency_ms, incomplete)
    SELECT {source}.id, e->>'role', e->'content', e->>'name', e->'tool_calls', e->>'tool_call_id', e->>'model',
           (e->>'prompt_tokens')::int, (e->>'completion_tokens')::int, (e->>'latency_ms')::int,
           coalesce((e->>'incomplete')::boolean, false)
    FROM {source}, jsonb_array_elements({param}::jsonb) WITH ORDINALITY AS t(e, n)
    ORDER BY n
    RETURNING 1"""
# Refuses a deleted session atomically: the session row is locked (a concurrent soft delete waits
# for this append, or this append sees its committed deleted_at), and nothing is inserted when the
# lock finds no live session; no row back means "deleted or unknown". $3 is the turn's checkpoint
# id: its tombstone is written in the same statement, so a crash never stores the reply twice.
# $4 is the writer's lease token (fencing, cozy_actors/placement): checked on the locked row, so a
# worker whose lease was taken over cannot write; $5 drops the lease with the turn's final write.
_APPEND = f"""
WITH s AS (SELECT id, ($4::bigint IS NULL OR owner_token IS NOT DISTINCT FROM $4) AS fenced_ok
           FROM sessions WHERE id = $1 AND deleted_at IS NULL FOR NO KEY UPDATE),
ok AS (SELECT id FROM s WHERE fenced_ok),
ins AS ({INSERT_MESSAGES.format(source="ok", param="$2")}),
cp AS (
    INSERT INTO turn_checkpoints (id, session_id, done) SELECT $3, ok.id, true FROM ok WHERE $3::text IS NOT NULL
    ON CONFLICT (id) DO UPDATE SET done = true, updated_at = now()
    RETURNING 1),
upd AS (
    UPDATE sessions SET message_count = message_count + (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM cp),
           updated_at = now(),
           owner_worker = CASE WHEN $5 THEN NULL ELSE owner_worker END,
           owner_token = CASE WHEN $5 THEN NULL ELSE owner_token END,
           owner_kind = CASE WHEN $5 THEN NULL ELSE owner_kind END
    WHERE id = (SELECT id FROM ok)
    RETURNING message_count)
SELECT (SELECT fenced_ok FROM s) AS fenced_ok, (SELECT message_count FROM upd) AS version
"""


class SessionGone(NotFound):
    """The session was deleted (or never existed): nothing may be appended to it."""


def _not_found(session_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"session {session_id!r} not found", param=param)


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        user_id=str(row["user_id"]),
        personality_id=row["personality_id"],
        title=row["title"],
        metadata=row["metadata"] or {},
        message_count=row["message_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _message(row: Any) -> MessageRecord:
    return MessageRecord(**{k: row[k] for k in row.keys()})


def _with_meta(messages: list[dict[str, Any]], meta: MessageMeta | None) -> list[dict[str, Any]]:
    if meta is None:
        return messages
    out = [dict(m) for m in messages]
    assistants = [m for m in out if m.get("role") == "assistant"]
    for m in assistants:
        m["model"] = meta.model
        m["incomplete"] = meta.incomplete
    if assistants:
        last = assistants[-1]
        last.update(
            prompt_tokens=meta.prompt_tokens, completion_tokens=meta.completion_tokens, latency_ms=meta.latency_ms
        )
    return out


class PgSessionStore:
    """ConversationStore for the actors plus the owner-scoped queries of the sessions API."""

    def __init__(self, db: Database, *, owner_cache_size: int = 50_000, owner_ttl_s: float = 60.0) -> None:
        self.db = db
        self._owners: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._owner_cache_size = owner_cache_size
        self._owner_ttl_s = owner_ttl_s

    # ------------------------------------------------------------------ conversation store
    async def claim(self, session_id: str, user_id: str | None, personality_id: str) -> bool:
        if user_id is None:
            raise ValueError("a stored session needs an owner")
        known = self._owners.get(session_id)
        if known is not None and known[0] == user_id and known[1] > time.monotonic():
            return False
        for _ in range(3):  # a concurrent first claim of the same id: look again once it committed
            row = await self.db.fetchrow("session.claim", _CLAIM, session_id, user_id, personality_id)
            if row is not None:
                break
        else:
            raise _not_found(session_id, "cozy.session_id")
        if str(row["user_id"]) != user_id or row["deleted_at"] is not None:
            raise _not_found(session_id, "cozy.session_id")
        self._remember(session_id, user_id)
        return bool(row["created"])

    async def load(self, session_id: str, *, limit: int) -> StoredSession | None:
        async with self.db.connection("session.load") as conn:
            head = await conn.fetchrow(
                "SELECT personality_id, message_count FROM sessions WHERE id = $1 AND deleted_at IS NULL", session_id
            )
            if head is None:
                return None
            rows = await conn.fetch(
                f"SELECT * FROM (SELECT {_MESSAGE_COLS} FROM messages WHERE session_id = $1 "
                "ORDER BY id DESC LIMIT $2) t ORDER BY id",
                session_id,
                limit,
            )
        messages = [_message(r).as_chat_message() for r in rows]
        return StoredSession(session_id, head["personality_id"], messages, head["message_count"])

    async def append(
        self,
        session_id: str,
        personality_id: str,
        messages: list[dict[str, Any]],
        *,
        meta: MessageMeta | None = None,
        checkpoint: str | None = None,
        fence: int | None = None,
        release: bool = False,
    ) -> int:
        release = release and fence is not None
        if not messages and checkpoint is None and not release and fence is None:
            return -1  # nothing to do, no round trip: the version is not known here
        row = await self.db.fetchrow(
            "message.append", _APPEND, session_id, _with_meta(messages, meta), checkpoint, fence, release
        )
        if row is None or row["fenced_ok"] is None:
            self._owners.pop(session_id, None)
            raise SessionGone(f"session {session_id!r} not found (deleted)", param="cozy.session_id")
        if not row["fenced_ok"]:
            raise LeaseLost(session_id)
        return int(row["version"])

    # ------------------------------------------------------------------ sessions API
    async def create(
        self,
        user_id: str,
        personality_id: str,
        *,
        session_id: str | None = None,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionRecord:
        sid = session_id or f"sess_{uuid.uuid4().hex}"
        try:
            row = await self.db.fetchrow(
                "session.create",
                f"INSERT INTO sessions (id, user_id, personality_id, title, metadata) VALUES ($1, $2, $3, $4, $5) "
                f"RETURNING {_SESSION_COLS}",
                sid,
                user_id,
                personality_id,
                title,
                metadata or {},
            )
        except Conflict as exc:
            raise Conflict(f"session {sid!r} already exists", param="id") from exc
        assert row is not None
        self._remember(sid, user_id)
        return _session(row)

    async def get(self, session_id: str, user_id: str) -> SessionRecord:
        row = await self.db.fetchrow(
            "session.get",
            f"SELECT {_SESSION_COLS} FROM sessions WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
            session_id,
            user_id,
        )
        if row is None:
            raise _not_found(session_id, "session_id")
        return _session(row)

    async def list(self, user_id: str, *, limit: int, cursor: str | None = None) -> Page[SessionRecord]:
        after = decode_cursor(cursor, 2)
        created, last_id = (datetime.fromisoformat(after[0]), after[1]) if after else (None, None)
        rows = await self.db.fetch(
            "session.list",
            f"SELECT {_SESSION_COLS} FROM sessions WHERE user_id = $1 AND deleted_at IS NULL "
            "AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) "
            "ORDER BY created_at DESC, id DESC LIMIT $4",
            user_id,
            created,
            last_id,
            limit + 1,
        )
        items = [_session(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1].created_at.isoformat(), items[-1].id) if more else None)

    async def messages(
        self, session_id: str, user_id: str, *, limit: int, cursor: str | None = None, order: str = "asc"
    ) -> Page[MessageRecord]:
        await self.get(session_id, user_id)
        after = decode_cursor(cursor, 1)
        last = int(after[0]) if after else None
        cmp, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        rows = await self.db.fetch(
            "message.list",
            f"SELECT {_MESSAGE_COLS} FROM messages WHERE session_id = $1 "
            f"AND ($2::bigint IS NULL OR id {cmp} $2) ORDER BY id {direction} LIMIT $3",
            session_id,
            last,
            limit + 1,
        )
        items = [_message(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    async def live_ids(self, session_ids: list[str]) -> set[str]:
        """The ids of these sessions that exist and are not deleted."""
        rows = await self.db.fetch(
            "session.live", "SELECT id FROM sessions WHERE id = ANY($1::text[]) AND deleted_at IS NULL", session_ids
        )
        return {r["id"] for r in rows}

    def forget_owner(self, session_id: str) -> None:
        """Another node deleted the session: stop trusting the cached ownership check."""
        self._owners.pop(session_id, None)

    async def soft_delete(self, session_id: str, user_id: str) -> None:
        done = await self.db.fetchval(
            "session.delete",
            "UPDATE sessions SET deleted_at = now() WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL RETURNING id",
            session_id,
            user_id,
        )
        self._owners.pop(session_id, None)
        if done is None:
            raise _not_found(session_id, "session_id")

    def _remember(self, session_id: str, user_id: str) -> None:
        self._owners[session_id] = (user_id, time.monotonic() + self._owner_ttl_s)
        self._owners.move_to_end(session_id)
        while len(self._owners) > self._owner_cache_size:
            self._owners.popitem(last=False)
