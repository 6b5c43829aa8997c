"""Live transcription streams (`WS /v1/audio/stt/stream`): admitted, bounded in time and ended on
revocation by the same rules as realtime sessions.

They are not actors (no conversation: the transport feeds a TranscriptionSession), so this keeps
the rules a supervisor would: refuse a new stream while the process is full (loop lag, inference
backlog, `api.stt_stream.max_sessions`), end each one after `max_duration_s`, end those of a
revoked key or disabled user at once, and end all of them on shutdown. Each end is one call back
to the transport, which sends the client an `error` event and closes. One timer per stream, no task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from cozy_actors.config.limits import SttStreamLimitsConfig
from cozy_actors.config.models import SessionConfig
from cozy_actors.runtime import LoopLagMonitor
from cozy_core.errors import CozyError
from cozy_media.workers import get_pool


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Why a stream ends: the `error` event's code and message, and the WebSocket close code."""

    code: str
    message: str
    close_code: int


EXPIRED = StreamEnd("session_expired", "The stream reached its maximum duration.", 1000)
REVOKED = StreamEnd("session_revoked", "The stream's API key was revoked or its user disabled.", 1008)
SHUTDOWN = StreamEnd("server_shutting_down", "The server is shutting down.", 1001)


class StreamLease:
    """One admitted stream; `end(why)` tells its transport once, `release()` when it closes."""

    __slots__ = ("_on_end", "_owner", "_timer", "ended", "key_id", "user_id")

    def __init__(
        self, owner: SttStreams, on_end: Callable[[StreamEnd], None], user_id: str | None, key_id: str | None
    ) -> None:
        self._owner = owner
        self._on_end = on_end
        self.user_id = user_id
        self.key_id = key_id
        self.ended: StreamEnd | None = None
        self._timer: asyncio.TimerHandle | None = None

    def end(self, why: StreamEnd) -> None:
        if self.ended is not None:
            return
        self.ended = why
        self.release()
        self._on_end(why)

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._owner._live.discard(self)


class SttStreams:
    def __init__(
        self,
        limits: SttStreamLimitsConfig,
        sessions: SessionConfig,
        loadmon: LoopLagMonitor,
        *,
        backlog: Callable[[], int] | None = None,
    ) -> None:
        self.limits = limits
        self.sessions = sessions
        self.loadmon = loadmon
        self._backlog = backlog or (lambda: get_pool().pending)
        self._live: set[StreamLease] = set()
        self._closing = False

    def __len__(self) -> int:
        return len(self._live)

    def open(
        self, on_end: Callable[[StreamEnd], None], *, user_id: str | None = None, key_id: str | None = None
    ) -> StreamLease:
        """Admit a stream or raise CozyError 503 RESOURCE_EXHAUSTED saying why (retry shortly)."""
        self._admit()
        lease = StreamLease(self, on_end, user_id, key_id)
        self._live.add(lease)
        lease._timer = asyncio.get_running_loop().call_later(self.limits.max_duration_s, lease.end, EXPIRED)
        return lease

    def _admit(self) -> None:
        cap, lag_ms, pool_cap = self.limits.max_sessions, self.sessions.max_loop_lag_ms, self.sessions.max_pool_backlog
        why = None
        if self._closing:
            why = "the server is shutting down"
        elif cap is not None and len(self._live) >= cap:
            why = f"{len(self._live)} transcription streams open (limit {cap})"
        elif lag_ms is not None and self.loadmon.ewma_s * 1000 > lag_ms:
            why = f"event loop lag {self.loadmon.ewma_s * 1000:.0f} ms exceeds the {lag_ms:g} ms admission limit"
        elif pool_cap is not None and (backlog := self._backlog()) >= pool_cap:
            why = f"{backlog} inference jobs queued (limit {pool_cap})"
        if why is not None:
            raise CozyError(f"server is at capacity: {why}; retry shortly", code="RESOURCE_EXHAUSTED", status=503)

    def end_sessions(self, *, user_id: str | None = None, key_id: str | None = None) -> int:
        """End the streams of `user_id` (any credential) or of API key `key_id`; returns how many."""
        ended = [
            lease
            for lease in list(self._live)
            if (user_id is not None and lease.user_id == user_id) or (key_id is not None and lease.key_id == key_id)
        ]
        for lease in ended:
            lease.end(REVOKED)
        return len(ended)

    def end_all(self, why: StreamEnd = SHUTDOWN) -> None:
        """Shutdown: end every stream and admit no more."""
        self._closing = True
        for lease in list(self._live):
            lease.end(why)
