"""In-process conversation store: the zero-setup default and the test double of the real one.

Bounded per session so a long conversation cannot grow memory without limit.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from .base import StoredSession


class InMemoryConversationStore:
    def __init__(self, max_messages: int = 500, max_sessions: int = 10_000) -> None:
        self.max_messages = max_messages
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, tuple[str, deque[dict[str, Any]]]] = OrderedDict()

    async def load(self, session_id: str, *, limit: int) -> StoredSession | None:
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        personality_id, messages = entry
        tail = list(messages)[-limit:] if limit else []
        return StoredSession(session_id, personality_id, tail)

    async def append(self, session_id: str, personality_id: str, messages: list[dict[str, Any]]) -> None:
        entry = self._sessions.get(session_id)
        if entry is None:
            entry = (personality_id, deque(maxlen=self.max_messages))
            self._sessions[session_id] = entry
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        entry[1].extend(messages)
