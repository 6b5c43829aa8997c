"""Per-user quotas (cozy_actors/quotas.py) and the supervisor's lease hook: counts are exact, a
slot comes back however its holder ends (stop, crash, cancel, a failed spawn)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cozy_actors.auth.principal import Principal
from cozy_actors.config.limits import QuotaConfig
from cozy_actors.quotas import QuotaExceeded, Quotas
from cozy_actors.runtime import Actor, StopReason, Supervisor, SupervisorPolicy

ALICE = Principal("u-alice", "alice", "user", "api_key", "k1")
BOB = Principal("u-bob", "bob", "user", "api_key", "k2")
ROOT = Principal("u-root", "root", "admin", "api_key", "k3")


def quotas(**kw: Any) -> Quotas:
    return Quotas(QuotaConfig(**{"realtime_sessions_per_user": 2, "retry_after_s": 2.5, **kw}))


def test_limit_per_user_and_429_with_retry_after() -> None:
    q = quotas()
    a1, a2 = q.acquire("realtime_sessions", ALICE), q.acquire("realtime_sessions", ALICE)
    with pytest.raises(QuotaExceeded) as exc:
        q.acquire("realtime_sessions", ALICE)
    err = exc.value
    assert (err.status, err.code, err.headers) == (429, "RESOURCE_QUOTA_EXCEEDED", {"retry-after": "3"})
    assert "2 realtime/WebRTC sessions per user" in err.message
    q.acquire("realtime_sessions", BOB)  # another user is not affected
    a1.release()
    a1.release()  # idempotent: a second release frees nothing more
    assert q.held("realtime_sessions", ALICE.user_id) == 1
    q.acquire("realtime_sessions", ALICE)
    a2.release()
    assert q.snapshot()["realtime_sessions"] == 2


def test_admins_exempt_unless_configured_and_switches() -> None:
    q = quotas(realtime_sessions_per_user=1)
    for _ in range(5):
        q.acquire("realtime_sessions", ROOT)
    assert q.snapshot()["realtime_sessions"] == 0
    strict = quotas(realtime_sessions_per_user=1, exempt_admins=False)
    strict.acquire("realtime_sessions", ROOT)
    with pytest.raises(QuotaExceeded):
        strict.acquire("realtime_sessions", ROOT)
    off = quotas(realtime_sessions_per_user=1, enabled=False)
    off.acquire("realtime_sessions", ALICE)
    off.acquire("realtime_sessions", ALICE)
    unlimited = quotas(realtime_sessions_per_user="")  # empty in YAML: no limit of that kind
    assert unlimited.limit("realtime_sessions") is None
    unlimited.acquire("realtime_sessions", ALICE)
    unlimited.acquire("realtime_sessions", ALICE)


class _Crashy(Actor):
    kind = "test_quota"

    def __init__(self, actor_id: str, gate: asyncio.Event) -> None:
        super().__init__(actor_id)
        self.gate = gate

    async def handle(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("boom")
        if message == "hang":
            await self.gate.wait()
        return message


async def test_supervisor_releases_the_lease_however_the_actor_ends() -> None:
    q = quotas(realtime_sessions_per_user=1)
    sup = Supervisor(SupervisorPolicy(max_restarts=0, idle_timeout_s=None, max_duration_s=None), tick_s=0.02)
    gate = asyncio.Event()

    def lease() -> Any:
        return q.acquire("realtime_sessions", ALICE)

    async def spawn() -> Any:
        return await sup.spawn(lambda aid: _Crashy(aid, gate), lease=lease)

    try:
        # stopped normally
        ref = await spawn()
        with pytest.raises(QuotaExceeded):
            await spawn()
        await ref.stop()
        assert q.held("realtime_sessions", ALICE.user_id) == 0
        # crashed (restart budget 0)
        ref = await spawn()
        ref.tell("crash")
        await asyncio.wait_for(ref.wait_stopped(), 2)
        assert (await ref.wait_stopped())[0] is StopReason.CRASHED
        assert q.held("realtime_sessions", ALICE.user_id) == 0
        # cancelled in the middle of a message
        ref = await spawn()
        ref.tell("hang")
        await asyncio.sleep(0.05)
        await ref.stop(StopReason.REVOKED, "test")
        assert q.held("realtime_sessions", ALICE.user_id) == 0
        # the factory fails: the slot taken for it is given back at once
        with pytest.raises(RuntimeError):
            await sup.spawn(lambda aid: (_ for _ in ()).throw(RuntimeError("no")), lease=lease)
        assert q.held("realtime_sessions", ALICE.user_id) == 0
        # still held at shutdown: released by the drain
        await spawn()
        assert q.held("realtime_sessions", ALICE.user_id) == 1
    finally:
        await sup.shutdown(timeout=2)
    assert q.snapshot()["realtime_sessions"] == 0


async def test_get_or_spawn_takes_a_slot_only_for_a_new_actor_and_idle_eviction() -> None:
    q = quotas(conversations_per_user=1)
    sup = Supervisor(SupervisorPolicy(idle_timeout_s=None, max_duration_s=None), tick_s=0.02)
    gate = asyncio.Event()
    taken = 0

    def lease() -> Any:
        nonlocal taken
        taken += 1
        return q.acquire("conversations", ALICE)

    try:
        ref = await sup.get_or_spawn("s1", lambda aid: _Crashy(aid, gate), lease=lease)
        assert await sup.get_or_spawn("s1", lambda aid: _Crashy(aid, gate), lease=lease) is ref
        assert taken == 1
        assert await ref.ask("ping", timeout=1) == "ping"
        ref.tell("hang")
        await asyncio.sleep(0.05)
        assert not sup.evict_if_idle(ref, "busy")  # in a message: not idle
        gate.set()
        await asyncio.sleep(0.05)
        assert sup.evict_if_idle(ref, "idle now")
        assert (await asyncio.wait_for(ref.wait_stopped(), 2))[0] is StopReason.IDLE_TIMEOUT
        assert q.held("conversations", ALICE.user_id) == 0
    finally:
        await sup.shutdown(timeout=2)
