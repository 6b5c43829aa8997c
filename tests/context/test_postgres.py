"""Built-in engines on the machine's real PostgreSQL (a fresh database per test), and memory learnt
after turn N through the Redis Streams queue being used in turn N+1."""

from __future__ import annotations

import asyncio
import time

from cozy_actors.cache.link import RedisLink
from cozy_actors.config.models import ContextConfig
from cozy_actors.context import ContextQuery, ContextService, TurnRecord
from cozy_actors.context.postgres import KnowledgeOptions, PgKnowledge, PgMemory, PgProfile, chunk, or_query
from cozy_actors.queue import QueuePolicy, WriteQueue
from cozy_actors.storage.db import Database
from tests.storage.conftest import db, pg_url, redis_link  # noqa: F401  (fixtures)


def test_chunk_and_query_helpers() -> None:
    text = ("Sentence number one is here. " * 40).strip()
    pieces = chunk(text, 200, 20)
    assert len(pieces) > 4 and all(len(p) <= 200 for p in pieces)
    assert or_query("What's my name? name!") == "what | my | name"
    assert or_query("?!") == ""


async def test_knowledge_add_and_full_text_search(db: Database) -> None:  # noqa: F811
    k = PgKnowledge(KnowledgeOptions(chunk_chars=200), db=db)
    n = await k.add_documents(
        "teas",
        [
            {"title": "Green tea", "text": "Green tea is steamed or pan-fired. " * 10},
            {"title": "Coffee", "text": "Espresso is brewed under pressure."},
        ],
    )
    assert n >= 3
    await k.add_documents("other", [{"text": "Green tea from another dataset."}])
    hits = await k.search(ContextQuery(None, "how is green tea made?", datasets=("teas",)))
    assert hits and all(h.source == "knowledge" and "Green tea" in h.text for h in hits)
    assert not any("another dataset" in h.text for h in hits)
    assert await k.search(ContextQuery(None, "quantum chromodynamics", datasets=("teas",))) == []


async def test_memory_and_profile_learn_from_turns(db: Database) -> None:  # noqa: F811
    memory, profile = PgMemory(db=db), PgProfile(db=db)
    turn = TurnRecord(
        "u1",
        "assistant",
        [
            {"role": "user", "content": "Hi, my name is Ada Lovelace and I live in London. I like green tea."},
            {"role": "assistant", "content": "my name is Bot"},  # the assistant's words are not about the user
            {"role": "user", "content": "Remember that my cat is called Tom."},
        ],
    )
    await memory.update([turn])
    await profile.update([turn, TurnRecord("u1", "assistant", [{"role": "user", "content": "I love jazz"}])])
    facts = [i.text for i in await memory.search(ContextQuery("u1", "what is my cat called?", limit=10))]
    assert facts[0] == "my cat is called Tom"  # the most relevant first
    assert set(facts) == {
        "The user's name is Ada Lovelace",
        "The user lives in London",
        "The user likes green tea",
        "my cat is called Tom",
    }
    assert await memory.search(ContextQuery("u2", "cat")) == []
    got = await profile.get("u1")
    assert got["attributes"] == {"name": "Ada Lovelace", "location": "London", "likes": ["green tea", "jazz"]}
    items = await profile.search(ContextQuery("u1", "hello"))
    assert [i.text for i in items] == ["Name: Ada Lovelace. Lives in: London. Likes: green tea, jazz"]


async def test_memory_from_turn_n_is_used_in_turn_n_plus_1_via_redis(
    db: Database,  # noqa: F811
    redis_link: RedisLink,  # noqa: F811
) -> None:
    queue = WriteQueue(QueuePolicy(max_attempts=3, batch_size=10, retry_after_s=0.2, block_s=0.05), redis_link)
    svc = ContextService(
        ContextConfig(update_mode="async"), memory=PgMemory(db=db), profile=PgProfile(db=db), queue=queue
    )
    await queue.start()
    try:
        ok, _ = await redis_link.ping()
        assert ok and queue.backend == "redis"
        first = await svc.prepare(system="S", history=[], new=[{"role": "user", "content": "hello"}], user_id="u9")
        assert first.messages[0]["content"] == "S"
        started = time.perf_counter()
        await svc.after_turn(
            TurnRecord("u9", "assistant", [{"role": "user", "content": "My name is Grace. I like sailing."}])
        )
        assert time.perf_counter() - started < 0.05  # queued, not applied inline
        new = [{"role": "user", "content": "What is my name?"}]
        for _ in range(100):
            second = await svc.prepare(system="S", history=[], new=new, user_id="u9")
            if "Name: Grace" in second.messages[0]["content"]:
                break
            await asyncio.sleep(0.05)
        system = second.messages[0]["content"]
        assert "The user's name is Grace" in system and "Name: Grace" in system and "sailing" in system
    finally:
        await queue.stop()
