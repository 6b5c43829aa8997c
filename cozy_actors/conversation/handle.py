"""A TurnHandle is one running assistant turn as its consumer sees it: an async stream of events
and a way to stop it (LiveKit's SpeechHandle idea, without the god object).

The turn runs *in the consumer's task* as it iterates (the HTTP response for text chat, the
actor's speech task for voice), so each token crosses no extra task or queue. The actor still
owns the turn: it creates it, can cancel it at any time (control lane), and is told when it
ends, with the messages to keep in history (for a cancelled turn: only the text actually
produced).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cozy_actors.engines.llm.base import LLMUsage
from cozy_actors.observability.metrics import TURNS, labelled

from .events import ServerToolCall, TurnDone, TurnEvent, TurnFailed
from .turn import Turn

if TYPE_CHECKING:
    from cozy_actors.runtime import ActorRef

log = logging.getLogger("cozy.conversation")


@dataclass(slots=True)
class CancelTurn:
    """Control message: stop the running turn now."""

    turn_id: str
    reason: str = "cancelled"


@dataclass(slots=True)
class TurnFinished:
    """Sent by the handle to its actor when the turn has ended, whatever the outcome; the rest is
    what persistence and audit keep about the turn (usage is known only for a finished turn)."""

    turn_id: str
    new_messages: list[dict[str, Any]]
    outcome: str = "completed"  # completed | cancelled | failed | a TurnDone stop_reason
    usage: LLMUsage | None = None
    latency_s: float | None = None
    tool_calls: list[ServerToolCall] = field(default_factory=list)

    @property
    def incomplete(self) -> bool:
        """The assistant message was cut short (upstream failure, cancel, shutdown)."""
        return self.outcome in ("cancelled", "failed")


class TurnHandle:
    def __init__(
        self,
        turn_id: str,
        session_id: str | None,
        personality_id: str,
        model: str,
        actor: ActorRef,
        turn: Turn,
        mode: str = "text",
    ) -> None:
        self.turn_id = turn_id
        self.session_id = session_id
        self.personality_id = personality_id
        self.model = model
        self.actor = actor
        self.turn = turn
        self.mode = mode
        self.finished = False
        self._started = False
        self._inside = False  # the consumer task is awaiting the model/tools right now
        self._task: asyncio.Task[Any] | None = None
        self._cancel: tuple[str, TurnEvent | None] | None = None
        self._t0 = time.perf_counter()
        self._usage: LLMUsage | None = None
        self._tool_calls: list[ServerToolCall] = []

    def cancel(self, reason: str = "cancelled", final: TurnEvent | None = None) -> None:
        """Stop the turn now. Safe at any time and more than once; `final` replaces the default
        `TurnDone(stop_reason="cancelled")` as the last event the consumer sees."""
        if self.finished or self._cancel is not None:
            return
        self._cancel = (reason, final)
        if not self._started:
            self._finish([], "cancelled")
        elif self._inside and self._task is not None and not self._task.done():
            self._task.cancel(_MARK)  # interrupts the model stream or tool at once
        else:
            # The consumer is between events (or has walked away): the turn is over now; if it
            # comes back for the next event it gets the final cancelled event.
            self._finish(self._partial(), "cancelled")

    async def __aiter__(self) -> AsyncIterator[TurnEvent]:
        if self._started:
            raise RuntimeError("a turn handle can be consumed once")
        self._started = True
        if self._cancel is not None:  # cancelled before anyone listened
            yield self._cancelled_event()
            return
        self._task = asyncio.current_task()
        inner = self.turn.events().__aiter__()
        new_messages: list[dict[str, Any]] = []
        outcome = "failed"
        final: TurnEvent | None = None
        try:
            while True:
                if self._cancel is not None:
                    raise _Stop
                self._inside = True
                try:
                    event = await anext(inner)
                finally:
                    self._inside = False
                if isinstance(event, TurnDone):
                    new_messages, outcome = event.new_messages, event.stop_reason or "completed"
                    self._usage = event.usage
                elif isinstance(event, TurnFailed) and event.partial_text:
                    new_messages = [{"role": "assistant", "content": event.partial_text}]
                elif isinstance(event, ServerToolCall):
                    self._tool_calls.append(event)
                yield event
                if isinstance(event, TurnDone | TurnFailed):
                    return
        except StopAsyncIteration:
            final = TurnFailed("ENGINE_ERROR", "turn ended without a result", 500, self.turn.text)
        except (asyncio.CancelledError, _Stop) as exc:
            if isinstance(exc, asyncio.CancelledError):
                if self._cancel is None or self._task is None:
                    outcome = "cancelled"
                    new_messages = self._partial()
                    raise  # the consumer itself was cancelled (e.g. the client went away)
                self._task.uncancel()
            outcome = "cancelled"
            new_messages = self._partial()
            final = self._cancelled_event(new_messages)
        except Exception as exc:  # a bug in the turn must end this turn, not the conversation
            log.exception("turn crashed", extra={"session_id": self.session_id})
            final = TurnFailed("ENGINE_ERROR", f"turn failed: {type(exc).__name__}", 500, self.turn.text)
            new_messages = self._partial()
        finally:
            await inner.aclose()
            self._finish(new_messages, outcome)
        if final is not None:
            yield final

    def _partial(self) -> list[dict[str, Any]]:
        return [{"role": "assistant", "content": self.turn.text}] if self.turn.text else []

    def _cancelled_event(self, new_messages: list[dict[str, Any]] | None = None) -> TurnEvent:
        final = self._cancel[1] if self._cancel else None
        if final is not None:
            return final
        return TurnDone("stop", LLMUsage(), self.model, 0, "cancelled", new_messages or [])

    def _finish(self, new_messages: list[dict[str, Any]], outcome: str) -> None:
        if self.finished:
            return
        self.finished = True
        labelled(TURNS, self.mode, outcome).inc()
        finished = TurnFinished(
            self.turn_id, new_messages, outcome, self._usage, time.perf_counter() - self._t0, self._tool_calls
        )
        try:
            self.actor.tell(finished, control=True)
        except Exception:
            pass  # the actor is stopping: nothing left to update


class _Stop(Exception):
    """Internal: a cancel request seen between two events."""


_MARK = "cozy-turn-cancel"
