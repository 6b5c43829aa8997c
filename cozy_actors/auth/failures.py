"""Failed authentications limited per client address, before any lookup (`security.auth_failure_limit`).

Why: a flood of bogus tokens used to cost a database round trip and an audit event each. Now each
attempt that needs a lookup first takes a token from its address's bucket; a good token gives it
back, so concurrent attempts cannot overshoot the limit and only failures count. Past the limit
the answer is 429 without any lookup, and one `auth.failed` (reason `rate_limited`) per address per
THROTTLE_NOTE_S records it; the repeats are counted in `cozy_audit_sampled_out_total` instead.
"""

from __future__ import annotations

from typing import Any

from cozy_actors.audit import AuditLog
from cozy_actors.cache.cache import TTLCache
from cozy_actors.config.limits import AuthFailureLimitConfig
from cozy_actors.observability.metrics import AUDIT_SAMPLED_OUT, AUTH_FAILURES

from .principal import RateLimited

THROTTLE_NOTE_S = 60.0  # past the limit: one audit event per client address this often


class FailureLimit:
    def __init__(self, config: AuthFailureLimitConfig, audit: AuditLog) -> None:
        self.config = config
        self.audit = audit
        self.limiter: Any = None  # a RateLimiter (Redis-shared when configured), set by the infrastructure
        self.noted = TTLCache(50_000)  # client address -> its throttling is on record

    def _active(self, client: str | None) -> bool:
        return client is not None and self.limiter is not None and self.config.enabled

    async def charge(self, client: str | None, request_id: str | None, path: str) -> bool:
        """Take one attempt from `client`'s bucket (False: not limited); past the limit raise 429."""
        if not self._active(client):
            return False
        cfg = self.config
        decision = await self.limiter.check(f"authfail:{client}", cfg.per_client_per_minute, cfg.per_client_burst)
        if decision.allowed:
            return True
        AUTH_FAILURES.labels("rate_limited").inc()
        if self.noted.get(client or "") is None:
            self.noted.set(client or "", True, THROTTLE_NOTE_S)
            self.audit.record(
                "auth.failed",
                outcome="denied",
                request_id=request_id,
                resource=path or None,
                detail={"reason": "rate_limited", "client": client, "sampled_for_s": THROTTLE_NOTE_S},
            )
        else:
            AUDIT_SAMPLED_OUT.labels("auth.failed", "rate_limited").inc()
        raise RateLimited(decision.retry_after_s, decision.retry_after_header, what="failed authentications")

    async def refund(self, client: str | None) -> None:
        """The attempt `charge` counted was not a failure: give its token back."""
        if self._active(client):
            cfg = self.config
            await self.limiter.refund(f"authfail:{client}", cfg.per_client_per_minute, cfg.per_client_burst)
