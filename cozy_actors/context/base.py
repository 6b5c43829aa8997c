"""The personalization engine contracts: knowledge, user profile and chat memory.

Each is an `Engine` (registry kind `knowledge`, `profile`, `memory`) so built-ins and plugins
(Mem0, Memobase, Cognee, third parties) are chosen by config and checked for `api_version` alike.
A fetch returns `ContextItem`s; the ContextService bounds each call with its own timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cozy_core.engines import Engine


@dataclass(frozen=True)
class ContextQuery:
    """What a turn asks the engines: who is speaking, the last user words, which datasets."""

    user_id: str | None
    text: str
    personality_id: str = ""
    datasets: tuple[str, ...] = ("default",)
    limit: int = 5


@dataclass(frozen=True)
class ContextItem:
    """One piece of context for the prompt; `score` orders items of the same source."""

    source: str  # knowledge | profile | memory
    text: str
    score: float = 0.0


@dataclass
class TurnRecord:
    """A finished turn, handed to memory/profile engines to learn from (possibly via the queue)."""

    user_id: str
    personality_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    session_id: str | None = None  # the stored session it came from: deleting it forgets what was learned

    def payload(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "personality_id": self.personality_id,
            "messages": self.messages,
            "session_id": self.session_id,
        }

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> TurnRecord:
        sid = p.get("session_id")
        return cls(
            str(p["user_id"]),
            str(p.get("personality_id", "")),
            list(p.get("messages") or []),
            str(sid) if sid else None,
        )


class KnowledgeEngine(Engine):
    kind = "knowledge"
    api_version = 1

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        raise NotImplementedError

    async def add_documents(self, dataset: str, documents: list[dict[str, Any]]) -> int:
        """Store documents (`{"text", "title"?, "metadata"?}`); returns how many chunks were written."""
        raise NotImplementedError


class MemoryEngine(Engine):
    kind = "memory"
    api_version = 1

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        raise NotImplementedError

    async def update(self, records: list[TurnRecord]) -> None:
        """Learn from finished turns (a batch); raising makes the queue retry them."""
        raise NotImplementedError


class ProfileEngine(Engine):
    kind = "profile"
    api_version = 1

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        raise NotImplementedError

    async def update(self, records: list[TurnRecord]) -> None:
        raise NotImplementedError


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the newest user message (the relevance query)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return content_text(m.get("content"))
    return ""


def content_text(content: Any) -> str:
    """Plain text of a message content (string or OpenAI content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")]
        return " ".join(str(p.get("text", "")) for p in parts)
    return ""
