"""Event-loop lag monitor.

Why: with 50+ live voice sessions on one loop, lag is the first symptom of overload (audio frames
arrive late, barge-in feels slow). Measuring it lets the supervisor refuse new sessions instead of
degrading every live call, and it is exported as a metric.
"""

from __future__ import annotations

import asyncio
from collections import deque

from cozy_actors.observability.metrics import EVENT_LOOP_LAG

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    """Measures event-loop lag by scheduling a callback every interval and timing how late it runs; used
    for admission control and exported as `cozy_event_loop_lag_seconds`.

    Uses a chain of ``loop.call_at`` callbacks, no task. ``lag_s`` is the worst lag seen over the last
    ``window_s`` seconds, or how overdue the pending probe already is, whichever is larger.
    """

    def __init__(self, interval_s: float = 0.1, window_s: float = 1.0) -> None:
        """Small interval = faster detection; window = how long a lag spike keeps counting."""
        if interval_s <= 0 or window_s <= 0:
            raise ValueError("interval_s and window_s must be > 0")
        self.interval_s = interval_s
        self.window_s = window_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0
        self._samples: deque[tuple[float, float]] = deque()  # (loop time, lag)
        self._ewma = 0.0

    def start(self) -> None:
        """Begin probing on the running loop; idempotent."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._schedule()

    async def stop(self) -> None:
        """Stop probing; measurements already taken stay readable."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._handle is not None

    @property
    def lag_s(self) -> float:
        """Recent lag in seconds (max over the window, including the probe that is overdue right now)."""
        loop = self._loop
        if loop is None:
            return 0.0
        now = loop.time()
        recent = max((lag for t, lag in self._samples if now - t <= self.window_s), default=0.0)
        overdue = now - self._expected if self._handle is not None else 0.0
        return max(recent, overdue, 0.0)

    @property
    def ewma_s(self) -> float:
        """Smoothed lag (alpha 0.2), steadier than lag_s for dashboards."""
        return self._ewma

    def _schedule(self) -> None:
        assert self._loop is not None
        self._expected = self._loop.time() + self.interval_s
        self._handle = self._loop.call_at(self._expected, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        lag = max(0.0, now - self._expected)
        self._samples.append((now, lag))
        while self._samples and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        self._ewma += 0.2 * (lag - self._ewma)
        EVENT_LOOP_LAG.observe(lag)
        self._schedule()
