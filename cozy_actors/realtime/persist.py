"""One writer per realtime session: its turns reach storage in order, retried, flushed on stop.

Why: fire-and-forget append tasks could land out of order (an assistant reply before the user
words it answers) and a storage error lost the turn for good. Here a session's writes form one
queue drained by one task: a write that fails with a storage error is retried with backoff (the
call goes on meanwhile; nothing the user hears waits for the database), the next one waits its
turn, and a stopping session gives the queue `flush_on_stop_s` to drain. A deleted session
(SessionGone) drops what is pending: nothing may be appended to it. With a lease (`fence`, a call
holds its conversation's lease for its whole duration) every write carries the token; a refused
one (LeaseLost: another worker took the conversation over) drops what is pending and ends the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cozy_actors.observability.metrics import LEASE_LOST
from cozy_actors.placement import LeaseLost
from cozy_actors.storage import ConversationStore
from cozy_actors.storage.base import MessageMeta
from cozy_core.errors import CozyError, NotFound

log = logging.getLogger("cozy.realtime")


@dataclass(frozen=True, slots=True)
class WritePolicy:
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    flush_on_stop_s: float = 3.0
    max_pending: int = 1000


def reply_meta(model: str, status: str, usage: dict[str, Any] | None) -> MessageMeta:
    """Text chat's rule: a reply cancelled (cut off) or failed is stored `incomplete`; usage is
    known only for a finished one."""
    if status in ("cancelled", "failed"):
        return MessageMeta(model=model, incomplete=True)
    u = usage or {}
    return MessageMeta(model=model, prompt_tokens=u.get("input_tokens"), completion_tokens=u.get("output_tokens"))


def write_policy(cfg: Any) -> WritePolicy:
    """From `storage.durability` (DurabilityConfig)."""
    return WritePolicy(cfg.write_retry_initial_s, cfg.write_retry_max_s, cfg.flush_on_stop_s, cfg.max_pending_writes)


@dataclass(slots=True)
class _Write:
    messages: list[dict[str, Any]]
    meta: MessageMeta | None
    checkpoint: str | None


class SessionWriter:
    def __init__(
        self,
        store: ConversationStore,
        session_id: str,
        personality_id: str,
        policy: WritePolicy | None = None,
        *,
        fence: int | None = None,
    ) -> None:
        self.store = store
        self.fence = fence  # the call's lease token: a write after a takeover is refused
        self.session_id = session_id
        self.personality_id = personality_id
        self.policy = policy or WritePolicy()
        self._pending: deque[_Write] = deque()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.gone = False  # the session was deleted: writes are refused from now on
        self.on_gone: Callable[[], None] | None = None  # e.g. end the call (a deletion notice was missed)
        self.lost = False  # the lease was taken over: writes are refused from now on
        self.on_lost: Callable[[], None] | None = None  # end the call (session_taken_over)
        self.retries = 0

    @classmethod
    def of(
        cls, memo: dict[str, Any], store: ConversationStore, session_id: str, personality_id: str, policy: WritePolicy
    ) -> SessionWriter:
        """The session's writer, kept in the actor's memo so a restarted actor keeps its queue."""
        writer = memo.get("writer")
        if writer is None:
            writer = memo["writer"] = cls(store, session_id, personality_id, policy)
        return writer  # type: ignore[no-any-return]

    @property
    def pending(self) -> int:
        return len(self._pending)

    def put(
        self, messages: list[dict[str, Any]], *, meta: MessageMeta | None = None, checkpoint: str | None = None
    ) -> None:
        """Queue an append; never blocks, never raises."""
        if self.gone or self.lost:
            return
        self._pending.append(_Write(messages, meta, checkpoint))
        while len(self._pending) > self.policy.max_pending:
            lost = self._pending.popleft()
            log.error("realtime write dropped (%d pending)", len(self._pending), extra={"session_id": self.session_id})
            del lost
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name=f"realtime-writer:{self.session_id}")

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write is stored (True) or `timeout` passed (False: they are lost)."""
        limit = self.policy.flush_on_stop_s if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                await self._idle.wait()
            return True
        except TimeoutError:
            log.error(
                "%d realtime write(s) not stored within %.1f s",
                len(self._pending),
                limit,
                extra={"session_id": self.session_id},
            )
            return False

    async def close(self) -> None:
        """Flush within the policy's bound, then stop the drain task."""
        await self.flush()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _drain(self) -> None:
        delay = self.policy.retry_initial_s
        while self._pending:
            w = self._pending[0]
            try:
                await self.store.append(
                    self.session_id,
                    self.personality_id,
                    w.messages,
                    meta=w.meta,
                    checkpoint=w.checkpoint,
                    fence=self.fence,
                )
            except LeaseLost:  # another worker owns the conversation now: nothing more is ours to store
                self.lost = True
                LEASE_LOST.labels("realtime").inc(len(self._pending))
                log.warning(
                    "realtime write refused: the session was taken over (%d dropped)",
                    len(self._pending),
                    extra={"session_id": self.session_id},
                )
                self._pending.clear()
                if self.on_lost is not None:
                    self.on_lost()
                break
            except NotFound:  # deleted: nothing more may be stored for this session
                self.gone = True
                self._pending.clear()
                if self.on_gone is not None:
                    self.on_gone()
                break
            except CozyError as exc:  # storage down or failing: keep the order, try again later
                self.retries += 1
                log.warning("realtime write failed, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(self.policy.retry_max_s, delay * 2)
                continue
            except Exception:
                log.exception("realtime write failed (dropped)", extra={"session_id": self.session_id})
            self._pending.popleft()
            delay = self.policy.retry_initial_s
        self._idle.set()
