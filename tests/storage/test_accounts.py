"""Account management below the HTTP edge: the last-admin rule under concurrent changes, and how a
revoke or disable beats the token caches (this node at once; another node's L1 until it expires;
the shared Redis entry dropped as soon as this node sees it is stale)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cozy_actors.auth import AuthInvalid, AuthService
from cozy_actors.auth.accounts import Accounts
from cozy_actors.cache.cache import Cache
from cozy_actors.cache.link import RedisLink
from cozy_actors.config import SecurityConfig
from cozy_actors.storage.db import Database
from cozy_actors.storage.users import PgUserStore
from cozy_core.errors import Invalid, NotFound
from tests.storage.test_auth_service import Harness


@pytest.fixture
async def h(db: Database) -> AsyncIterator[Harness]:
    harness = Harness(db)
    await harness.start()
    yield harness
    await harness.stop()


def node(h: Harness, link: RedisLink) -> AuthService:
    """Another server process on the same database and Redis (its own in-process caches)."""
    cfg = SecurityConfig(jwt_secret_key="test-secret-test-secret-test-secret", auth_cache_ttl_s=30)
    auth = AuthService(PgUserStore(h.db), cfg, audit=h.audit, cache=Cache("auth", link, l1_ttl_s=30))
    auth.enabled = True
    return auth


async def test_the_last_enabled_admin_survives_concurrent_changes(h: Harness) -> None:
    accounts = Accounts(h.auth)
    for i in range(5):
        a, _ = await h.auth.create_user(f"a{i}", "admin")
        b, _ = await h.auth.create_user(f"b{i}", "admin")
        for u in (await h.users.list(limit=200)).items:  # only a and b are enabled admins now
            if u.role == "admin" and u.id not in (a.id, b.id):
                await h.users.update(u.id, role="user")
        results = await asyncio.gather(
            accounts.update_user(a.id, role="user"), accounts.update_user(b.id, disabled=True), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, Exception)]
        assert len(refused) == 1 and isinstance(refused[0], Invalid), results
        assert "last enabled admin" in refused[0].message
        enabled_admins = [u for u in (await h.users.list(limit=200)).items if u.role == "admin" and not u.disabled]
        assert len(enabled_admins) == 1


async def test_revoke_and_disable_beat_the_caches(h: Harness, redis_link: RedisLink) -> None:
    here, there = node(h, redis_link), node(h, redis_link)
    accounts = Accounts(here)
    ann, key = await here.create_user("ann", password="correct horse")
    jwt = (await here.passwords.login("ann", "correct horse")).access_token
    for auth in (here, there):
        assert (await auth.authenticate(key)).name == "ann"
        assert (await auth.authenticate(jwt)).name == "ann"

    await accounts.update_user(ann.id, disabled=True)
    for token in (key, jwt):
        with pytest.raises(AuthInvalid):
            await here.authenticate(token)
    assert (await there.authenticate(key)).name == "ann"  # another node: its L1, until auth_cache_ttl_s
    late = node(h, redis_link)  # a node that had not cached it: the stale Redis entry is gone
    with pytest.raises(AuthInvalid):
        await late.authenticate(key)

    await accounts.update_user(ann.id, disabled=False)
    assert (await here.authenticate(key)).name == "ann" and (await here.authenticate(jwt)).name == "ann"
    (record,) = (await h.users.list_keys(ann.id, limit=10)).items
    await accounts.revoke_key(record.id, user_id=ann.id)
    with pytest.raises(AuthInvalid):
        await here.authenticate(key)
    assert (await here.authenticate(jwt)).name == "ann"  # the user's other tokens still work
    with pytest.raises(NotFound):
        await accounts.revoke_key(record.id)  # already revoked
    page = await h.users.list_keys(ann.id, limit=10)
    assert page.items[0].revoked_at is not None and page.next_cursor is None
