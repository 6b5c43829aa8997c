"""The process-wide bounded worker pool for CPU-heavy inference (LLM, STT, TTS, VAD).

Why one shared pool: 50 sessions each running their own model threads would oversubscribe two
cores and starve the event loop. Jobs queue here instead; `pending` is the backlog admission
control reads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from prometheus_client import Gauge

T = TypeVar("T")

POOL_PENDING = Gauge("cozy_worker_pool_pending", "Jobs queued or running in the inference worker pool.")


class InferencePool:
    def __init__(self, workers: int = 2) -> None:
        self.workers = max(1, workers)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="cozy-infer")
        self._pending = 0
        self._lock = threading.Lock()

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

    def _inc(self, n: int) -> None:
        with self._lock:
            self._pending += n
            POOL_PENDING.set(self._pending)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_pool: InferencePool | None = None


def configure_pool(workers: int) -> InferencePool:
    """Create (or resize) the process pool at start-up."""
    global _pool
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
