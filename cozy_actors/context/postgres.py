"""Built-in personalization engines on the server's own PostgreSQL (no extra service).

Knowledge: documents chunked per dataset, found by full-text search (`english` configuration,
OR of the query's words ranked by ts_rank). Memory: facts extracted from turns, ranked by
relevance to the last user message, then recency. Profile: key/values plus a short summary.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from pydantic import Field

from cozy_actors.storage.db import Database
from cozy_core.engines import EngineOptions, Health

from .base import ContextItem, ContextQuery, KnowledgeEngine, MemoryEngine, ProfileEngine, TurnRecord
from .extract import extract, summarize

_WORD = re.compile(r"[A-Za-z0-9]{2,}")


def or_query(text: str) -> str:
    """A to_tsquery string matching any of the text's words (websearch syntax would AND them)."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))[:32]
    return " | ".join(words)


def chunk(text: str, size: int, overlap: int) -> list[str]:
    """Split on paragraph/sentence boundaries into pieces of at most ~`size` characters."""
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = max(text.rfind("\n\n", start, end), text.rfind(". ", start, end))
            if cut > start + size // 2:
                end = cut + 1
        pieces.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return [p for p in pieces if p]


class PgOptions(EngineOptions):
    # Fault injection for tests and benchmarks (README "Personalization"): a delay before each
    # search, or a search that raises. Zero/false in production.
    inject_delay_s: float = Field(0.0, ge=0)
    inject_error: bool = False


class _PgEngine:
    provider = "postgres"
    Options: type[PgOptions] = PgOptions

    def __init__(self, options: Any = None, *, db: Database | None = None) -> None:
        if db is None:
            raise ValueError("the postgres context engines need the server's database")
        self.options = options if options is not None else self.Options()  # type: ignore[attr-defined]
        self.db = db

    async def health_check(self) -> Health:
        ok, detail = await self.db.ping()
        return Health(ok, detail)

    async def _injected(self) -> None:
        if self.options.inject_delay_s:
            await asyncio.sleep(self.options.inject_delay_s)
        if self.options.inject_error:
            raise RuntimeError(f"{self.kind} engine failure (inject_error)")  # type: ignore[attr-defined]


class KnowledgeOptions(PgOptions):
    chunk_chars: int = Field(800, ge=100)
    overlap_chars: int = Field(100, ge=0)


class PgKnowledge(_PgEngine, KnowledgeEngine):
    Options = KnowledgeOptions

    async def add_documents(self, dataset: str, documents: list[dict[str, Any]]) -> int:
        rows = []
        for doc in documents:
            doc_id = uuid.uuid4()
            for i, piece in enumerate(chunk(str(doc["text"]), self.options.chunk_chars, self.options.overlap_chars)):
                rows.append((dataset, doc_id, str(doc.get("title") or ""), i, piece, doc.get("metadata") or {}))
        async with self.db.transaction("knowledge.add") as conn:
            await conn.executemany(
                "INSERT INTO knowledge_chunks (dataset, document_id, title, chunk_index, content, metadata)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                rows,
            )
        return len(rows)

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        await self._injected()
        q = or_query(query.text)
        if not q:
            return []
        rows = await self.db.fetch(
            "knowledge.search",
            "SELECT title, content, ts_rank(tsv, q) AS rank FROM knowledge_chunks, to_tsquery('english', $2) q"
            " WHERE dataset = ANY($1::text[]) AND tsv @@ q ORDER BY rank DESC, id LIMIT $3",
            list(query.datasets),
            q,
            query.limit,
        )
        return [ContextItem("knowledge", _titled(r["title"], r["content"]), float(r["rank"])) for r in rows]


class MemoryOptions(PgOptions):
    max_facts_per_user: int = Field(500, ge=1)


class PgMemory(_PgEngine, MemoryEngine):
    Options = MemoryOptions

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        await self._injected()
        if not query.user_id:
            return []
        rows = await self.db.fetch(
            "memory.search",
            "SELECT fact, CASE WHEN $2 = '' THEN 0 ELSE ts_rank(tsv, to_tsquery('english', $2)) END AS rank"
            " FROM memory_facts WHERE user_id = $1 ORDER BY rank DESC, updated_at DESC LIMIT $3",
            query.user_id,
            or_query(query.text),
            query.limit,
        )
        return [ContextItem("memory", r["fact"], float(r["rank"])) for r in rows]

    async def update(self, records: list[TurnRecord]) -> None:
        found = extract(records)
        if not found:
            return
        async with self.db.transaction("memory.update") as conn:
            for user_id, got in found.items():
                await conn.executemany(
                    "INSERT INTO memory_facts (user_id, fact) VALUES ($1, $2)"
                    " ON CONFLICT (user_id, fact) DO UPDATE SET updated_at = now()",
                    [(user_id, f) for f in got.facts],
                )
                await conn.execute(
                    "DELETE FROM memory_facts WHERE user_id = $1 AND id NOT IN"
                    " (SELECT id FROM memory_facts WHERE user_id = $1 ORDER BY updated_at DESC LIMIT $2)",
                    user_id,
                    self.options.max_facts_per_user,
                )


class PgProfile(_PgEngine, ProfileEngine):
    async def get(self, user_id: str) -> dict[str, Any]:
        row = await self.db.fetchrow(
            "profile.get", "SELECT attributes, summary FROM user_profiles WHERE user_id = $1", user_id
        )
        return {"attributes": dict(row["attributes"]), "summary": row["summary"]} if row else {}

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        await self._injected()
        if not query.user_id:
            return []
        profile = await self.get(query.user_id)
        return [ContextItem("profile", profile["summary"], 1.0)] if profile.get("summary") else []

    async def update(self, records: list[TurnRecord]) -> None:
        found = {u: e for u, e in extract(records).items() if e.attributes}
        for user_id, got in found.items():
            async with self.db.transaction("profile.update") as conn:
                row = await conn.fetchrow(
                    "SELECT attributes FROM user_profiles WHERE user_id = $1 FOR UPDATE", user_id
                )
                attrs = dict(row["attributes"]) if row else {}
                for key, value in got.attributes.items():
                    if key == "likes":
                        attrs["likes"] = list(dict.fromkeys([*attrs.get("likes", []), *value]))[-20:]
                    else:
                        attrs[key] = value
                await conn.execute(
                    "INSERT INTO user_profiles (user_id, attributes, summary) VALUES ($1, $2, $3)"
                    " ON CONFLICT (user_id) DO UPDATE SET attributes = $2, summary = $3, updated_at = now()",
                    user_id,
                    attrs,
                    summarize(attrs),
                )


def _titled(title: str, content: str) -> str:
    return f"{title}: {content}" if title else content
