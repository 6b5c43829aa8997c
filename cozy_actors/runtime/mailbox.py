"""Bounded two-lane mailbox for actors.

Why two lanes: control messages (interrupt, cancel, session update, close) must never wait behind a
backlog of audio frames, otherwise a barge-in is only honoured after seconds of queued audio.
Why deque + one waiter future: ``put`` is called ~50 times per second per session, so it must be
synchronous, allocation-light and never spawn a task; the consumer waits on a bare future of its loop
(what ``asyncio.Event.wait`` creates anyway, without its loop lookup and waiter list per wait).
Why a byte bound too: a count alone lets 256 queued messages of a few MiB each hold a GiB; with
``max_bytes`` the producer says each message's size (``nbytes``) and the total queued is capped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from cozy_actors.observability.metrics import MAILBOX_REJECTED, labelled

__all__ = ["Mailbox", "MailboxClosed", "MailboxFull", "OverflowPolicy"]

log = logging.getLogger("cozy.runtime")

OverflowPolicy = Literal["reject", "drop_oldest"]


class MailboxFull(Exception):
    """Raised by put()/tell() when a lane is full and the policy refuses the message (backpressure)."""


class MailboxClosed(Exception):
    """Raised by put()/tell()/ask() once the actor is stopping or stopped: nothing new will be handled."""


class Mailbox:
    """Two lanes: control messages (interrupt, cancel, session update, close) are always delivered before
    queued data messages, so a barge-in never waits behind an audio backlog.

    Overflow: the control lane is small and never drops (a lost "cancel" is a bug), so a full control
    lane always raises MailboxFull. A full data lane either raises MailboxFull (``"reject"``: the
    producer decides) or silently discards the *oldest* queued data item (``"drop_oldest"``: for live
    audio the newest frames matter most). Both outcomes are counted in MAILBOX_REJECTED[kind, lane].

    Closing refuses new items but keeps the queued ones: ``get`` keeps returning them and raises
    MailboxClosed only once both lanes are empty, which is what a graceful drain needs.
    Single consumer: exactly one task (the actor's) calls ``get``.
    """

    __slots__ = (
        "_bytes",
        "_closed",
        "_control",
        "_control_maxsize",
        "_data",
        "_max_bytes",
        "_maxsize",
        "_on_drop",
        "_overflow",
        "_rejected_control",
        "_rejected_data",
        "_sizes_control",
        "_sizes_data",
        "_waiter",
    )

    def __init__(
        self,
        maxsize: int = 256,
        overflow: OverflowPolicy = "reject",
        control_maxsize: int = 64,
        *,
        kind: str = "actor",
        on_drop: Callable[[Any], None] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        """``kind`` labels the rejection metric; ``on_drop`` is told about items discarded by drop_oldest
        (the actor runtime uses it to fail a dropped ask right away instead of letting it time out);
        ``max_bytes`` caps the sum of the ``nbytes`` given to put() over both lanes (None: count only)."""
        if maxsize < 1 or control_maxsize < 1:
            raise ValueError("mailbox sizes must be >= 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if overflow not in ("reject", "drop_oldest"):
            raise ValueError(f"unknown overflow policy {overflow!r}")
        self._maxsize = maxsize
        self._control_maxsize = control_maxsize
        self._overflow: OverflowPolicy = overflow
        self._data: deque[Any] = deque()
        self._control: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None  # the consumer's, while it waits on empty lanes
        self._closed = False
        self._on_drop = on_drop
        self._max_bytes = max_bytes
        self._bytes = 0
        self._sizes_data: deque[int] = deque()  # kept beside the lanes only when max_bytes is set
        self._sizes_control: deque[int] = deque()
        # Label children resolved once: put() is a hot path.
        self._rejected_data = labelled(MAILBOX_REJECTED, kind, "data")
        self._rejected_control = labelled(MAILBOX_REJECTED, kind, "control")

    def put(self, item: Any, *, control: bool = False, nbytes: int = 0) -> None:
        """Enqueue without blocking; raises instead of waiting so producers (transports) never stall.

        With ``max_bytes``, an item whose ``nbytes`` would take the total over it is refused with
        MailboxFull whatever the overflow policy (dropping old audio must not make room for a flood)."""
        if self._closed:
            raise MailboxClosed("mailbox is closed")
        sized = self._max_bytes is not None
        if sized and nbytes and self._bytes + nbytes > self._max_bytes:  # type: ignore[operator]
            (self._rejected_control if control else self._rejected_data).inc()
            raise MailboxFull(f"mailbox byte limit reached ({self._max_bytes} bytes queued)")
        if control:
            if len(self._control) >= self._control_maxsize:
                self._rejected_control.inc()
                raise MailboxFull(f"control lane full ({self._control_maxsize} messages)")
            self._control.append(item)
            if sized:
                self._sizes_control.append(nbytes)
                self._bytes += nbytes
        else:
            if len(self._data) >= self._maxsize:
                self._rejected_data.inc()
                if self._overflow == "reject":
                    raise MailboxFull(f"data lane full ({self._maxsize} messages)")
                dropped = self._data.popleft()
                if sized:
                    self._bytes -= self._sizes_data.popleft()
                if self._on_drop is not None:
                    try:
                        self._on_drop(dropped)
                    except Exception:
                        log.exception("mailbox on_drop callback failed")
            self._data.append(item)
            if sized:
                self._sizes_data.append(nbytes)
                self._bytes += nbytes
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> Any:
        """Next item, control lane first; waits while empty; MailboxClosed once closed and empty."""
        while True:
            if self._control:
                if self._max_bytes is not None:
                    self._bytes -= self._sizes_control.popleft()
                return self._control.popleft()
            if self._data:
                if self._max_bytes is not None:
                    self._bytes -= self._sizes_data.popleft()
                return self._data.popleft()
            if self._closed:
                raise MailboxClosed("mailbox is closed")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    def close(self) -> None:
        """Refuse new items from now on; queued items stay available to ``get``/``drain_nowait``."""
        self._closed = True
        self._wake()  # wake the consumer so it can notice the close once the lanes are empty

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    def __len__(self) -> int:
        """Items queued in both lanes."""
        return len(self._control) + len(self._data)

    @property
    def nbytes(self) -> int:
        """Sum of the queued items' ``nbytes`` (0 without ``max_bytes``)."""
        return self._bytes

    def drain_nowait(self) -> list[Any]:
        """Remove and return everything queued (control items first), e.g. to fail pending asks on stop."""
        items = [*self._control, *self._data]
        self._control.clear()
        self._data.clear()
        self._sizes_control.clear()
        self._sizes_data.clear()
        self._bytes = 0
        return items
