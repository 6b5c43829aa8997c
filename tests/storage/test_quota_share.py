"""Per-user quotas counted across worker processes (two SharedQuotas on one database = two
workers): a user's live calls on one worker count on the other, so do its conversations in a turn
(not its idle ones), a graceful stop frees them at once, and a worker killed outright (no close,
no more syncs) stops counting after the TTL."""

from __future__ import annotations

import asyncio

import pytest

from cozy_actors.config.limits import QuotaConfig
from cozy_actors.quota_share import SharedQuotas
from cozy_actors.quotas import QuotaExceeded
from cozy_actors.storage.db import Database

CONFIG = QuotaConfig(realtime_sessions_per_user=2, conversations_per_user=1)


def worker(db: Database, name: str, ttl_s: float = 1.0) -> SharedQuotas:
    return SharedQuotas(CONFIG, db, worker_id=name, interval_s=3600, ttl_s=ttl_s)  # syncs by hand here


async def test_a_users_calls_count_on_every_worker(db: Database) -> None:
    # Expiry is the next test's subject: here rows must not lapse between two syncs on a loaded machine.
    a, b = worker(db, "w0", ttl_s=30.0), worker(db, "w1", ttl_s=30.0)
    await a.start()
    await b.start()
    try:
        first = a.acquire_for("realtime_sessions", "u1")
        second = b.acquire_for("realtime_sessions", "u1")
        await a.sync()
        await b.sync()
        await a.sync()
        with pytest.raises(QuotaExceeded):
            a.acquire_for("realtime_sessions", "u1")  # one here + one on w1 = the share
        with pytest.raises(QuotaExceeded):
            b.acquire_for("realtime_sessions", "u1")
        a.acquire_for("realtime_sessions", "u2").release()  # other users are not affected
        second.release()
        await b.sync()
        await a.sync()
        a.acquire_for("realtime_sessions", "u1").release()  # w1's slot is free: w0 may take it
        first.release()
    finally:
        await a.close()
        await b.close()
    assert await db.fetchval("t", "SELECT count(*) FROM quota_leases") == 0  # graceful stops withdraw


async def test_a_killed_workers_slots_expire(db: Database) -> None:
    a, dead = worker(db, "w0"), worker(db, "w1")
    await a.start()
    await dead.start()
    dead.acquire_for("realtime_sessions", "u1")
    dead.acquire_for("realtime_sessions", "u1")
    await dead.sync()
    dead._task.cancel()  # type: ignore[union-attr]  # kill -9: no close, no more syncs
    try:
        await a.sync()
        with pytest.raises(QuotaExceeded):
            a.acquire_for("realtime_sessions", "u1")
        await asyncio.sleep(1.2)  # the dead worker's rows outlive the TTL
        await a.sync()
        a.acquire_for("realtime_sessions", "u1")
        assert await db.fetchval("t", "SELECT count(*) FROM quota_leases WHERE worker_id = 'w1'") == 0
        restarted = worker(db, "w1")  # the same slot comes back with the same id: starts from nothing
        await restarted.start()
        await restarted.close()
    finally:
        await a.close()


async def test_conversations_in_a_turn_count_on_every_worker_idle_ones_do_not(db: Database) -> None:
    a, b = worker(db, "w0", ttl_s=30.0), worker(db, "w1", ttl_s=30.0)
    in_turn = {"u1": 1}
    a.publish("conversations", lambda: in_turn)  # what ChatService publishes: its busy actors
    await a.start()
    await b.start()
    try:
        a.acquire_for("conversations", "u1")  # u1's one conversation lives on w0, in a turn
        await a.sync()
        await b.sync()
        with pytest.raises(QuotaExceeded):
            b.acquire_for("conversations", "u1")  # the share is 1, across workers
        b.acquire_for("conversations", "u2").release()
        in_turn.clear()  # the turn ended: w0 keeps the actor as an idle cache
        await a.sync()
        await b.sync()
        b.acquire_for("conversations", "u1").release()  # an idle conversation elsewhere does not count
    finally:
        await a.close()
        await b.close()
