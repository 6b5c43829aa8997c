"""Optional vector similarity for the postgres knowledge engine: pgvector plus an OpenAI-compatible
embeddings endpoint (`POST {base_url}/embeddings`).

Why at run time and not in a migration: migrations must apply on every server, and a server without
the pgvector extension (a distribution's PostgreSQL without the package) could not apply one that
needs it. So `setup()` checks `pg_available_extensions`, creates the extension and the
`knowledge_embeddings` table idempotently (under an advisory lock, several nodes may start at once),
and otherwise reports why knowledge stays full-text only.

One embedding per chunk, tagged with the model (and dimensions when configured): changing the model
re-embeds the chunks in the background (`backfill`). Search is exact cosine distance over the
searched datasets' chunks: right for knowledge bases of up to ~100k chunks; an ANN index (HNSW)
would be the next step for larger ones.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from pydantic import Field

from cozy_actors.storage.db import Database
from cozy_core.engines import EngineError

from .adapters.http import HttpAdapter, HttpOptions

log = logging.getLogger("cozy.context")
_LOCK_ID = 0x0C02E_7EC7  # advisory lock key: one node at a time creates the vector table

_TABLE = """CREATE TABLE IF NOT EXISTS knowledge_embeddings (
    chunk_id  bigint PRIMARY KEY REFERENCES knowledge_chunks (id) ON DELETE CASCADE,
    model     text NOT NULL,
    embedding vector NOT NULL
)"""


class EmbeddingsOptions(HttpOptions):
    """`knowledge.options.embeddings` in context.yaml; `base_url` includes the version (…/v1)."""

    model: str = Field(min_length=1)
    dimensions: int | None = Field(None, ge=1, le=16000)  # sent to models that can shorten their output
    batch_size: int = Field(64, ge=1, le=2048)  # texts per embeddings request
    min_similarity: float = Field(0.3, ge=-1, le=1)  # cosine similarity below which a hit is dropped


class EmbeddingsClient(HttpAdapter):
    """The embedding model service (OpenAI, Ollama, vLLM, LM Studio ... speak the same API)."""

    Options = EmbeddingsOptions
    service = "embeddings"

    def auth_headers(self) -> dict[str, str]:
        key = self.options.api_key
        return {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order; raises EngineError on a failure or a malformed answer."""
        out: list[list[float]] = []
        size = self.options.batch_size
        for start in range(0, len(texts), size):
            batch = texts[start : start + size]
            body: dict[str, Any] = {"model": self.options.model, "input": batch}
            if self.options.dimensions:
                body["dimensions"] = self.options.dimensions
            got = await self.call("POST", "/embeddings", op="embed", json=body)
            out.extend(_vectors(got, len(batch), self.options.dimensions))
        return out


def _vectors(payload: Any, count: int, dimensions: int | None) -> list[list[float]]:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != count:
        raise EngineError("embeddings: answer does not hold one vector per input", code="ENGINE_UPSTREAM_ERROR")
    rows = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
    vectors = [[float(x) for x in (r.get("embedding") or [])] if isinstance(r, dict) else [] for r in rows]
    width = len(vectors[0]) if vectors else 0
    if width == 0 or any(len(v) != width for v in vectors) or (dimensions and width != dimensions):
        raise EngineError(
            f"embeddings: unexpected vector sizes (expected {dimensions or 'equal'})", code="ENGINE_UPSTREAM_ERROR"
        )
    return vectors


def literal(vector: list[float]) -> str:
    """pgvector's text form ('[1,2,3]'), sent as text and cast in SQL (asyncpg has no vector codec)."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class VectorIndex:
    """The `knowledge_embeddings` table for one embedding model."""

    def __init__(self, db: Database, embedder: EmbeddingsClient) -> None:
        self.db = db
        self.embedder = embedder
        opts: EmbeddingsOptions = embedder.options
        self.model_key = f"{opts.model}:{opts.dimensions}" if opts.dimensions else opts.model

    async def setup(self) -> str | None:
        """Create extension and table if possible; returns why vector search is off (None: it is on)."""
        async with self.db.connection("knowledge.vector_setup") as conn:
            row = await conn.fetchrow("SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'")
            if row is None:
                return "this PostgreSQL server has no pgvector extension (package postgresql-NN-pgvector)"
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
                    if row["installed_version"] is None:
                        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    await conn.execute(_TABLE)
            except asyncpg.PostgresError as exc:
                return f"cannot set up pgvector ({type(exc).__name__}: {exc})"
        return None

    async def store(self, conn: asyncpg.Connection, rows: list[tuple[int, list[float]]]) -> None:
        """Insert or replace the embeddings of chunks (inside the caller's transaction)."""
        await conn.executemany(
            "INSERT INTO knowledge_embeddings (chunk_id, model, embedding) VALUES ($1, $2, $3::text::vector)"
            " ON CONFLICT (chunk_id) DO UPDATE SET model = EXCLUDED.model, embedding = EXCLUDED.embedding",
            [(chunk_id, self.model_key, literal(vec)) for chunk_id, vec in rows],
        )

    async def search(self, datasets: list[str], vector: list[float], limit: int) -> list[asyncpg.Record]:
        """The nearest chunks of these datasets by cosine similarity (`similarity` ≥ min_similarity)."""
        rows = await self.db.fetch(
            "knowledge.vector_search",
            "SELECT c.id, c.title, c.content, 1 - (e.embedding <=> $1::text::vector) AS similarity"
            " FROM knowledge_embeddings e JOIN knowledge_chunks c ON c.id = e.chunk_id"
            " WHERE e.model = $2 AND c.dataset = ANY($3::text[]) AND vector_dims(e.embedding) = $4"
            " ORDER BY e.embedding <=> $1::text::vector, c.id LIMIT $5",
            literal(vector),
            self.model_key,
            datasets,
            len(vector),
            limit,
        )
        floor = self.embedder.options.min_similarity
        return [r for r in rows if float(r["similarity"]) >= floor]

    async def backfill(self, batch: int = 256) -> int:
        """Embed the chunks that have no embedding of this model (added before embeddings were
        configured, or under another model); returns how many were embedded."""
        done = 0
        while True:
            rows = await self.db.fetch(
                "knowledge.vector_backfill",
                "SELECT c.id, c.title, c.content FROM knowledge_chunks c WHERE NOT EXISTS"
                " (SELECT 1 FROM knowledge_embeddings e WHERE e.chunk_id = c.id AND e.model = $1)"
                " ORDER BY c.id LIMIT $2",
                self.model_key,
                batch,
            )
            if not rows:
                return done
            vectors = await self.embedder.embed([embed_text(r["title"], r["content"]) for r in rows])
            async with self.db.transaction("knowledge.vector_backfill") as conn:
                await self.store(conn, [(r["id"], v) for r, v in zip(rows, vectors, strict=True)])
            done += len(rows)


def embed_text(title: str, content: str) -> str:
    """What is embedded for a chunk: its document's title gives a short chunk its topic."""
    return f"{title}\n{content}" if title else content


def fuse(rankings: list[list[Any]], limit: int, k: int = 60) -> list[tuple[Any, float]]:
    """Reciprocal rank fusion of ranked id lists: score = Σ 1/(k + rank). Full-text ranks and cosine
    similarities are not comparable numbers; ranks are, and RRF needs no tuning per model."""
    scores: dict[Any, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:limit]
