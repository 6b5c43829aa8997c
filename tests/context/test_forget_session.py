"""Soft delete reaches memory and profile (issue 10, item 5), on the machine's real PostgreSQL:
what a deleted session taught is forgotten, what other sessions taught stays, a queued update of a
deleted session is never applied, and nothing more can be appended to it."""

from __future__ import annotations

import asyncio

import pytest

from cozy_actors.context import TurnRecord
from cozy_actors.context.postgres import PgMemory, PgProfile
from cozy_actors.storage.checkpoints import TurnCheckpoints
from cozy_actors.storage.db import Database
from cozy_actors.storage.sessions import PgSessionStore, SessionGone
from cozy_actors.storage.users import PgUserStore
from tests.storage.conftest import db, pg_url  # noqa: F401  (fixtures)


async def _user_with_sessions(db: Database, *sids: str) -> tuple[str, PgSessionStore]:  # noqa: F811
    uid = (await PgUserStore(db).create("ann")).id
    store = PgSessionStore(db)
    for sid in sids:
        await store.claim(sid, uid, "assistant")
    return uid, store


def said(uid: str, sid: str | None, text: str) -> TurnRecord:
    return TurnRecord(uid, "assistant", [{"role": "user", "content": text}], session_id=sid)


async def facts(db: Database, uid: str) -> set[str]:  # noqa: F811
    return {r["fact"] for r in await db.fetch("t", "SELECT fact FROM memory_facts WHERE user_id = $1", uid)}


async def test_deleting_a_session_forgets_what_only_it_taught(db: Database) -> None:  # noqa: F811
    uid, store = await _user_with_sessions(db, "s1", "s2")
    memory, profile = PgMemory(db=db), PgProfile(db=db)
    turns = [
        said(uid, "s1", "my name is Ada and I live in Paris. I like chess"),
        said(uid, "s2", "I like green tea. I like chess"),
        said(uid, None, "I am 36 years old"),  # a stateless chat: no session to delete it with
    ]
    await memory.update(turns)
    await profile.update(turns)
    assert len(await facts(db, uid)) == 5
    await store.soft_delete("s1", uid)
    await memory.forget_session(uid, "s1")
    await profile.forget_session(uid, "s1")
    assert await facts(db, uid) == {
        "The user likes green tea",
        "The user likes chess",  # s2 taught it too
        "The user is 36 years old",
    }
    got = await profile.get(uid)
    assert got["attributes"] == {"likes": ["green tea", "chess"], "age": "36"}
    assert "Ada" not in got["summary"] and "Paris" not in got["summary"]
    await memory.forget_session(uid, "s2")
    await profile.forget_session(uid, "s2")
    assert await facts(db, uid) == {"The user is 36 years old"}
    assert (await profile.get(uid))["attributes"] == {"age": "36"}


async def test_a_queued_update_of_a_deleted_session_is_not_applied(db: Database) -> None:  # noqa: F811
    uid, store = await _user_with_sessions(db, "s1", "s2")
    memory, profile = PgMemory(db=db), PgProfile(db=db)
    queued = [said(uid, "s1", "my name is Ada"), said(uid, "s2", "I live in Rome")]
    await store.soft_delete("s1", uid)  # deleted while its update waited in the queue
    await memory.update(queued)
    await profile.update(queued)
    assert await facts(db, uid) == {"The user lives in Rome"}
    assert (await profile.get(uid))["attributes"] == {"location": "Rome"}


async def test_appends_to_a_deleted_session_are_refused(db: Database) -> None:  # noqa: F811
    uid, store = await _user_with_sessions(db, "s1")
    await store.append("s1", "assistant", [{"role": "user", "content": "hi"}])
    other_node = PgSessionStore(db)
    await other_node.claim("s1", uid, "assistant")  # ownership now cached there for a minute
    await store.soft_delete("s1", uid)
    for node in (store, other_node):
        with pytest.raises(SessionGone):
            await node.append("s1", "assistant", [{"role": "assistant", "content": "still talking"}])
    rows = await db.fetch("t", "SELECT content FROM messages WHERE session_id = 's1'")
    assert [r["content"] for r in rows] == ["hi"]
    assert await db.fetchval("t", "SELECT message_count FROM sessions WHERE id = 's1'") == 1


async def test_checkpoints_become_incomplete_messages_only_when_orphaned(db: Database) -> None:  # noqa: F811
    _, store = await _user_with_sessions(db, "s1", "s2")
    node = TurnCheckpoints(db, orphan_after_s=0.2)
    text = {"t1": "Echo: one two", "t2": "Echo: three"}
    node.open("t1", "s1", "stub-model", lambda: text["t1"])
    node.open("t2", "s2", "stub-model", lambda: text["t2"])
    await node.save()
    # t2 finishes normally: its append writes the tombstone; a late checkpoint write cannot revive it.
    node.close("t2")
    await store.append("s2", "assistant", [{"role": "assistant", "content": "Echo: three four"}], checkpoint="t2")
    await node.save()
    assert await node.sweep() == 0  # t1 is this node's own open turn, never an orphan of its own sweep
    dead = TurnCheckpoints(db, orphan_after_s=0.2)  # the process of `node` was killed: another one sweeps
    await asyncio.sleep(0.4)
    assert await dead.sweep() == 1
    rows = await db.fetch("t", "SELECT session_id, role, content, incomplete, model FROM messages ORDER BY id")
    assert [tuple(r.values()) for r in rows] == [
        ("s2", "assistant", "Echo: three four", False, None),
        ("s1", "assistant", "Echo: one two", True, "stub-model"),
    ]
    assert await dead.sweep() == 0  # once
    assert await db.fetchval("t", "SELECT count(*) FROM turn_checkpoints") == 0
