"""Conversation leases on the real PostgreSQL (DESIGN, Placement): two workers (two Placement
instances, two worker ids) on one throwaway database; who owns a session, heartbeat expiry,
fencing of writes after a takeover, and two conversation stacks answering one session in turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cozy_actors.conversation.actor import ConversationActor, ConversationDeps, SessionBusy, StartTurn
from cozy_actors.engines.llm.base import LLMFinish, LLMTextDelta
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.engines.tools.builtin import BUILTIN_TOOLS
from cozy_actors.placement import LeaseLost, OwnedElsewhere
from cozy_actors.placement.lease import Placement
from cozy_actors.runtime import Supervisor, SupervisorPolicy
from cozy_actors.storage.db import Database
from cozy_actors.storage.sessions import PgSessionStore, SessionGone
from cozy_actors.storage.users import PgUserStore
from cozy_core.aio import cancel_and_wait
from cozy_core.errors import NotFound
from tests.unit.test_conversation import request
from tests.unit.test_turn import ScriptedLLM

TTL = 1.0


@pytest.fixture
async def store(db: Database) -> PgSessionStore:
    return PgSessionStore(db)


@pytest.fixture
async def workers(db: Database) -> AsyncIterator[tuple[Placement, Placement]]:
    a = Placement(db, worker_id="worker-a", address="http://a.internal:1", ttl_s=TTL, heartbeat_s=0.2)
    b = Placement(db, worker_id="worker-b", address="http://b.internal:2", ttl_s=TTL, heartbeat_s=0.2)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


async def session(store: PgSessionStore, db: Database, sid: str = "s1") -> str:
    owner = await PgUserStore(db).create(f"u-{sid}")
    await store.claim(sid, owner.id, "assistant")
    return sid


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def test_one_owner_then_the_other(workers: tuple[Placement, Placement], store: PgSessionStore, db: Database):
    a, b = workers
    sid = await session(store, db)
    lease = await a.acquire(sid, "turn")
    assert (lease.kind, lease.version) == ("turn", 0)
    with pytest.raises(OwnedElsewhere) as refused:
        await b.acquire(sid, "call")
    assert (refused.value.owner.worker_id, refused.value.owner.address) == ("worker-a", "http://a.internal:1")
    assert refused.value.owner.kind == "turn" and refused.value.status == 409
    assert (await b.owner_of(sid)).worker_id == "worker-a"  # type: ignore[union-attr]
    await a.release(lease)
    assert await b.owner_of(sid) is None
    taken = await b.acquire(sid, "call")
    assert taken.token > lease.token
    with pytest.raises(NotFound):
        await a.acquire("no-such-session", "turn")


async def test_concurrent_acquires_make_one_owner(
    workers: tuple[Placement, Placement], store: PgSessionStore, db: Database
) -> None:
    a, b = workers
    for n in range(10):
        sid = await session(store, db, f"race-{n}")
        results = await asyncio.gather(a.acquire(sid, "turn"), b.acquire(sid, "turn"), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["Lease", "OwnedElsewhere"], results


async def test_a_dead_workers_lease_lapses_and_its_writes_are_refused(
    workers: tuple[Placement, Placement], store: PgSessionStore, db: Database
) -> None:
    a, b = workers
    sid = await session(store, db)
    old = await a.acquire(sid, "call")
    assert await store.append(sid, "assistant", user("one"), fence=old.token) == 1
    await cancel_and_wait(a._task)  # worker A stalls: no heartbeat, its row stays
    with pytest.raises(OwnedElsewhere):
        await b.acquire(sid, "call")
    await asyncio.sleep(TTL + 0.3)
    new = await b.acquire(sid, "call")
    assert new.version == 1
    with pytest.raises(LeaseLost):  # A wakes up and writes: refused in the same statement
        await store.append(sid, "assistant", user("stale"), fence=old.token)
    assert await store.append(sid, "assistant", user("two"), fence=new.token) == 2
    stored = await store.load(sid, limit=10)
    assert stored is not None and stored.version == 2
    assert [m["content"] for m in stored.messages] == ["one", "two"]


async def test_close_frees_at_once_and_a_restart_drops_old_leases(
    workers: tuple[Placement, Placement], store: PgSessionStore, db: Database
) -> None:
    a, b = workers
    s1, s2 = await session(store, db, "s1"), await session(store, db, "s2")
    await a.acquire(s1, "call")
    await a.close()
    assert (await b.acquire(s1, "call")).kind == "call"  # no ttl wait: the row is gone
    again = Placement(db, worker_id="worker-b", address="http://b.internal:2", ttl_s=TTL, heartbeat_s=0.2)
    await b.acquire(s2, "turn")
    await cancel_and_wait(b._task)  # B is killed; a new process with the same worker id starts
    await again.start()
    try:
        await a.start()
        await again.acquire(s1, "call")
        with pytest.raises(OwnedElsewhere):  # what the new B holds is live ...
            await a.acquire(s1, "turn")
        assert (await a.acquire(s2, "turn")).kind == "turn"  # ... what the old B left behind is not
    finally:
        await again.close()


async def test_same_worker_takes_over_and_a_turn_rides_on_its_call(
    workers: tuple[Placement, Placement], store: PgSessionStore, db: Database
) -> None:
    a, _ = workers
    sid = await session(store, db)
    first = await a.acquire(sid, "call")
    second = await a.acquire(sid, "call")  # a reconnect on the same worker: new token
    assert second.token > first.token
    with pytest.raises(LeaseLost):
        await store.append(sid, "assistant", user("x"), fence=first.token)
    ride = await a.acquire(sid, "turn")  # a typed message on the call's worker: the call keeps its lease
    assert (ride.kind, ride.token) == ("call", second.token)


async def test_the_final_write_releases_and_deleted_sessions_refuse(
    workers: tuple[Placement, Placement], store: PgSessionStore, db: Database
) -> None:
    a, b = workers
    sid = await session(store, db)
    lease = await a.acquire(sid, "turn")
    assert await store.append(sid, "assistant", user("q"), fence=lease.token) == 1
    reply = [{"role": "assistant", "content": "r"}]
    assert await store.append(sid, "assistant", reply, fence=lease.token, release=True) == 2
    assert await a.owner_of(sid) is None
    assert (await b.acquire(sid, "turn")).version == 2
    owner = await db.fetchval("t", "SELECT user_id::text FROM sessions WHERE id = $1", sid)
    await store.soft_delete(sid, owner)
    with pytest.raises(SessionGone):
        await store.append(sid, "assistant", user("late"), fence=lease.token)
    with pytest.raises(NotFound):
        await b.acquire(sid, "turn")


async def test_the_users_words_are_stored_only_with_a_lease(
    workers: tuple[Placement, Placement], store: PgSessionStore, db: Database
) -> None:
    a, b = workers
    sid = await session(store, db)
    lease = await a.acquire(sid, "turn", append=user("first words"))
    assert (lease.kind, lease.version) == ("turn", 0)
    with pytest.raises(OwnedElsewhere):
        await b.acquire(sid, "turn", append=user("refused words"))
    await store.append(sid, "assistant", [{"role": "assistant", "content": "r"}], fence=lease.token, release=True)
    call = await a.acquire(sid, "call")
    ride = await a.acquire(sid, "turn", append=user("typed during the call"))
    assert (ride.kind, ride.token, ride.version) == ("call", call.token, 2)  # ridden: nothing stored
    stored = await store.load(sid, limit=10)
    assert stored is not None and stored.version == 2
    assert [m["content"] for m in stored.messages] == ["first words", "r"]


class Recording(ScriptedLLM):
    """Answers "n" with the number of user messages it was shown: what each node's model saw."""

    def __init__(self) -> None:
        super().__init__([])

    async def stream_chat(self, request: Any) -> Any:
        self.requests.append(request)
        users = [m["content"] for m in request.messages if m["role"] == "user"]
        await asyncio.sleep(0.05)
        yield LLMTextDelta(f"I see {len(users)} user messages")
        yield LLMFinish("stop")


