"""One Silero call for every live session's audio: the VAD batcher.

Why: at 50 calls the VAD runs ~1,500 chunks a second. One ONNX call per chunk costs ~0.22 ms
and a thread hop each; one call over a batch of 50 chunks costs ~0.06 ms a chunk and one hop.
Sessions that complete chunks in the same loop tick (or while a batch is running) share the next
call, so an idle server adds no delay and a busy one does less work per chunk, not more.

The batching window (`vad.options.batch_window_ms`, 20 by default): while several sessions feed (the
last batch held more than one chunk), a batch waits until its oldest chunk is that old before it runs.
Sessions' frames arrive spread over the frame time, so "the same tick" gathers few of them: at 50
calls on a quiet machine batches held 2-6 chunks, with the window ~15, and the server's per-frame
CPU more than halved (fewer model calls, thread hops and loop wake-ups). A lone call never waits.
The cost: a VAD decision (speech started/stopped) may come up to the window later.

Rows of a batch are independent streams: each carries its own recurrent state (Silero's state
is [2, batch, 128]); a frame that completes two chunks runs in two rounds, the second with the
state the first produced.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Histogram

if TYPE_CHECKING:
    from .stream import StreamingVAD

VAD_BATCH_ROWS = Histogram(
    "cozy_vad_batch_rows",
    "Sessions' 32 ms chunks run in one VAD model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
MAX_ROWS = 128  # rows per model call; a bigger batch runs as several calls in the same job

_Job = tuple["StreamingVAD", np.ndarray, "asyncio.Future[list[float]]"]
_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, VadBatcher]] = weakref.WeakKeyDictionary()


class VadBatcher:
    """Collects (stream, windows) jobs for one model and runs them together on the light lane."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.window_s = float(getattr(model, "batch_window_s", 0.0))
        self._last_rows = 0  # chunks in the last batch: > 1 means other sessions are worth waiting for
        self._queue: list[_Job] = []
        self._first_at = 0.0  # loop time the oldest queued job arrived: the window counts from it
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # model jobs run (for tests and benchmarks)
        self.rows = 0

    async def run(self, stream: StreamingVAD, windows: np.ndarray) -> list[float]:
        """The speech probability of each window of `stream`, in order; updates its state."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[float]] = loop.create_future()
        if not self._queue:
            self._first_at = loop.time()
        self._queue.append((stream, windows, future))
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())  # next tick: every feed of this tick joins the batch
        return await future

    async def _drain(self) -> None:
        from ..workers import get_pool

        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.window_s > 0 and self._last_rows > 1:  # several calls feed: worth waiting for
                    wait = self._first_at + self.window_s - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)  # feeds until then join the batch
                jobs, self._queue = self._queue, []
                self._last_rows = sum(len(windows) for _, windows, _ in jobs)
                try:
                    results = await get_pool().run_light(self.compute, jobs)
                except Exception as exc:
                    for *_, future in jobs:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled: nobody may wait forever
                    for *_, future in jobs:
                        future.cancel()
                    raise
                for (_, _, future), probs in zip(jobs, results, strict=True):
                    if not future.done():
                        future.set_result(probs)
        finally:
            self._draining = False
            for *_, future in self._queue:  # only on cancellation (loop closing)
                future.cancel()
            self._queue.clear()

    def compute(self, jobs: list[_Job]) -> list[list[float]]:
        """Blocking: run the jobs' windows round by round, in batches of up to MAX_ROWS."""
        probs: list[list[float]] = [[] for _ in jobs]
        rounds = max(len(windows) for _, windows, _ in jobs)
        step_batch = getattr(self.model, "step_batch", None)
        for r in range(rounds):
            live = [i for i, (_, windows, _) in enumerate(jobs) if len(windows) > r]
            for lo in range(0, len(live), MAX_ROWS):
                rows = live[lo : lo + MAX_ROWS]
                streams = [jobs[i][0] for i in rows]
                if step_batch is None:  # a model without batch support (test fakes)
                    for i, stream in zip(rows, streams, strict=True):
                        prob, stream.state = self.model.step(jobs[i][1][r : r + 1], stream.state)
                        probs[i].append(prob)
                    continue
                x = np.stack([jobs[i][1][r] for i in rows])
                state = np.concatenate([s.state for s in streams], axis=1)
                out, nxt = step_batch(x, state)
                for n, (i, stream, prob) in enumerate(zip(rows, streams, out.tolist(), strict=True)):
                    stream.state = nxt[:, n : n + 1]
                    probs[i].append(prob)
                self.batches += 1
                self.rows += len(rows)
                VAD_BATCH_ROWS.observe(len(rows))
        return probs


def batcher_for(model: Any) -> VadBatcher:
    """The batcher of `model` on the running loop (one per loop, so tests' loops never share)."""
    loop = asyncio.get_running_loop()
    per_loop = _batchers.setdefault(loop, {})
    batcher = per_loop.get(id(model))
    if batcher is None or batcher.model is not model:
        batcher = per_loop[id(model)] = VadBatcher(model)
    return batcher
