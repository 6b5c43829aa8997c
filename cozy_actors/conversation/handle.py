"""A TurnHandle is what a transport holds for one running turn: an async stream of its events
and a way to cancel it. Cancelling goes through the actor's control lane, so it never waits
behind queued data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .events import TurnDone, TurnEvent, TurnFailed

if TYPE_CHECKING:
    from cozy_actors.runtime import ActorRef


@dataclass(slots=True)
class CancelTurn:
    """Control message: stop the running turn now."""

    turn_id: str
    reason: str = "cancelled"


@dataclass
class TurnHandle:
    turn_id: str
    session_id: str | None
    personality_id: str
    model: str
    actor: ActorRef
    _queue: asyncio.Queue[TurnEvent] = field(default_factory=asyncio.Queue)
    _finished: bool = False

    def put(self, event: TurnEvent) -> None:
        """Called by the actor's turn task only."""
        self._queue.put_nowait(event)

    async def __aiter__(self) -> AsyncIterator[TurnEvent]:
        while not self._finished:
            event = await self._queue.get()
            if isinstance(event, TurnDone | TurnFailed):
                self._finished = True
            yield event

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the actor to stop this turn (safe to call at any time, even twice)."""
        if self._finished:
            return
        try:
            self.actor.tell(CancelTurn(self.turn_id, reason), control=True)
        except Exception:  # actor already gone: nothing left to cancel
            pass