async def test_two_stacks_alternating_turns_see_the_whole_history(
    workers: tuple[Placement, Placement], store: PgSessionStore, db: Database
) -> None:
    """Each stack keeps its actor (and the history it loaded) between turns, as a node does; the
    lease's version tells it when the other stack answered meanwhile."""
    sid = await session(store, db)
    policy = SupervisorPolicy(max_duration_s=None, idle_timeout_s=None)
    sups = [Supervisor(policy), Supervisor(policy)]
    llm = Recording()
    refs = []
    for placement, sup in zip(workers, sups, strict=True):
        deps = ConversationDeps(catalog=ToolCatalog(BUILTIN_TOOLS.values()), store=store, placement=placement)
        refs.append(await sup.spawn(lambda aid, d=deps: ConversationActor(aid, d, session_id=sid), sid))
    try:
        for n in range(4):  # A, B, A, B
            handle = await refs[n % 2].ask(StartTurn(request(llm, f"turn {n}")), timeout=5)
            events = [e async for e in handle]
            assert events[-1].new_messages[0]["content"] == f"I see {n + 1} user messages"
            for _ in range(100):  # the reply's write (and the release with it) follows the last event
                if await workers[0].owner_of(sid) is None:
                    break
                await asyncio.sleep(0.01)
        users = [[m["content"] for m in r.messages if m["role"] == "user"] for r in llm.requests]
        assert users[-1] == ["turn 0", "turn 1", "turn 2", "turn 3"]
        # Concurrent turns on the two stacks: one answers, the other is busy (409).
        slow = await refs[0].ask(StartTurn(request(llm, "slow")), timeout=5)
        busy = await refs[1].ask(StartTurn(request(llm, "meanwhile")), timeout=5)
        assert isinstance(busy, SessionBusy) and busy.code == "RESOURCE_SESSION_BUSY"
        assert [e async for e in slow][-1].new_messages[0]["content"] == "I see 5 user messages"
    finally:
        for sup in sups:
            await sup.shutdown(2)


