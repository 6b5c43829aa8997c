"""The conversation's view of persistence: claim a session, load it, append messages.

The actor reloads from here after a crash, so what it appends is what survives a restart. The
chat service claims a session before any actor touches it, so a session id belongs to one user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class StoredSession:
    session_id: str
    personality_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0  # message_count when loaded: a turn whose lease shows another count reloads


@dataclass(frozen=True)
class MessageMeta:
    """What a turn adds to the assistant messages it stores (tokens and latency go on the last one)."""

    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: int | None = None
    incomplete: bool = False  # the turn died (upstream failure, cancel, shutdown) mid-answer


class ConversationStore(Protocol):
    async def claim(self, session_id: str, user_id: str | None, personality_id: str) -> bool:
        """Make sure `session_id` belongs to `user_id`: create it when it is new (True), pass when it
        is theirs (False), raise NotFound when it belongs to someone else or was deleted."""
        ...

    async def load(self, session_id: str, *, limit: int) -> StoredSession | None:
        """The session with its last `limit` messages, or None if unknown."""
        ...

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
        """Persist messages in order to a claimed session; returns its version (message_count) after
        the append (-1 when there was nothing to write and no fence to check: no round trip).
        Raise NotFound (SessionGone) when it was deleted. `checkpoint`: the turn whose crash
        checkpoint this append finalizes (TurnCheckpoints). `fence`: a lease token; the append is
        refused (LeaseLost) unless the session's lease still carries it, checked in the same
        statement. `release`: drop that lease in the same statement (a turn's final write)."""
        ...
