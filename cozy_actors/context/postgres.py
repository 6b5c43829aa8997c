"""Built-in personalization engines on the server's own PostgreSQL (no extra service).

Knowledge: documents chunked per dataset, found by full-text search (`english` configuration,
OR of the query's words ranked by ts_rank), fused with pgvector similarity when embeddings are
configured and the server has the extension (vector.py). Memory: facts extracted from turns, ranked by
relevance to the last user message, then recency. Profile: key/values plus a short summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from typing import Any

from pydantic import Field

from cozy_actors.storage.db import Database
from cozy_core.engines import EngineOptions, Health

from .base import ContextItem, ContextQuery, KnowledgeEngine, MemoryEngine, ProfileEngine, TurnRecord
from .extract import extract, summarize
from .vector import EmbeddingsClient, EmbeddingsOptions, VectorIndex, embed_text, fuse

log = logging.getLogger("cozy.context")

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
    # Vector similarity next to full-text search; used only where the server has pgvector.
    embeddings: EmbeddingsOptions | None = None


class PgKnowledge(_PgEngine, KnowledgeEngine):
    Options = KnowledgeOptions

    def __init__(self, options: Any = None, *, db: Database | None = None) -> None:
        super().__init__(options, db=db)
        self.vectors: VectorIndex | None = None
        self._backfill: asyncio.Task[None] | None = None

    async def initialize(self) -> None:
        """Turn on vector similarity if configured and possible; otherwise say once why not."""
        emb = self.options.embeddings
        if emb is None:
            log.info("knowledge: full-text search (no embeddings configured)")
            return
        embedder = EmbeddingsClient(emb)
        index = VectorIndex(self.db, embedder)
        why = await index.setup()
        if why:
            log.warning("knowledge: full-text search only: %s", why)
            return
        await embedder.initialize()
        self.vectors = index
        log.info("knowledge: full-text + pgvector similarity (embedding model %s)", emb.model)
        self._backfill = asyncio.create_task(self._embed_existing(index))

    async def _embed_existing(self, index: VectorIndex) -> None:
        try:
            n = await index.backfill()
        except Exception as exc:  # the chunks stay found by full-text; the next start tries again
            log.warning("knowledge: embedding the stored chunks failed: %s", exc)
            return
        if n:
            log.info("knowledge: embedded %d stored chunks", n)

    async def close(self) -> None:
        task, self._backfill = self._backfill, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        index, self.vectors = self.vectors, None
        if index is not None:
            await index.embedder.close()

    async def add_documents(self, dataset: str, documents: list[dict[str, Any]]) -> int:
        rows = []
        for doc in documents:
            doc_id = uuid.uuid4()
            for i, piece in enumerate(chunk(str(doc["text"]), self.options.chunk_chars, self.options.overlap_chars)):
                rows.append((dataset, doc_id, str(doc.get("title") or ""), i, piece, doc.get("metadata") or {}))
        index = self.vectors
        # Embedded before the transaction: an embedding failure writes nothing (the caller sees it).
        vectors = await index.embedder.embed([embed_text(r[2], r[4]) for r in rows]) if index and rows else None
        async with self.db.transaction("knowledge.add") as conn:
            await conn.executemany(
                "INSERT INTO knowledge_chunks (dataset, document_id, title, chunk_index, content, metadata)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                rows,
            )
            if index is not None and vectors is not None:
                ids = {
                    (r["document_id"], r["chunk_index"]): r["id"]
                    for r in await conn.fetch(
                        "SELECT id, document_id, chunk_index FROM knowledge_chunks WHERE document_id = ANY($1::uuid[])",
                        list({r[1] for r in rows}),
                    )
                }
                await index.store(conn, [(ids[(r[1], r[3])], v) for r, v in zip(rows, vectors, strict=True)])
        return len(rows)

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        await self._injected()
        if self.vectors is None:
            rows = await self._full_text(query, query.limit)
            return [ContextItem("knowledge", _titled(r["title"], r["content"]), float(r["rank"])) for r in rows]
        # Hybrid: both rankings at once, fused by rank. A failing embedding service costs the vector
        # half only (logged); a failing database fails the search as before.
        pool = max(3 * query.limit, 10)
        text_rows, near_rows = await asyncio.gather(self._full_text(query, pool), self._nearest(query, pool))
        by_id = {r["id"]: r for r in [*near_rows, *text_rows]}
        fused = fuse([[r["id"] for r in text_rows], [r["id"] for r in near_rows]], query.limit)
        return [ContextItem("knowledge", _titled(by_id[i]["title"], by_id[i]["content"]), s) for i, s in fused]

    async def _full_text(self, query: ContextQuery, limit: int) -> list[Any]:
        q = or_query(query.text)
        if not q:
            return []
        return await self.db.fetch(
            "knowledge.search",
            "SELECT id, title, content, ts_rank(tsv, q) AS rank FROM knowledge_chunks, to_tsquery('english', $2) q"
            " WHERE dataset = ANY($1::text[]) AND tsv @@ q ORDER BY rank DESC, id LIMIT $3",
            list(query.datasets),
            q,
            limit,
        )

    async def _nearest(self, query: ContextQuery, limit: int) -> list[Any]:
        index = self.vectors
        if index is None or not query.text.strip():
            return []
        try:
            [vector] = await index.embedder.embed([query.text])
            return await index.search(list(query.datasets), vector, limit)
        except Exception as exc:
            log.warning("knowledge: vector search failed, full-text results only: %s", exc)
            return []


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
                row = await conn.fetchrow("SELECT attributes FROM user_profiles WHERE user_id = $1 FOR UPDATE", user_id)
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
