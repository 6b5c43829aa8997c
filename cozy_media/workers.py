"""The process-wide bounded worker pool for CPU-heavy inference (LLM, STT, TTS, VAD).

Why one shared pool: 50 sessions each running their own model threads would oversubscribe two
cores and starve the event loop. Jobs queue here instead; `pending` is the backlog admission
control reads.

Jobs run by priority, then arrival: what a caller waits for (a final transcript, a reply's
speech: NORMAL) overtakes queued partial transcripts (BACKGROUND), so ten people talking at once
do not push each other's answers back.

Two lanes: `run` for real inference (Whisper, piper, LLM: tens to hundreds of ms per job) and
`run_light` for sub-millisecond jobs (Silero VAD over a few 32 ms chunks). The light lane has its
own thread so a session's VAD, which decides barge-in, never waits behind a Whisper decode, and
a plain SimpleQueue hand-off: ~45 µs of CPU a round trip instead of run_in_executor's ~100 µs,
which at 100 calls (~700 VAD batches a second) is 4% of a core.

Inference threads run at a lower CPU priority (nice +5 on Linux, `COZY_INFERENCE_NICENESS`; the
threads CTranslate2 and onnxruntime start from them inherit it): when the cores are saturated,
the event loop and the VAD lane still get the CPU the moment they need it, so /health and
barge-in stay fast. (+5, not more: on a shared machine inference must not starve behind other
processes either.)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import Gauge, Histogram

T = TypeVar("T")

POOL_PENDING = Gauge("cozy_worker_pool_pending", "Jobs queued or running in the inference worker pool.")
POOL_WAIT = Histogram(
    "cozy_worker_pool_wait_seconds",
    "Time an inference job waited in the pool's queue before a worker took it, by priority.",
    ["priority"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
INFERENCE_NICENESS = int(os.environ.get("COZY_INFERENCE_NICENESS", "5"))

# Job priorities (lower runs first). URGENT: a caller is waiting on it right now, with nothing else
# going on (the final transcript after the end of speech, a reply's first words). NORMAL: work that
# will be waited for soon (a speculative final at a pause, the next sentence while one plays, HTTP
# speech requests). BACKGROUND: a partial transcript, a nicety that may wait, or be skipped.
URGENT, NORMAL, BACKGROUND = 0, 1, 2
_WAIT_BY_PRIORITY = {
    level: POOL_WAIT.labels(name)
    for level, name in ((URGENT, "urgent"), (NORMAL, "normal"), (BACKGROUND, "background"))
}
_priority: contextvars.ContextVar[int] = contextvars.ContextVar("cozy_inference_priority", default=NORMAL)


@contextlib.contextmanager
def inference_priority(level: int) -> Iterator[None]:
    """Jobs submitted inside this block (by this task, and tasks it creates) queue at `level`."""
    token = _priority.set(level)
    try:
        yield
    finally:
        _priority.reset(token)


def _lower_priority() -> None:
    """This worker thread (and threads it spawns) yields the CPU to the event loop."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), INFERENCE_NICENESS)


@dataclass(slots=True, eq=False)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    priority: int
    queued: float  # monotonic time it was submitted
    taken: bool = False  # a worker has it (a promoted job sits in the heap twice)


class InferencePool:
    """Worker threads fed from one priority queue (not FIFO: a partial never delays a final)."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = max(1, workers)
        self._heap: list[tuple[int, int, _Job]] = []
        self._by_task: weakref.WeakKeyDictionary[asyncio.Task[Any], _Job] = weakref.WeakKeyDictionary()
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._pending = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"cozy-infer-{i}", daemon=True) for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        self._light: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._light_work, name="cozy-light", daemon=True).start()

    @property
    def pending(self) -> int:
        """Jobs queued or running (what admission control reads)."""
        return self._pending

    @property
    def has_idle_worker(self) -> bool:
        return self._pending < self.workers

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on a worker at the caller's priority; cancelling drops a job not yet started."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the inference pool is shut down")
            job = _Job(fn, args, future, loop, _priority.get(), time.monotonic())
            heapq.heappush(self._heap, (job.priority, next(self._seq), job))
            if (task := asyncio.current_task()) is not None:
                self._by_task[task] = job  # for `promote`
            self._pending += 1
            POOL_PENDING.set(self._pending)
            self._cv.notify()
        try:
            return await future
        finally:
            if task is not None and self._by_task.get(task) is job:
                del self._by_task[task]  # its arguments (audio) are not kept for the task's life

    def _work(self) -> None:
        _lower_priority()
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                _, _, job = heapq.heappop(self._heap)
                if job.taken:
                    continue  # promoted: its first entry already ran
                job.taken = True
            _WAIT_BY_PRIORITY[job.priority].observe(time.monotonic() - job.queued)
            try:
                _execute(job.fn, job.args, job.future, job.loop)
            finally:
                with self._cv:
                    self._pending -= 1
                    POOL_PENDING.set(self._pending)

    def promote(self, task: asyncio.Task[Any], level: int = URGENT) -> bool:
        """The job `task` waits on (if still queued) now runs at `level`: work started ahead of
        need (a speculative final, a primed first sentence) becomes what a caller waits for."""
        with self._cv:
            job = self._by_task.get(task)
            if job is None or job.taken or job.future.done() or job.priority <= level:
                return False
            job.priority = level
            heapq.heappush(self._heap, (level, next(self._seq), job))
            return True

    async def run_light(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a job that takes well under a millisecond (VAD) on the light lane."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._closed:
            raise RuntimeError("the inference pool is shut down")
        self._light.put((fn, args, future, loop))
        return await future

    def _light_work(self) -> None:
        while (job := self._light.get()) is not None:
            _execute(*job)

    def shutdown(self) -> None:
        with self._cv:
            self._closed = True
            left = {job for _, _, job in self._heap if not job.taken}  # a promoted job is in it twice
            for job in left:
                with contextlib.suppress(RuntimeError):
                    job.loop.call_soon_threadsafe(job.future.cancel)
            self._pending -= len(left)
            self._heap.clear()
            self._cv.notify_all()
        with contextlib.suppress(queue.Empty):
            while (job := self._light.get_nowait()) is not None:
                with contextlib.suppress(RuntimeError):
                    job[3].call_soon_threadsafe(job[2].cancel)
        self._light.put(None)  # the light thread ends after the job it is running


def _execute(fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any], loop: Any) -> None:
    """Run one job on this worker thread and hand its outcome to the awaiting task's loop."""
    if future.cancelled():
        return  # nobody waits for it any more (a superseded partial, a closed call)
    try:
        result, error = fn(*args), None
    except BaseException as exc:  # handed to the awaiting task
        result, error = None, exc
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_pool: InferencePool | None = None


def configure_pool(workers: int) -> InferencePool:
    """Create (or resize) the process pool at start-up.

    Also shortens the GIL switch interval (5 ms → 1 ms): inference threads run Python between
    their native calls (faster-whisper's decode loop, piper's phonemizer glue), and the event
    loop should win the GIL back within a millisecond, not five.
    """
    global _pool
    sys.setswitchinterval(0.001)
    if _pool is not None and _pool.workers == workers:
        return _pool
    if _pool is not None:
        _pool.shutdown()
    _pool = InferencePool(workers)
    return _pool


def get_pool() -> InferencePool:
    global _pool
    if _pool is None:
        _pool = InferencePool(2)
    return _pool
