"""The conversation's view of persistence: load a session, append messages.

The actor reloads from here after a crash, so what it appends is what survives a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class StoredSession:
    session_id: str
    personality_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)


class ConversationStore(Protocol):
    async def load(self, session_id: str, *, limit: int) -> StoredSession | None:
        """The session with its last `limit` messages, or None if unknown."""
        ...

    async def append(self, session_id: str, personality_id: str, messages: list[dict[str, Any]]) -> None:
        """Persist messages in order, creating the session when it is new."""
        ...
