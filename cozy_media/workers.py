"""The process-wide bounded worker pool for CPU-heavy inference (LLM, STT, TTS, VAD).

Why one shared pool: 50 sessions each running their own model threads would oversubscribe two
cores and starve the event loop. Jobs queue here instead; `pending` is the backlog admission
control reads.

Two lanes: `run` for real inference (Whisper, piper, LLM: tens to hundreds of ms per job) and
`run_light` for sub-millisecond jobs (Silero VAD over a few 32 ms chunks). The light lane has its
own thread so a session's VAD, which decides barge-in, never waits behind a Whisper decode.

Inference threads run at a lower CPU priority (nice +5 on Linux, `COZY_INFERENCE_NICENESS`; the
threads CTranslate2 and onnxruntime start from them inherit it): when the cores are saturated,
the event loop and the VAD lane still get the CPU the moment they need it, so /health and
barge-in stay fast. (+5, not more: on a shared machine inference must not starve behind other
processes either.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from prometheus_client import Gauge

T = TypeVar("T")

POOL_PENDING = Gauge("cozy_worker_pool_pending", "Jobs queued or running in the inference worker pool.")
INFERENCE_NICENESS = int(os.environ.get("COZY_INFERENCE_NICENESS", "5"))


def _lower_priority() -> None:
    """Thread initializer: this worker (and threads it spawns) yields the CPU to the event loop."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), INFERENCE_NICENESS)


class InferencePool:
    def __init__(self, workers: int = 2) -> None:
        self.workers = max(1, workers)
        self._executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="cozy-infer", initializer=_lower_priority
        )
        self._pending = 0
        self._lock = threading.Lock()
        self._light = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cozy-light")

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on a worker thread; cancellation stops waiting, not the thread."""
        loop = asyncio.get_running_loop()
        self._inc(1)
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            self._inc(-1)

    async def run_light(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a job that takes well under a millisecond (VAD) on the light lane."""
        return await asyncio.get_running_loop().run_in_executor(self._light, fn, *args)

    def _inc(self, n: int) -> None:
        with self._lock:
            self._pending += n
            POOL_PENDING.set(self._pending)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._light.shutdown(wait=False, cancel_futures=True)


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
