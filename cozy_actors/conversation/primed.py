"""Preemptive generation: the first model call of a voice turn, started while the speaker pauses.

Why: the silence window (300-500 ms) that decides a turn has ended is dead time for the model. At
the pause the words so far are already decoded (the speculative final, `UtteranceLikely`), so the
session starts the model call its reply would make, and keeps what streams back. When the turn
really starts, `Turn` adopts the call only if its request is exactly the one primed (same
history, same words, same context, tools and sampling): the reply then starts from tokens already
here. Anything else (the user went on talking, the final decode differs, the settings changed) and
the primed call is cancelled and forgotten; nothing of it was shown, spoken, stored or run (tool
calls are only executed by the turn that adopts it). The price: one model call per pause that was
not the end of the turn (`cozy_preemptive_generations_total{outcome}` counts them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from cozy_actors.engines.llm.base import LLMEngine, LLMRequest
from cozy_actors.observability.metrics import PREEMPTIVE, labelled


class PrimedCall:
    """One model call running ahead of its turn; its events are kept until adopted or dropped."""

    def __init__(
        self,
        engine: LLMEngine,
        request: Callable[[], Awaitable[LLMRequest]],
        on_event: Callable[[Any], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_event = on_event  # sees each event as it arrives (the first sentence's speech starts early)
        self._request = request  # awaited first: the turn's context fetch (prefetched at the pause)
        self.request: LLMRequest | None = None
        self._events: list[Any] = []
        self._error: BaseException | None = None
        self._finished = False
        self._changed = asyncio.Event()
        self._adopted = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> PrimedCall:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="llm-preemptive")
        return self

    async def _run(self) -> None:
        try:
            self.request = request = await self._request()
            async for ev in self.engine.stream_chat(request):
                self._events.append(ev)
                self._changed.set()
                if self.on_event is not None:
                    self.on_event(ev)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # replayed to the turn that adopts it, as its own call would raise
            self._error = exc
        finally:
            self._finished = True
            self._changed.set()

    def adopt(self, engine: LLMEngine, request: LLMRequest) -> AsyncIterator[Any] | None:
        """The kept call's events (then the rest as they come) if it is this very request; else
        None, and the call is cancelled."""
        if self._adopted or self.request is None or engine is not self.engine or request != self.request:
            self.cancel()
            return None
        self._adopted = True
        labelled(PREEMPTIVE, "used").inc()
        return self._replay()

    async def _replay(self) -> AsyncIterator[Any]:
        i = 0
        try:
            while True:
                while i < len(self._events):
                    yield self._events[i]
                    i += 1
                if self._finished:
                    if self._error is not None:
                        raise self._error
                    return
                self._changed.clear()
                if i == len(self._events) and not self._finished:
                    await self._changed.wait()
        finally:
            if not self._finished:  # the adopting turn stopped reading (cancelled, timed out)
                self._stop()

    def cancel(self) -> None:
        """Not adopted: stop the call (counted once as discarded)."""
        if self._adopted:
            return
        self._adopted = True  # no later adoption either
        labelled(PREEMPTIVE, "discarded").inc()
        self._stop()

    def _stop(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(BaseException):
        task.exception()
