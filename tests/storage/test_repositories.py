"""Users, keys, sessions, messages and audit rows on a real PostgreSQL (fresh database per test)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cozy_actors.storage.audit import PgAuditStore
from cozy_actors.storage.base import MessageMeta
from cozy_actors.storage.db import Conflict, Database
from cozy_actors.storage.sessions import PgSessionStore
from cozy_actors.storage.users import PgUserStore
from cozy_core.errors import CozyError, NotFound


async def two_users(db: Database) -> tuple[str, str]:
    users = PgUserStore(db)
    a = await users.create("ann")
    b = await users.create("bob")
    return a.id, b.id


async def test_users_and_keys(db: Database) -> None:
    users = PgUserStore(db)
    ann = await users.create("ann", "admin", password_hash="h")
    assert ann.role == "admin" and not ann.disabled
    with pytest.raises(Conflict):
        await users.create("ann")
    key_id = await users.add_key(ann.id, b"\x01" * 32, "cozy-abc", rate_limit_rpm=30, rate_limit_burst=2)
    match = await users.find_key(b"\x01" * 32)
    assert match is not None and match.user.name == "ann" and match.key_id == key_id
    assert (match.rate_limit_rpm, match.rate_limit_burst) == (30, 2)
    assert await users.find_key(b"\x02" * 32) is None
    assert await users.revoke_key(key_id)
    assert await users.find_key(b"\x01" * 32) is None  # revoked
    assert await users.key_exists(b"\x01" * 32)  # but still known (bootstrap must not re-add it)
    await db.execute("t", "UPDATE users SET disabled = true WHERE id = $1", ann.id)
    await users.add_key(ann.id, b"\x03" * 32, "cozy-def")
    assert await users.find_key(b"\x03" * 32) is None  # disabled user
    found = await users.by_name("ann")
    assert found is not None and found[1] == "h"
    assert await users.count() == 1


async def test_claim_ownership_and_soft_delete(db: Database) -> None:
    a, b = await two_users(db)
    store = PgSessionStore(db)
    assert await store.claim("s1", a, "assistant") is True
    assert await store.claim("s1", a, "assistant") is False  # cached
    fresh = PgSessionStore(db)  # another node: no cache
    assert await fresh.claim("s1", a, "assistant") is False
    with pytest.raises(NotFound):
        await fresh.claim("s1", b, "assistant")  # someone else's id
    with pytest.raises(NotFound):
        await store.get("s1", b)
    await store.append("s1", "assistant", [{"role": "user", "content": "hi"}])
    await store.soft_delete("s1", a)
    with pytest.raises(NotFound):
        await store.soft_delete("s1", a)
    with pytest.raises(NotFound):
        await store.get("s1", a)
    with pytest.raises(NotFound):
        await store.claim("s1", a, "assistant")  # a deleted id is not reborn
    assert (await store.list(a, limit=10)).items == []
    assert await store.load("s1", limit=10) is None
    row = await db.fetchrow("t", "SELECT deleted_at, message_count FROM sessions WHERE id = 's1'")
    assert row["deleted_at"] is not None and row["message_count"] == 1  # kept in the table
    assert await db.fetchval("t", "SELECT count(*) FROM messages WHERE session_id = 's1'") == 1


async def test_concurrent_first_claims_agree(db: Database) -> None:
    a, b = await two_users(db)
    stores = [PgSessionStore(db) for _ in range(6)]
    results = await asyncio.gather(
        *(s.claim("race", a if i % 2 == 0 else b, "assistant") for i, s in enumerate(stores)), return_exceptions=True
    )
    winners = [r for r in results if r is True]
    assert len(winners) == 1
    owner = await db.fetchval("t", "SELECT user_id::text FROM sessions WHERE id = 'race'")
    for i, r in enumerate(results):
        mine = (a if i % 2 == 0 else b) == owner
        assert (r in (True, False)) if mine else isinstance(r, NotFound)


async def test_messages_metadata_history_and_pages(db: Database) -> None:
    a, b = await two_users(db)
    store = PgSessionStore(db)
    await store.claim("s2", a, "assistant")
    await store.append("s2", "assistant", [{"role": "user", "content": "q1"}])
    call = {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}
    await store.append(
        "s2",
        "assistant",
        [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "assistant", "content": "it is 42"},
        ],
        meta=MessageMeta(model="m1", prompt_tokens=10, completion_tokens=3, latency_ms=120),
    )
    await store.append("s2", "assistant", [{"role": "user", "content": [{"type": "text", "text": "q2"}]}])
    await store.append(
        "s2", "assistant", [{"role": "assistant", "content": "par"}], meta=MessageMeta(model="m1", incomplete=True)
    )
    loaded = await store.load("s2", limit=3)
    assert loaded is not None and loaded.personality_id == "assistant"
    assert [m["role"] for m in loaded.messages] == ["assistant", "user", "assistant"]  # the last 3, in order
    assert loaded.messages[1]["content"] == [{"type": "text", "text": "q2"}]
    page1 = await store.messages("s2", a, limit=4)
    assert [m.role for m in page1.items] == ["user", "assistant", "tool", "assistant"] and page1.has_more
    tool_call_msg, final = page1.items[1], page1.items[3]
    assert tool_call_msg.tool_calls == [call] and tool_call_msg.model == "m1" and tool_call_msg.prompt_tokens is None
    assert (final.model, final.prompt_tokens, final.completion_tokens, final.latency_ms) == ("m1", 10, 3, 120)
    assert page1.items[2].tool_call_id == "c1" and page1.items[2].model is None
    page2 = await store.messages("s2", a, limit=4, cursor=page1.next_cursor)
    assert [m.content for m in page2.items] == [[{"type": "text", "text": "q2"}], "par"] and not page2.has_more
    assert page2.items[1].incomplete is True and final.incomplete is False
    newest = await store.messages("s2", a, limit=2, order="desc")
    assert [m.content for m in newest.items] == ["par", [{"type": "text", "text": "q2"}]]
    with pytest.raises(NotFound):
        await store.messages("s2", b, limit=10)
    with pytest.raises(CozyError) as bad:
        await store.messages("s2", a, limit=10, cursor="not-a-cursor")
    assert bad.value.status == 400
    session = await store.get("s2", a)
    assert session.message_count == 6


async def test_session_list_is_owner_scoped_and_paged(db: Database) -> None:
    a, b = await two_users(db)
    store = PgSessionStore(db)
    for i in range(5):
        await store.create(a, "assistant", session_id=f"a{i}", title=f"t{i}", metadata={"i": i})
    await store.create(b, "assistant", session_id="b0")
    made = await store.create(a, "voice-concierge")
    assert made.id.startswith("sess_") and made.personality_id == "voice-concierge"
    with pytest.raises(Conflict):
        await store.create(b, "assistant", session_id="a0")
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list(a, limit=2, cursor=cursor)
        seen += [s.id for s in page.items]
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted([*(f"a{i}" for i in range(5)), made.id]) and len(seen) == 6
    assert seen[0] == made.id  # newest first
    assert [s.id for s in (await store.list(b, limit=10)).items] == ["b0"]
    got = await store.get("a3", a)
    assert got.title == "t3" and got.metadata == {"i": 3}


async def test_audit_insert_and_filters(db: Database) -> None:
    a, _ = await two_users(db)
    audit = PgAuditStore(db)
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    await audit.insert_many(
        [
            {"type": "auth.failed", "outcome": "denied", "detail": {"reason": "missing"}, "at": old},
            {"type": "auth.forbidden", "user_id": a, "user_name": "ann", "outcome": "denied", "resource": "x"},
            {"type": "tool.call", "user_id": a, "resource": "tool:calculator", "request_id": "r1"},
            {"type": "admin.config.read", "user_id": a},
        ]
    )
    everything = await audit.query(limit=10)
    assert [e.type for e in everything.items] == ["admin.config.read", "tool.call", "auth.forbidden", "auth.failed"]
    assert [e.type for e in (await audit.query(type="auth.", limit=10)).items] == ["auth.forbidden", "auth.failed"]
    assert [e.type for e in (await audit.query(type="tool.call", limit=10)).items] == ["tool.call"]
    assert len((await audit.query(user_id=a, limit=10)).items) == 3
    recent = await audit.query(since=datetime.now(UTC) - timedelta(hours=1), limit=10)
    assert "auth.failed" not in [e.type for e in recent.items]
    page = await audit.query(limit=3)
    rest = await audit.query(limit=3, cursor=page.next_cursor)
    assert len(page.items) == 3 and [e.type for e in rest.items] == ["auth.failed"]
    failed = everything.items[-1]
    assert failed.detail == {"reason": "missing"} and failed.user_id is None and failed.outcome == "denied"
