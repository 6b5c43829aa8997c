"""The audit trail's producer side: `record()` is synchronous and never fails or slows its caller.

Events go to a small in-process buffer; one pump task hands them to the background write queue
(Redis Streams or in-process), whose consumer inserts them into `audit_events` in batches. Types
in use: auth.failed, auth.forbidden, auth.token, auth.bootstrap, user.create, user.update,
user.key.create, user.key.revoke, session.delete, admin.* (every admin action), tool.call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from cozy_actors.observability.metrics import AUDIT_DROPPED
from cozy_actors.queue import WriteQueue

log = logging.getLogger("cozy.audit")
TOPIC = "audit"


class AuditLog:
    def __init__(self, queue: WriteQueue | None = None, *, buffer_size: int = 10_000) -> None:
        self.queue = queue
        self._buffer: asyncio.Queue[dict[str, Any]] | None = None
        self._buffer_size = buffer_size
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
        if self._buffer is None:
            log.info("audit event before start: %s", type)
            return
        try:
            self._buffer.put_nowait(event)
        except asyncio.QueueFull:
            AUDIT_DROPPED.inc()

    async def start(self) -> None:
        if self._pump is None:
            self._buffer = asyncio.Queue(self._buffer_size)
            self._pump = asyncio.create_task(self._run(), name="audit-pump")

    async def _run(self) -> None:
        assert self._buffer is not None
        while True:
            event = await self._buffer.get()
            try:
                if self.queue is not None:
                    await self.queue.publish(TOPIC, event)
            except Exception:  # the queue already falls back in-process; this is a last resort
                log.exception("audit event lost: %s", event.get("type"))
            finally:
                self._buffer.task_done()

    async def flush(self, timeout: float = 5.0) -> None:
        """Hand every buffered event to the queue (shutdown, tests)."""
        if self._buffer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._buffer.join(), timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        await self.flush(timeout)
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
