"""The audit trail's producer side: `record()` is synchronous and never fails or slows its caller.

Two lanes, so a flood of refused tokens can never push an admin's action out:

* **kept** (every type except `auth.failed`: admin actions, user and key changes, tool calls,
  `auth.forbidden`, `auth.token`, ...): unbounded here, on an unbounded topic of the write queue
  (`audit`) and, with Redis, a stream that is never trimmed. These events are never dropped; they
  come from authenticated callers, who are rate limited per key.
* **sampled** (`auth.failed`): bounded (`sampled_buffer`), its own topic (`audit_sampled`). Past
  the bound an event is dropped and counted in `cozy_audit_dropped_total`; AuthService already
  samples repeated failures of one client address (`cozy_audit_sampled_out_total`).

One pump task hands events to the background write queue (Redis Streams or in-process), kept lane
first, whose consumer inserts them into `audit_events` in batches. Events recorded before `start`
wait in their lane. Types in use: auth.failed, auth.forbidden, auth.token, auth.bootstrap,
user.create, user.update, user.key.create, user.key.revoke, session.delete, admin.*, tool.call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

from cozy_actors.observability.metrics import AUDIT_DROPPED
from cozy_actors.queue import Handler, WriteQueue
from cozy_core.aio import cancel_and_wait

log = logging.getLogger("cozy.audit")
TOPIC = "audit"  # the kept lane
SAMPLED_TOPIC = "audit_sampled"  # auth.failed
SAMPLED_TYPES = frozenset({"auth.failed"})


class AuditLog:
    def __init__(self, queue: WriteQueue | None = None, *, sampled_buffer: int = 10_000) -> None:
        self.queue = queue
        self._kept: deque[dict[str, Any]] = deque()
        self._sampled: deque[dict[str, Any]] = deque()
        self._sampled_max = sampled_buffer
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._pump: asyncio.Task[None] | None = None

    def record(
        self,
        type: str,
        *,
        user_id: str | None = None,
        user_name: str | None = None,
        outcome: str = "ok",
        request_id: str | None = None,
        resource: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        event = {
            "at": datetime.now(UTC).isoformat(),
            "type": type,
            "user_id": user_id,
            "user_name": user_name,
            "outcome": outcome,
            "request_id": request_id,
            "resource": resource,
            "detail": detail or {},
        }
        if type in SAMPLED_TYPES:
            if len(self._sampled) >= self._sampled_max:
                AUDIT_DROPPED.inc()
                return
            self._sampled.append(event)
        else:
            self._kept.append(event)
        if self._wake is not None and self._idle is not None:
            self._idle.clear()
            self._wake.set()

    def attach(self, insert: Handler) -> None:
        """Register both lanes' topics on the write queue, each written by `insert` (a batch insert)."""
        assert self.queue is not None
        self.queue.register(TOPIC, insert, bounded=False)  # never dropped
        self.queue.register(SAMPLED_TOPIC, insert)

    def pending(self) -> int:
        """Events recorded but not yet handed to the write queue."""
        return len(self._kept) + len(self._sampled)

    async def start(self) -> None:
        if self._pump is None:
            self._wake, self._idle = asyncio.Event(), asyncio.Event()
            self._wake.set()  # events recorded before start go first
            self._pump = asyncio.create_task(self._run(), name="audit-pump")

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            lane, topic = (self._kept, TOPIC) if self._kept else (self._sampled, SAMPLED_TOPIC)
            if not lane:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if self.queue is not None:
                    await self.queue.publish(topic, lane[0])
            except Exception:  # the queue already falls back in-process; this is a last resort
                log.exception("audit event lost: %s", lane[0].get("type"))
            lane.popleft()  # only once handed over: a stop mid-publish keeps it for the report

    async def flush(self, timeout: float = 5.0) -> None:
        """Hand every recorded event to the queue (shutdown, tests)."""
        if self._idle is not None and self.pending():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        await self.flush(timeout)
        pump, self._pump = self._pump, None
        await cancel_and_wait(pump)
        if self.pending():
            log.error("audit stopped with %d events not handed to the write queue", self.pending())
