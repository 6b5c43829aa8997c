"""In-memory context engines with scripted delays and failures (for unit tests and timings)."""

from __future__ import annotations

import asyncio

from cozy_actors.context.base import (
    ContextItem,
    ContextQuery,
    KnowledgeEngine,
    MemoryEngine,
    ProfileEngine,
    TurnRecord,
)


class _Fake:
    provider = "fake"

    def __init__(self, items: list[str] | None = None, *, delay: float = 0.0, error: bool = False) -> None:
        self.items = list(items or [])
        self.delay = delay
        self.error = error
        self.queries: list[ContextQuery] = []
        self.updates: list[TurnRecord] = []

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        self.queries.append(query)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error:
            raise RuntimeError("boom")
        return [ContextItem(self.kind, t, 1.0) for t in self.items]  # type: ignore[attr-defined]

    async def update(self, records: list[TurnRecord]) -> None:
        self.updates.extend(records)


class FakeKnowledge(_Fake, KnowledgeEngine):
    pass


class FakeProfile(_Fake, ProfileEngine):
    pass


class FakeMemory(_Fake, MemoryEngine):
    pass
