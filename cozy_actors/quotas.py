"""Per-user quotas (fair share): how many live resources of each kind one user may hold.

Why: every pool in the process is global (actors, realtime sessions, the local model's single
lane), so without a per-user share one caller can fill it and everyone else gets 503. Each kind
is counted per user while a `Lease` is held; `Lease.release()` is idempotent, and every holder
releases in a `finally` or an actor's stop callback, so a crash or a cancel cannot leak a slot.

Counts are per process, except where several processes share a database (`cozy serve --workers
N`, several nodes): there a user's live calls, streams and conversations in a turn on every
process count together (quota_share.py: a PostgreSQL mirror, at most one sync interval behind).

Admins are exempt when `exempt_admins` is set (the default): operators, benchmarks
and the soak test run as admin; the process-wide limits (max_sessions, admission control) still
apply to them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Literal

from cozy_actors.auth.principal import Principal
from cozy_actors.config.limits import QuotaConfig
from cozy_actors.observability.metrics import QUOTA_HELD, QUOTA_REFUSED, labelled
from cozy_core.errors import CozyError

Kind = Literal["conversations", "realtime_sessions", "stt_streams", "llm_queue"]
_LABELS = {
    "conversations": "live conversations",
    "realtime_sessions": "realtime/WebRTC sessions",
    "stt_streams": "STT streams",
    "llm_queue": "queued requests on the local model",
}


def _header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class QuotaExceeded(CozyError):
    """429: this user holds its share of one kind; `Retry-After` says when to try again."""

    def __init__(self, kind: Kind, limit: int, retry_after_s: float) -> None:
        header = _header(retry_after_s)
        super().__init__(
            f"quota reached: at most {limit} {_LABELS[kind]} per user; retry after {header} s",
            code="RESOURCE_QUOTA_EXCEEDED",
            status=429,
        )
        self.kind = kind
        self.retry_after_s = float(header)
        self.headers = {"retry-after": header}


class ServerFull(CozyError):
    """503: the process as a whole is full (not this user); `Retry-After` as for a quota."""

    def __init__(self, message: str, retry_after_s: float, code: str = "RESOURCE_EXHAUSTED") -> None:
        super().__init__(message, code=code, status=503)
        header = _header(retry_after_s)
        self.retry_after_s = float(header)
        self.headers = {"retry-after": header}


class Lease:
    """One slot of one kind for one user; release it exactly once (more calls do nothing)."""

    __slots__ = ("_quotas", "kind", "owner")

    def __init__(self, quotas: Quotas | None, kind: Kind, owner: str | None) -> None:
        self._quotas, self.kind, self.owner = quotas, kind, owner

    def release(self) -> None:
        quotas, self._quotas = self._quotas, None
        if quotas is not None and self.owner is not None:
            quotas._release(self.kind, self.owner)

    @property
    def held(self) -> bool:
        return self._quotas is not None


class Quotas:
    def __init__(self, config: QuotaConfig | None = None) -> None:
        self.config = config if config is not None else QuotaConfig()
        self._held: dict[str, Counter[str]] = {k: Counter() for k in _LABELS}
        self._published: dict[str, Callable[[], Mapping[str, int]]] = {}

    def owner(self, principal: Principal | None) -> str | None:
        """The key quotas count this caller under; None when it is not limited (off, exempt admin)."""
        if principal is None or not self.config.enabled:
            return None
        if principal.is_admin and self.config.exempt_admins:
            return None
        return principal.user_id

    def limit(self, kind: Kind) -> int | None:
        return getattr(self.config, f"{kind}_per_user")

    def acquire(self, kind: Kind, principal: Principal | None) -> Lease:
        """A slot of `kind` for this caller, or QuotaExceeded (429 with Retry-After)."""
        return self.acquire_for(kind, self.owner(principal))

    def acquire_for(self, kind: Kind, owner: str | None) -> Lease:
        """As acquire(), for an owner key from `owner()` (None: unlimited)."""
        limit = self.limit(kind)
        if owner is None or limit is None:
            return Lease(None, kind, None)
        counts = self._held[kind]
        if counts[owner] + self.elsewhere(kind, owner) >= limit:
            labelled(QUOTA_REFUSED, kind).inc()
            raise QuotaExceeded(kind, limit, self.config.retry_after_s)
        counts[owner] += 1
        labelled(QUOTA_HELD, kind).inc()
        return Lease(self, kind, owner)

    def held(self, kind: Kind, owner: str) -> int:
        return self._held[kind][owner]

    def publish(self, kind: Kind, counts: Callable[[], Mapping[str, int]]) -> None:
        """What this process shows the other workers of `kind`, where that is not every slot it
        holds: of conversations, only those in a turn (an idle one is this worker's cache, which
        it evicts for a new one; another worker cannot)."""
        self._published[kind] = counts

    def published(self, kind: Kind) -> Mapping[str, int]:
        """Per owner, the slots of `kind` the other workers count against this owner's share."""
        counts = self._published.get(kind)
        return counts() if counts is not None else self._held[kind]

    def elsewhere(self, kind: Kind, owner: str) -> int:
        """Slots this owner holds in other worker processes (none: quotas are per process here)."""
        return 0

    async def start(self) -> None:
        """Nothing to share in one process (SharedQuotas mirrors counts between workers)."""

    async def close(self) -> None:
        """Nothing to withdraw in one process."""

    def _release(self, kind: Kind, owner: str) -> None:
        counts = self._held[kind]
        counts[owner] -= 1
        labelled(QUOTA_HELD, kind).dec()
        if counts[owner] <= 0:
            del counts[owner]

    def snapshot(self) -> dict[str, int]:
        """Slots held now per kind, all users together (diagnostics and leak tests)."""
        return {k: sum(c.values()) for k, c in self._held.items()}


_current = Quotas()


def get_quotas() -> Quotas:
    """The process's quotas (configured at start-up by the services; defaults before that)."""
    return _current


def configure_quotas(config: QuotaConfig, shared: Quotas | None = None) -> Quotas:
    """Install the configured quotas for this process (services start-up); `shared`: counts
    mirrored between worker processes (quota_share.SharedQuotas)."""
    global _current
    _current = shared if shared is not None else Quotas(config)
    return _current
