"""Authentication and the rules around it: who a token is, who may do what, how the first key is made.

The hot path is `authenticate`: a verified token is remembered for `auth_cache_ttl_s` (in-process,
and in Redis for the other nodes) keyed by its SHA-256, so a request normally costs one hash and
one dict lookup. Every refusal is counted and written to the audit trail.

Failed authentications are limited per client address before any lookup (failures.py). An
unknown API key is remembered for UNKNOWN_TOKEN_S, so repeating it costs no database read either.
A password becomes a JWT in login.py (`passwords`), signed with this service's secret.

An admin's change (key revoked, user disabled or re-roled) is felt at once on the node that made
it: `forget` marks the user or key, and a cached verification older than the mark is checked
against the database again. Other nodes trust their own caches for up to `auth_cache_ttl_s`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt

from cozy_actors.audit import AuditLog
from cozy_actors.cache.cache import Cache, TTLCache
from cozy_actors.config import SecurityConfig
from cozy_actors.observability.metrics import AUTH_FAILURES
from cozy_actors.storage.db import Conflict
from cozy_actors.storage.records import UserRecord
from cozy_actors.storage.users import PgUserStore
from cozy_core.errors import Invalid

from . import tokens
from .failures import FailureLimit
from .login import PasswordLogin
from .principal import ROLES, AuthInvalid, AuthMissing, Forbidden, Principal

log = logging.getLogger("cozy.auth")
LOCAL_USER = "local"
ADMIN_USER = "admin"
UNKNOWN_TOKEN_S = 5.0  # an unknown API key (or a JWT of a gone user) is refused from memory this long


class AuthService:
    def __init__(
        self, users: PgUserStore, security: SecurityConfig, *, audit: AuditLog, cache: Cache | None = None
    ) -> None:
        self.users = users
        self.security = security
        self.audit = audit
        self.enabled = security.auth_enabled
        self.ttl_s = security.auth_cache_ttl_s
        self.l1 = TTLCache(50_000)  # digest -> (Principal, monotonic time its verification started)
        self._inflight: dict[str, asyncio.Future[Principal]] = {}  # digest -> its lookup running now
        self.changed = TTLCache(100_000)  # "user:<id>" / "key:<id>" -> monotonic time of an admin's change
        self.l2 = cache
        secret = security.jwt_secret_key.get_secret_value() if security.jwt_secret_key else None
        self.ephemeral_secret = secret is None
        self.secret = secret or secrets.token_urlsafe(48)
        self.local: Principal | None = None
        self.unknown = TTLCache(50_000)  # digests of tokens refused lately: refused again without a read
        self.passwords = PasswordLogin(users, security, audit, self.secret)  # its .limiter: set by the infra
        self.failures = FailureLimit(security.auth_failure_limit, audit)  # its .limiter: set by the infra
        self.broadcast: Any = None  # a Broadcaster: revocations reach the other nodes at once
        self.on_end_sessions: Callable[[str | None, str | None], Any] | None = None  # (user_id, key_id)

    async def start(self) -> str | None:
        """Prepare the users the configuration implies; returns a newly made first admin key, if any."""
        if not self.enabled:
            user = await self._ensure_user(LOCAL_USER, "admin")
            self.local = Principal(user.id, user.name, user.role, "local")
            log.warning("authentication is OFF (security.auth_enabled=false): every request acts as admin 'local'")
            return None
        if self.ephemeral_secret:
            log.warning("JWT_SECRET_KEY is not set: JWTs are signed with a random per-process secret")
        bootstrap = self.security.bootstrap_admin_key
        if bootstrap is not None:
            await self.bootstrap(bootstrap.get_secret_value())
            return None
        if await self.users.count() == 0:
            _, key = await self.create_user(ADMIN_USER, "admin", key_name="first-start")
            log.warning(
                "first start: created user 'admin' with API key %s -- it is shown only this once; "
                "use it as `Authorization: Bearer <key>` and create more with `cozy users create`",
                key,
            )
            return key
        return None

    async def bootstrap(self, key: str) -> bool:
        """COZY_BOOTSTRAP_ADMIN_KEY: give user `admin` this key unless it is already known."""
        digest = tokens.hash_key(key)
        if await self.users.key_exists(digest):
            return False
        user = await self._ensure_user(ADMIN_USER, "admin")
        try:
            await self.users.add_key(user.id, digest, tokens.key_prefix(key), name="bootstrap")
        except Conflict:
            return False  # another node added it at the same moment
        self.audit.record(
            "auth.bootstrap", user_id=user.id, user_name=user.name, detail={"key_prefix": tokens.key_prefix(key)}
        )
        log.info("bootstrap admin key registered for user 'admin'")
        return True

    async def _ensure_user(self, name: str, role: str) -> UserRecord:
        found = await self.users.by_name(name)
        if found is not None:
            return found[0]
        try:
            return await self.users.create(name, role)
        except Conflict:
            again = await self.users.by_name(name)
            assert again is not None
            return again[0]

    # ------------------------------------------------------------------ per request
    async def authenticate(
        self, token: str | None, *, request_id: str | None = None, path: str = "", client: str | None = None
    ) -> Principal:
        """Who `token` is; `client` (the caller's address) is charged for each failure."""
        if not self.enabled:
            assert self.local is not None, "AuthService.start() was not called"
            return self.local
        digest = hashlib.sha256(token.encode()).hexdigest() if token else None
        if digest is not None:
            cached = self.l1.get(digest)
            if cached is not None:
                if not self._changed_since(cached[0], cached[1]):
                    return cached[0]
                self.l1.delete(digest)
        pending = self._inflight.get(digest) if digest is not None else None
        if pending is not None:
            # The same token's lookup is already running: wait for it (one lookup, one charge). A
            # burst of a client's first requests with one good key is not a burst of failures.
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # we were cancelled ourselves; else the leader was: look it up ourselves
        flight: asyncio.Future[Principal] | None = None
        if digest is not None:
            flight = self._inflight[digest] = asyncio.get_running_loop().create_future()
            flight.add_done_callback(_retrieve)
        try:
            principal = await self._charged_lookup(token, digest, request_id, path, client)
        except BaseException as exc:
            if flight is not None:
                flight.cancel() if isinstance(exc, asyncio.CancelledError) else flight.set_exception(exc)
            raise
        else:
            if flight is not None:
                flight.set_result(principal)
            return principal
        finally:
            if flight is not None and self._inflight.get(digest or "") is flight:
                del self._inflight[digest or ""]

    async def _charged_lookup(
        self, token: str | None, digest: str | None, request_id: str | None, path: str, client: str | None
    ) -> Principal:
        """One lookup, charged to `client`'s failure bucket until it turns out not to be a failure."""
        charged = await self.failures.charge(client, request_id, path)  # 429 past the limit: no lookup
        try:
            principal = await self._lookup(token, digest, request_id, path, client)
        except (AuthMissing, AuthInvalid):
            raise  # a failure: the attempt stays counted
        except Exception:
            if charged:
                await self.failures.refund(client)
            raise
        if charged:
            await self.failures.refund(client)
        return principal

    async def _lookup(
        self, token: str | None, digest: str | None, request_id: str | None, path: str, client: str | None
    ) -> Principal:
        if not token or digest is None:
            self._refuse("missing", request_id, path, client=client)
            raise AuthMissing()
        refused = self.unknown.get(digest)
        if refused is not None:  # refused a moment ago: again, without a lookup
            self._refuse(refused, request_id, path, client=client, key_prefix=tokens.key_prefix(token))
            raise AuthInvalid()
        started = time.monotonic()  # before the lookups: a change made while they run marks this stale
        principal, ttl = await self._from_l2(digest)
        if principal is not None and self._changed_since(principal, -math.inf):
            principal = None  # possibly cached (by any node) before the change: ask the database
            if self.l2 is not None:
                await self.l2.delete(digest)
        if principal is None:
            try:
                principal, ttl = await self._verify(token, request_id, path, client)
            except AuthInvalid:
                reason = "jwt_invalid" if tokens.looks_like_jwt(token) else "unknown_key"
                self.unknown.set(digest, reason, UNKNOWN_TOKEN_S)
                raise
            if self.l2 is not None:
                await self.l2.set(digest, principal.to_dict(), ttl)
        self.l1.set(digest, (principal, started), ttl)
        return principal

    def _changed_since(self, principal: Principal, at: float) -> bool:
        """Whether `forget` marked this principal's user or key at or after `at` (monotonic)."""
        if not self.changed:  # the usual case: one length check on the hot path
            return False
        for mark_key in (f"user:{principal.user_id}", f"key:{principal.key_id}" if principal.key_id else None):
            mark = self.changed.get(mark_key) if mark_key else None
            if mark is not None and mark >= at:
                return True
        return False

    def forget(self, *, user_id: str | None = None, key_id: str | None = None) -> None:
        """Stop trusting this node's cached verifications of the user's tokens (or of one key) now.

        A mark outlives every cache entry that can predate it (entries live `auth_cache_ttl_s`);
        other nodes' in-process caches still answer from theirs for up to that long."""
        now, ttl = time.monotonic(), 2 * self.ttl_s + 1
        self.unknown.clear()  # e.g. a disabled user enabled again: their keys are no longer unknown
        if user_id:
            self.changed.set(f"user:{user_id}", now, ttl)
        if key_id:
            self.changed.set(f"key:{key_id}", now, ttl)

    async def forget_everywhere(
        self, *, user_id: str | None = None, key_id: str | None = None, end_sessions: bool = False
    ) -> None:
        """`forget` here at once, and on every other node through the cluster broadcast;
        `end_sessions`: live voice sessions opened with those credentials end too (revoked, disabled)."""
        self.forget(user_id=user_id, key_id=key_id)
        if end_sessions and self.on_end_sessions is not None:
            self.on_end_sessions(user_id, key_id)
        if self.broadcast is not None:
            data = {"user_id": user_id, "key_id": key_id, "end_sessions": end_sessions}
            await self.broadcast.publish("auth.forget", data)

    def forget_all(self) -> None:
        """Drop every cached verification (a node that may have missed `forget` notices)."""
        self.l1.clear()
        self.unknown.clear()

    async def _from_l2(self, digest: str) -> tuple[Principal | None, float]:
        if self.l2 is None:
            return None, 0.0
        data = await self.l2.get(digest)
        return (Principal.from_dict(data), min(self.ttl_s, self.l2.l1_ttl_s)) if data else (None, 0.0)

    async def _verify(
        self, token: str, request_id: str | None, path: str, client: str | None
    ) -> tuple[Principal, float]:
        if tokens.looks_like_jwt(token):
            try:
                claims = tokens.decode_jwt(token, self.secret)
            except jwt.ExpiredSignatureError:
                self._refuse("jwt_expired", request_id, path, client=client)
                raise AuthInvalid("the JWT has expired; get a new one from POST /v1/auth/token") from None
            except jwt.PyJWTError:
                self._refuse("jwt_invalid", request_id, path, client=client)
                raise AuthInvalid() from None
            user = await self.users.get(str(claims["sub"]))
            if user is None or user.disabled:
                self._refuse("jwt_user_gone", request_id, path, client=client, user_id=str(claims["sub"]))
                raise AuthInvalid()
            ttl = min(self.ttl_s, max(0.0, float(claims["exp"]) - time.time()))
            return Principal(user.id, user.name, user.role, "jwt"), ttl
        match = await self.users.find_key(tokens.hash_key(token))
        if match is None:
            self._refuse("unknown_key", request_id, path, client=client, key_prefix=tokens.key_prefix(token))
            raise AuthInvalid()
        u = match.user
        principal = Principal(
            u.id, u.name, u.role, "api_key", match.key_id, match.rate_limit_rpm, match.rate_limit_burst
        )
        return principal, self.ttl_s

    def _refuse(self, reason: str, request_id: str | None, path: str, **detail: Any) -> None:
        AUTH_FAILURES.labels(reason).inc()
        if detail.get("client") is None:
            detail.pop("client", None)
        self.audit.record(
            "auth.failed",
            outcome="denied",
            request_id=request_id,
            resource=path or None,
            user_id=detail.pop("user_id", None),
            detail={"reason": reason, **detail},
        )

    def require_admin(self, principal: Principal, action: str, *, request_id: str | None = None) -> None:
        """Raise 403 AUTH_FORBIDDEN (and audit it) unless `principal` is an admin."""
        if principal.is_admin:
            return
        AUTH_FAILURES.labels("forbidden").inc()
        self.audit.record(
            "auth.forbidden",
            user_id=principal.user_id,
            user_name=principal.name,
            outcome="denied",
            request_id=request_id,
            resource=action,
        )
        raise Forbidden(f"{action} is for admins")

    # ------------------------------------------------------------------ users and keys
    async def create_user(
        self,
        name: str,
        role: str = "user",
        *,
        password: str | None = None,
        rate_limit_rpm: float | None = None,
        rate_limit_burst: int | None = None,
        key_name: str | None = None,
        by: Principal | None = None,
        request_id: str | None = None,
    ) -> tuple[UserRecord, str]:
        """A new user and their first API key (returned once; only its hash is stored)."""
        if role not in ROLES:
            raise Invalid(f"role must be one of {list(ROLES)}", param="role")
        pw_hash = await asyncio.to_thread(tokens.hash_password, password) if password else None
        user = await self.users.create(name, role, password_hash=pw_hash)
        _, key = await self.issue_key(
            user.id, name=key_name, rate_limit_rpm=rate_limit_rpm, rate_limit_burst=rate_limit_burst
        )
        self.audit.record(
            "user.create",
            user_id=by.user_id if by else None,
            user_name=by.name if by else None,
            request_id=request_id,
            resource=f"user:{user.name}",
            detail={"role": role, "key_prefix": tokens.key_prefix(key), "password": bool(password)},
        )
        return user, key

    async def issue_key(
        self,
        user_id: str,
        *,
        name: str | None = None,
        rate_limit_rpm: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> tuple[str, str]:
        """(key id, key): a new random API key for the user; only its hash is stored."""
        key = tokens.new_api_key()
        key_id = await self.users.add_key(
            user_id,
            tokens.hash_key(key),
            tokens.key_prefix(key),
            name=name,
            rate_limit_rpm=rate_limit_rpm,
            rate_limit_burst=rate_limit_burst,
        )
        return key_id, key


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A lookup's outcome may have had no waiter: mark its exception seen (no "never retrieved")."""
    if not future.cancelled():
        future.exception()
