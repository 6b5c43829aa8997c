"""AuthService on a real database: keys, JWTs, passwords, first start, bootstrap, roles, audit, cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from cozy_actors.audit import AuditLog
from cozy_actors.auth import AuthInvalid, AuthMissing, AuthService, BadCredentials, Forbidden, tokens
from cozy_actors.config import SecurityConfig
from cozy_actors.queue import QueuePolicy, WriteQueue
from cozy_actors.storage.audit import PgAuditStore
from cozy_actors.storage.db import Database
from cozy_actors.storage.users import PgUserStore


class Harness:
    def __init__(self, db: Database, **security: Any) -> None:
        self.db = db
        self.queue = WriteQueue(QueuePolicy(batch_size=50, retry_after_s=0.1))
        self.audit_store = PgAuditStore(db)
        self.audit = AuditLog(self.queue)
        self.audit.attach(self.audit_store.insert_many)
        self.users = PgUserStore(db)
        cfg = SecurityConfig(jwt_secret_key="test-secret-test-secret-test-secret", **security)
        self.auth = AuthService(self.users, cfg, audit=self.audit)

    async def start(self) -> str | None:
        await self.queue.start()
        await self.audit.start()
        return await self.auth.start()

    async def audit_types(self) -> list[str]:
        await self.audit.flush()
        await self.queue.local.stop(timeout=2)
        await self.queue.local.start()
        rows = await self.db.fetch("t", "SELECT type FROM audit_events ORDER BY id")
        return [r["type"] for r in rows]

    async def stop(self) -> None:
        await self.audit.stop()
        await self.queue.stop()


@pytest.fixture
async def h(db: Database) -> AsyncIterator[Harness]:
    harness = Harness(db)
    yield harness
    await harness.stop()


async def test_first_start_makes_one_admin_key(h: Harness) -> None:
    key = await h.start()
    assert key is not None and key.startswith("cozy-") and len(key) == 5 + 43
    principal = await h.auth.authenticate(key)
    assert principal.name == "admin" and principal.is_admin and principal.via == "api_key"
    assert await h.auth.start() is None  # users exist now: no second key
    stored = await h.db.fetchval("t", "SELECT key_hash FROM api_keys")
    assert stored == tokens.hash_key(key) and key.encode() not in stored


async def test_bootstrap_key_is_idempotent(db: Database) -> None:
    boot = "cozy-bootstrap-key-for-tests-0001"
    h = Harness(db, bootstrap_admin_key=boot)
    try:
        assert await h.start() is None
        assert (await h.auth.authenticate(boot)).name == "admin"
        assert await h.auth.bootstrap(boot) is False
        assert await db.fetchval("t", "SELECT count(*) FROM api_keys") == 1
        assert "auth.bootstrap" in await h.audit_types()
    finally:
        await h.stop()


async def test_keys_jwts_and_refusals_are_audited(h: Harness) -> None:
    await h.start()
    user, key = await h.auth.create_user("ann", password="correct horse", rate_limit_rpm=30, rate_limit_burst=3)
    p = await h.auth.authenticate(key, request_id="r1", path="/v1/models")
    assert (p.user_id, p.role, p.rate_limit_rpm, p.rate_limit_burst) == (user.id, "user", 30, 3)
    assert p.rate_key == f"key:{p.key_id}"
    issued = await h.auth.passwords.login("ann", "correct horse")
    jp = await h.auth.authenticate(issued.access_token)
    assert jp.via == "jwt" and jp.user_id == user.id and jp.rate_key == f"user:{user.id}"
    with pytest.raises(BadCredentials):
        await h.auth.passwords.login("ann", "wrong")
    with pytest.raises(BadCredentials):
        await h.auth.passwords.login("nobody", "whatever")
    with pytest.raises(AuthMissing):
        await h.auth.authenticate(None)
    with pytest.raises(AuthInvalid):
        await h.auth.authenticate("cozy-not-a-real-key")
    forged = jwt.encode(
        {"sub": user.id, "iss": "cozyengine", "iat": 1, "exp": int(time.time()) + 60},
        "another-secret-of-32-bytes-or-more!!",
        algorithm="HS256",
    )
    with pytest.raises(AuthInvalid):
        await h.auth.authenticate(forged)
    expired, _ = tokens.issue_jwt(user.id, "ann", "user", h.auth.secret, -10)
    with pytest.raises(AuthInvalid, match="expired"):
        await h.auth.authenticate(expired)
    with pytest.raises(Forbidden):
        h.auth.require_admin(p, "config.read")
    types = await h.audit_types()
    assert types.count("auth.failed") == 6 and "auth.forbidden" in types and "auth.token" in types
    reasons = await h.db.fetch("t", "SELECT detail->>'reason' AS r FROM audit_events WHERE type = 'auth.failed'")
    assert {r["r"] for r in reasons} == {"bad_credentials", "missing", "unknown_key", "jwt_invalid", "jwt_expired"}


async def test_verified_tokens_are_cached_and_cheap(h: Harness) -> None:
    await h.start()
    _, key = await h.auth.create_user("bob")
    calls = 0
    real = h.users.find_key

    async def counting(digest: bytes) -> Any:
        nonlocal calls
        calls += 1
        return await real(digest)

    h.users.find_key = counting  # type: ignore[method-assign]
    await h.auth.authenticate(key)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        await h.auth.authenticate(key)
    per_call_us = (time.perf_counter() - start) / n * 1e6
    assert calls == 1
    print(f"cached authenticate: {per_call_us:.1f} µs")
    assert per_call_us < 100, f"cached authenticate costs {per_call_us:.1f} µs"


async def test_auth_off_acts_as_local_admin(db: Database) -> None:
    h = Harness(db, auth_enabled=False)
    try:
        assert await h.start() is None
        p = await h.auth.authenticate(None)
        assert p.name == "local" and p.is_admin and p.via == "local"
    finally:
        await h.stop()


async def test_concurrent_first_lookups_of_one_good_key_are_one_charge(db: Database) -> None:
    """24 concurrent first requests with one valid key (a client's pool warming up, or a cache entry
    that just expired) each took a failed-authentication token before the lookup, so all past the
    burst got 429 (tests/e2e/test_chat.py::test_concurrent_stateless_requests failed so). Now the
    concurrent lookups of one token are one lookup and one charge; bogus tokens still count each."""
    from cozy_actors.auth.principal import RateLimited
    from cozy_actors.cache.ratelimit import RateLimiter
    from cozy_actors.config.limits import AuthFailureLimitConfig

    h = Harness(db, auth_failure_limit=AuthFailureLimitConfig(per_client_burst=3, per_client_per_minute=1))
    try:
        key = await h.start()
        assert key is not None
        h.auth.failures.limiter = RateLimiter(requests_per_minute=1, burst=3)
        got = await asyncio.gather(*[h.auth.authenticate(key, client="10.0.0.9") for _ in range(24)])
        assert {p.name for p in got} == {"admin"}
        bogus = await asyncio.gather(
            *[h.auth.authenticate(f"cozy-bogus-{i:040d}", client="10.0.0.9") for i in range(5)],
            return_exceptions=True,
        )
        assert sum(isinstance(b, RateLimited) for b in bogus) >= 2  # the burst of 3 still limits failures
    finally:
        await h.stop()
