"""The CozyChat sessions API's rules: owner-only access, soft delete, and pagination bounds.

A deleted session's live actors are stopped at once (its text conversation, and its realtime and
WebRTC calls with an `error` event, here and, via the cluster broadcast, on every node), so nothing
keeps answering for it; appends to it are refused in SQL (PgSessionStore.append), and what memory
and profile learned from it is forgotten. Its rows stay in the database (soft delete) but no read
or list returns them.
"""

from __future__ import annotations

import logging
from typing import Any

from cozy_actors.audit import AuditLog
from cozy_actors.auth.principal import Principal
from cozy_actors.personalities import PersonalityStore
from cozy_actors.runtime import StopReason, Supervisor
from cozy_actors.storage.records import MessageRecord, Page, SessionRecord
from cozy_actors.storage.sessions import PgSessionStore
from cozy_core.errors import Invalid, NotFound

log = logging.getLogger("cozy.sessions")
MAX_PAGE = 200


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", param="limit")
    return limit


class SessionService:
    def __init__(
        self, store: PgSessionStore, supervisor: Supervisor, personalities: PersonalityStore, audit: AuditLog
    ) -> None:
        self.store = store
        self.supervisor = supervisor
        self.personalities = personalities
        self.audit = audit
        self.context: Any = None  # ContextService: forgets what a deleted session taught
        self.realtime: Any = None  # RealtimeService: ends the calls that append to a deleted session
        self.broadcast: Any = None  # Broadcaster: the other nodes do the same

    async def create(
        self,
        principal: Principal,
        *,
        session_id: str | None = None,
        personality_id: str | None = None,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionRecord:
        personality = self.personalities.get(personality_id)
        if personality is None:
            raise NotFound(f"unknown personality {personality_id!r}", param="personality_id")
        return await self.store.create(
            principal.user_id, personality.id, session_id=session_id, title=title, metadata=metadata
        )

    async def list(self, principal: Principal, *, limit: int = 20, cursor: str | None = None) -> Page[SessionRecord]:
        return await self.store.list(principal.user_id, limit=check_limit(limit), cursor=cursor)

    async def get(self, principal: Principal, session_id: str) -> SessionRecord:
        return await self.store.get(session_id, principal.user_id)

    async def messages(
        self, principal: Principal, session_id: str, *, limit: int = 50, cursor: str | None = None, order: str = "asc"
    ) -> Page[MessageRecord]:
        if order not in ("asc", "desc"):
            raise Invalid("order must be asc or desc", param="order")
        return await self.store.messages(
            session_id, principal.user_id, limit=check_limit(limit), cursor=cursor, order=order
        )

    async def delete(self, principal: Principal, session_id: str, *, request_id: str | None = None) -> None:
        await self.store.soft_delete(session_id, principal.user_id)
        await self.end_live(session_id)
        if self.broadcast is not None:
            await self.broadcast.publish("session.deleted", {"session_id": session_id})
        kept = await self.context.forget_session(principal.user_id, session_id) if self.context is not None else []
        if kept:
            log.warning("session %s deleted; %s keep what they learned from it", session_id, ", ".join(kept))
        self.audit.record(
            "session.delete",
            user_id=principal.user_id,
            user_name=principal.name,
            request_id=request_id,
            resource=f"session:{session_id}",
        )

    async def end_live(self, session_id: str) -> None:
        """Stop what runs for the (deleted) session on this node: its conversation actor and its calls."""
        self.store.forget_owner(session_id)
        ref = self.supervisor.directory.get(session_id)
        if ref is not None and ref.alive:
            await ref.stop(StopReason.DELETED, "session deleted")  # a call's client gets session_deleted
        if self.realtime is not None:
            self.realtime.end_stored_session(session_id)

    async def on_deleted_elsewhere(self, data: dict[str, Any] | None) -> None:
        """Broadcast handler: another node deleted a session (None: notices may be lost; the live
        calls of such a session still end at their next write, which the store refuses)."""
        if data and isinstance(data.get("session_id"), str):
            await self.end_live(data["session_id"])