def count_queries(db: Database) -> list[str]:
    """Record the operation name of every statement the store and placement send from now on."""
    ops: list[str] = []
    for name in ("fetch", "fetchrow", "fetchval", "execute", "connection"):
        real = getattr(db, name)

        def counted(op: str, *args: Any, _real: Any = real) -> Any:
            ops.append(op)
            return _real(op, *args)

        setattr(db, name, counted)
    return ops


async def test_what_a_turn_costs_in_statements(
    workers: tuple[Placement, Placement], store: PgSessionStore, db: Database
) -> None:
    """A turn on a node that answered the last one: lease with the user's words, reply with the
    release: two statements, as before placement. After another node answered: the reload too."""
    a, b = workers
    await cancel_and_wait(a._task)  # no heartbeats in the count (one per worker per second, not per turn)
    await cancel_and_wait(b._task)
    sid = await session(store, db)
    llm = Recording()
    sups = [Supervisor(SupervisorPolicy(max_duration_s=None, idle_timeout_s=None)) for _ in range(2)]
    refs = []
    for placement, sup in zip(workers, sups, strict=True):
        deps = ConversationDeps(catalog=ToolCatalog(BUILTIN_TOOLS.values()), store=store, placement=placement)
        refs.append(await sup.spawn(lambda aid, d=deps: ConversationActor(aid, d, session_id=sid), sid))

    async def turn(ref: Any, text: str) -> None:
        handle = await ref.ask(StartTurn(request(llm, text)), timeout=5)
        [e async for e in handle]
        for _ in range(100):
            if await b.owner_of(sid) is None:
                return
            await asyncio.sleep(0.01)

    try:
        await turn(refs[0], "first")  # a new session: nothing to load
        await turn(refs[1], "on b")
        ops = count_queries(db)
        await turn(refs[0], "back on a")  # a is stale: it reloads
        stale = [o for o in ops if o != "placement.owner"]
        ops.clear()
        await turn(refs[0], "again on a")
        steady = [o for o in ops if o != "placement.owner"]
        assert steady == ["placement.acquire", "message.append"], steady
        assert stale == ["placement.acquire", "session.load", "message.append"], stale
    finally:
        for sup in sups:
            await sup.shutdown(2)
