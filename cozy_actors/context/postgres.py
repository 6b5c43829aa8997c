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


async def live_records(conn: Any, records: list[TurnRecord]) -> list[TurnRecord]:
    """The records whose session is not deleted, read under a share lock on those sessions: a
    concurrent soft delete waits for this transaction (and its purge then removes what it wrote),
    or has committed and its records are dropped here. So a queued update of a deleted session is
    never applied, with no window between the check and the write."""
    sids = sorted({r.session_id for r in records if r.session_id})
    if not sids:
        return records
    rows = await conn.fetch(
        "SELECT id FROM sessions WHERE id = ANY($1::text[]) AND deleted_at IS NULL ORDER BY id FOR SHARE", sids
    )
    live = {r["id"] for r in rows}
    return [r for r in records if not r.session_id or r.session_id in live]


def by_session(records: list[TurnRecord]) -> dict[str, list[TurnRecord]]:
    """Records grouped by their session ('' for none), in arrival order."""
    out: dict[str, list[TurnRecord]] = {}
    for r in records:
        out.setdefault(r.session_id or "", []).append(r)
    return out


class PgMemory(_PgEngine, MemoryEngine):
    """Facts remember which sessions taught them (`sources`); deleting the last one forgets the fact."""

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
        if not extract(records):
            return
        async with self.db.transaction("memory.update") as conn:
            users: set[str] = set()
            for sid, group in by_session(await live_records(conn, records)).items():
                for user_id, got in extract(group).items():
                    users.add(user_id)
                    await conn.executemany(
                        "INSERT INTO memory_facts (user_id, fact, sources) VALUES ($1, $2, ARRAY[$3::text])"
                        " ON CONFLICT (user_id, fact) DO UPDATE SET updated_at = now(), sources ="
                        " CASE WHEN $3 = ANY(memory_facts.sources) THEN memory_facts.sources"
                        " ELSE memory_facts.sources || $3::text END",
                        [(user_id, f, sid) for f in got.facts],
                    )
            for user_id in users:
                await conn.execute(
                    "DELETE FROM memory_facts WHERE user_id = $1 AND id NOT IN"
                    " (SELECT id FROM memory_facts WHERE user_id = $1 ORDER BY updated_at DESC LIMIT $2)",
                    user_id,
                    self.options.max_facts_per_user,
                )

    async def forget_session(self, user_id: str, session_id: str) -> None:
        """Forget what only `session_id` taught (a fact another session also taught stays)."""
        async with self.db.transaction("memory.forget") as conn:
            await conn.execute(
                "UPDATE memory_facts SET sources = array_remove(sources, $2) WHERE user_id = $1 AND $2 = ANY(sources)",
                user_id,
                session_id,
            )
            await conn.execute("DELETE FROM memory_facts WHERE user_id = $1 AND sources = '{}'", user_id)


def merge_attributes(attrs: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new` over `attrs`; likes accumulate (the last 20 kept)."""
    out = dict(attrs)
    for key, value in new.items():
        if key == "likes":
            out["likes"] = list(dict.fromkeys([*out.get("likes", []), *value]))[-20:]
        else:
            out[key] = value
    return out


class PgProfile(_PgEngine, ProfileEngine):
    """The profile is rebuilt from per-session contributions (oldest first), so deleting a session
    takes back exactly what it taught."""

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
        if not any(e.attributes for e in extract(records).values()):
            return
        async with self.db.transaction("profile.update") as conn:
            touched: set[str] = set()
            for sid, group in by_session(await live_records(conn, records)).items():
                for user_id, got in extract(group).items():
                    if not got.attributes:
                        continue
                    if user_id not in touched:
                        await _lock_user(conn, user_id)
                        touched.add(user_id)
                    row = await conn.fetchrow(
                        "SELECT attributes FROM profile_contributions WHERE user_id = $1 AND session_id = $2",
                        user_id,
                        sid,
                    )
                    attrs = merge_attributes(dict(row["attributes"]) if row else {}, got.attributes)
                    await conn.execute(
                        "INSERT INTO profile_contributions (user_id, session_id, attributes) VALUES ($1, $2, $3)"
                        " ON CONFLICT (user_id, session_id) DO UPDATE SET attributes = $3, updated_at = now()",
                        user_id,
                        sid,
                        attrs,
                    )
            for user_id in touched:
                await _rebuild(conn, user_id)

    async def forget_session(self, user_id: str, session_id: str) -> None:
        """Drop what `session_id` taught and rebuild the profile from the other sessions."""
        async with self.db.transaction("profile.forget") as conn:
            await _lock_user(conn, user_id)
            await conn.execute(
                "DELETE FROM profile_contributions WHERE user_id = $1 AND session_id = $2", user_id, session_id
            )
            await _rebuild(conn, user_id)


async def _lock_user(conn: Any, user_id: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('cozy.profile:' || $1))", user_id)


async def _rebuild(conn: Any, user_id: str) -> None:
    rows = await conn.fetch(
        "SELECT attributes FROM profile_contributions WHERE user_id = $1 ORDER BY updated_at, created_at", user_id
    )
    attrs: dict[str, Any] = {}
    for r in rows:
        attrs = merge_attributes(attrs, dict(r["attributes"]))
    if not attrs:
        await conn.execute("DELETE FROM user_profiles WHERE user_id = $1", user_id)
        return
    await conn.execute(
        "INSERT INTO user_profiles (user_id, attributes, summary) VALUES ($1, $2, $3)"
        " ON CONFLICT (user_id) DO UPDATE SET attributes = $2, summary = $3, updated_at = now()",
        user_id,
        attrs,
        summarize(attrs),
    )


def _titled(title: str, content: str) -> str:
    return f"{title}: {content}" if title else content
