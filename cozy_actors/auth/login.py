"""Password sign-in: a user name and password become a JWT (`POST /v1/auth/token`, the `/ui` page).

Why apart from AuthService: it is the one door where a secret is checked by hashing, and argon2
is deliberately slow, so each attempt first passes token buckets per user name and per client
address (`security.login_limit`); every refusal is counted and audited. The JWT is signed with
the service's secret, which `AuthService` verifies on every request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from cozy_actors.audit import AuditLog
from cozy_actors.config import SecurityConfig
from cozy_actors.observability.metrics import AUTH_FAILURES
from cozy_actors.storage.users import PgUserStore

from . import tokens
from .principal import BadCredentials, RateLimited


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_at: int
    expires_in: int


class PasswordLogin:
    def __init__(self, users: PgUserStore, security: SecurityConfig, audit: AuditLog, secret: str) -> None:
        self.users = users
        self.security = security
        self.audit = audit
        self.secret = secret  # the JWT signing key (AuthService's)
        self.limiter: Any = None  # a RateLimiter for password attempts (set by the infrastructure)

    async def login(
        self, username: str, password: str, *, request_id: str | None = None, client: str | None = None
    ) -> IssuedToken:
        """Username + password -> a JWT (argon2 runs in a thread: it is deliberately slow).

        Attempts are throttled per user name and per client address before any hashing happens."""
        await self._throttle_login(username, client, request_id)
        found = await self.users.by_name(username) if username else None
        user, stored = found if found is not None else (None, None)
        ok = await asyncio.to_thread(tokens.verify_password, password, stored)
        if not ok or user is None or user.disabled:
            self._refuse("bad_credentials", username, request_id, user_id=user.id if user else None)
            raise BadCredentials()
        token, expires_at = tokens.issue_jwt(user.id, user.name, user.role, self.secret, self.security.jwt_expiry_s)
        self.audit.record("auth.token", user_id=user.id, user_name=user.name, request_id=request_id)
        return IssuedToken(token, expires_at, self.security.jwt_expiry_s)

    async def _throttle_login(self, username: str, client: str | None, request_id: str | None) -> None:
        lim = self.security.login_limit
        if self.limiter is None or not lim.enabled:
            return
        buckets = [(f"login:user:{username.strip().lower()[:64]}", lim.per_user_per_minute, lim.per_user_burst)]
        if client:
            buckets.append((f"login:client:{client}", lim.per_client_per_minute, lim.per_client_burst))
        for key, rpm, burst in buckets:
            decision = await self.limiter.check(key, rpm, burst)
            if not decision.allowed:
                self._refuse("login_throttled", username, request_id, bucket=key.split(":")[1])
                raise RateLimited(decision.retry_after_s, decision.retry_after_header, what="sign-in attempts")

    def _refuse(
        self, reason: str, username: str, request_id: str | None, *, user_id: str | None = None, **detail: Any
    ) -> None:
        """A refused sign-in: counted by reason and audited (the user name cut to 64 characters)."""
        AUTH_FAILURES.labels(reason).inc()
        self.audit.record(
            "auth.failed",
            outcome="denied",
            request_id=request_id,
            resource="/v1/auth/token",
            user_id=user_id,
            user_name=username[:64] or None,
            detail={"reason": reason, **detail},
        )
