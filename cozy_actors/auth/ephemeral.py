"""Ephemeral keys (`ek_...`, OpenAI's client secrets): what a browser holds instead of an API key.

Why: OpenAI's WebRTC flow has the page start its call with a short-lived key that a backend made
with its real key (`POST /v1/realtime/client_secrets`), so the API key never reaches the page. A
key here starts ONE Realtime session (a WebRTC call or a WebSocket) as the user who made it, with
the session config given at creation, until it expires. Only its SHA-256 is stored, in PostgreSQL
(table `ephemeral_keys`, migration 0007) so any worker can redeem it; redeeming marks it used in
the same statement, so two workers cannot both take it. Without a database (tests, tools) the
keys live in this process.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .principal import AuthInvalid, Principal

log = logging.getLogger("cozy.auth")
PREFIX = "ek_"
DEFAULT_TTL_S = 600  # OpenAI's default `expires_after.seconds`
MIN_TTL_S, MAX_TTL_S = 10, 7200
KEEP_EXPIRED_S = 3600  # rows are removed this long after they expire


def is_ephemeral(token: str | None) -> bool:
    return token is not None and token.startswith(PREFIX)


@dataclass(frozen=True, slots=True)
class Redeemed:
    principal: Principal
    session: dict[str, Any]  # the GA session config the session starts with


class EphemeralKeys:
    def __init__(self, db: Any = None, users: Any = None) -> None:
        self.db = db  # a Database; None: in this process only
        self.users = users  # a PgUserStore: keys of a disabled user or a revoked API key stop working
        self._local: dict[str, tuple[dict[str, Any], dict[str, Any], float, bool]] = {}

    async def create(self, principal: Principal, session: dict[str, Any], ttl_s: int) -> tuple[str, int]:
        """A new key for `principal` with this session config; returns (value, expires_at unix s)."""
        value = PREFIX + secrets.token_urlsafe(32)
        digest = _digest(value)
        expires_at = int(time.time()) + ttl_s
        if self.db is None:
            now = time.time()
            for d in [d for d, row in self._local.items() if row[2] < now - KEEP_EXPIRED_S]:
                del self._local[d]
            self._local[digest] = (principal.to_dict(), session, float(expires_at), False)
            return value, expires_at
        await self.db.execute(
            "ephemeral_keys.create",
            """INSERT INTO ephemeral_keys (digest, principal, session, expires_at)
               VALUES ($1, $2, $3, to_timestamp($4))""",
            digest,
            principal.to_dict(),
            session,
            expires_at,
        )
        await self.db.execute(
            "ephemeral_keys.prune",
            "DELETE FROM ephemeral_keys WHERE expires_at < now() - make_interval(secs => $1)",
            KEEP_EXPIRED_S,
        )
        return value, expires_at

    async def redeem(self, value: str) -> Redeemed:
        """Take the key (once): who it acts as and its session. Used, expired or unknown: 401."""
        digest = _digest(value)
        if self.db is None:
            row = self._local.get(digest)
            if row is None or row[3] or row[2] <= time.time():
                raise _refused()
            self._local[digest] = (row[0], row[1], row[2], True)
            principal_data, session = row[0], row[1]
        else:
            found = await self.db.fetchrow(
                "ephemeral_keys.redeem",
                """UPDATE ephemeral_keys SET used_at = now()
                   WHERE digest = $1 AND used_at IS NULL AND expires_at > now()
                   RETURNING principal, session""",
                digest,
            )
            if found is None:
                raise _refused()
            principal_data, session = found["principal"], found["session"]
        principal = Principal.from_dict(principal_data)
        if self.users is not None and principal.via != "local":
            # The key acts as its maker: a user disabled or an API key revoked since ends it too.
            user = await self.users.get(principal.user_id)
            key = await self.users.get_key(principal.key_id) if principal.key_id else None
            if user is None or user.disabled or (principal.key_id and (key is None or key.revoked_at is not None)):
                raise _refused()
        return Redeemed(principal, session)

    async def give_back(self, value: str | None) -> None:
        """The session the key was redeemed for could not start (a bad offer, a full server): the key
        works again until it expires. Best effort: a failure here only leaves it spent."""
        if value is None:
            return
        digest = _digest(value)
        if self.db is None:
            row = self._local.get(digest)
            if row is not None:
                self._local[digest] = (row[0], row[1], row[2], False)
            return
        try:
            await self.db.execute(
                "ephemeral_keys.give_back", "UPDATE ephemeral_keys SET used_at = NULL WHERE digest = $1", digest
            )
        except Exception as exc:  # logged: the caller's own error is what it reports
            log.warning("ephemeral key not given back: %r", exc)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _refused() -> AuthInvalid:
    return AuthInvalid("the ephemeral key is unknown, expired or already used (each starts one session)")
