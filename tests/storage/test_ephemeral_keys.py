"""Ephemeral keys (`ek_...`) on real PostgreSQL: one redemption each, also under a race between
two stores (two workers), expiry, and the maker's key revoked or user disabled; and the in-process
store used without a database."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from cozy_actors.auth import AuthInvalid, Principal
from cozy_actors.auth.ephemeral import EphemeralKeys
from cozy_actors.storage.db import Database
from cozy_actors.storage.users import PgUserStore

SESSION = {"type": "realtime", "instructions": "Be brief."}


async def maker(users: PgUserStore) -> Principal:
    user = await users.create(f"ek-{time.monotonic_ns()}")
    key_id = await users.add_key(user.id, os.urandom(32), "cozy-abc")
    return Principal(user.id, user.name, user.role, "api_key", key_id)


async def test_redeemed_once_even_by_racing_workers(db: Database) -> None:
    users = PgUserStore(db)
    principal = await maker(users)
    first, second = EphemeralKeys(db, users), EphemeralKeys(db, users)
    value, expires_at = await first.create(principal, SESSION, 60)
    assert value.startswith("ek_") and abs(expires_at - time.time() - 60) < 5
    stored = await db.fetchval("t", "SELECT count(*) FROM ephemeral_keys WHERE digest LIKE 'ek_%'")
    assert stored == 0  # only its hash is stored
    results = await asyncio.gather(first.redeem(value), second.redeem(value), return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1 and sum(isinstance(r, AuthInvalid) for r in results) == 1, results
    assert won[0].principal == principal and won[0].session == SESSION
    with pytest.raises(AuthInvalid):
        await first.redeem("ek_unknown")
    await second.give_back(value)  # its session could not start: usable again, once
    assert (await second.redeem(value)).session == SESSION
    with pytest.raises(AuthInvalid):
        await first.redeem(value)


async def test_expired_revoked_or_disabled_is_refused(db: Database) -> None:
    users = PgUserStore(db)
    keys = EphemeralKeys(db, users)
    principal = await maker(users)
    value, _ = await keys.create(principal, SESSION, 1)
    await asyncio.sleep(1.2)
    with pytest.raises(AuthInvalid):
        await keys.redeem(value)
    value, _ = await keys.create(principal, SESSION, 60)
    assert principal.key_id is not None
    await users.revoke_key(principal.key_id)
    with pytest.raises(AuthInvalid):  # the API key that made it was revoked since
        await keys.redeem(value)
    other = await maker(users)
    value, _ = await keys.create(other, SESSION, 60)
    await users.update(other.user_id, disabled=True)
    with pytest.raises(AuthInvalid):
        await keys.redeem(value)


async def test_in_process_store() -> None:
    keys = EphemeralKeys()
    principal = Principal("u1", "u1", "user", "api_key", "k1")
    value, _ = await keys.create(principal, SESSION, 60)
    assert (await keys.redeem(value)).principal == principal
    with pytest.raises(AuthInvalid):
        await keys.redeem(value)
    await keys.give_back(value)
    assert (await keys.redeem(value)).principal == principal
    value, _ = await keys.create(principal, SESSION, 0)
    with pytest.raises(AuthInvalid):
        await keys.redeem(value)
