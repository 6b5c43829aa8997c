"""In-process conversation store: the test double of the PostgreSQL one.

Bounded per session so a long conversation cannot grow memory without limit.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from cozy_actors.placement import LeaseLost
from cozy_core.errors import NotFound

from .base import MessageMeta, StoredSession


class InMemoryConversationStore:
    def __init__(self, max_messages: int = 500, max_sessions: int = 10_000) -> None:
        self.max_messages = max_messages
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, tuple[str, deque[dict[str, Any]]]] = OrderedDict()
        self._owners: dict[str, str | None] = {}
        self._counts: dict[str, int] = {}  # message_count per session (the deque keeps only the tail)
        self.owner_tokens: dict[str, int] = {}  # session -> lease token (no placement in-process: tests set it)

    async def claim(self, session_id: str, user_id: str | None, personality_id: str) -> bool:
        if session_id in self._owners:
            if self._owners[session_id] != user_id:
                raise NotFound(f"session {session_id!r} not found", param="cozy.session_id")
            return False
        self._owners[session_id] = user_id
        return True

    async def load(self, session_id: str, *, limit: int) -> StoredSession | None:
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        personality_id, messages = entry
        tail = list(messages)[-limit:] if limit else []
        return StoredSession(session_id, personality_id, tail, self._counts.get(session_id, 0))

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
        if fence is not None:
            if self.owner_tokens.get(session_id) != fence:
                raise LeaseLost(session_id)
            if release:
                del self.owner_tokens[session_id]
        entry = self._sessions.get(session_id)
        if entry is None:
            entry = (personality_id, deque(maxlen=self.max_messages))
            self._sessions[session_id] = entry
            while len(self._sessions) > self.max_sessions:
                old, _ = self._sessions.popitem(last=False)
                self._owners.pop(old, None)
                self._counts.pop(old, None)
        else:
            self._sessions.move_to_end(session_id)
        entry[1].extend(messages)
        self._counts[session_id] = self._counts.get(session_id, 0) + len(messages)
        return self._counts[session_id]
