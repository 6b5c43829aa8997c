"""The inference pool runs waited-for work before background work, and skips abandoned jobs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cozy_media.workers import BACKGROUND, NORMAL, InferencePool, inference_priority


async def test_priority_then_arrival_and_cancelled_jobs_never_run() -> None:
    pool = InferencePool(1)
    gate = threading.Event()
    ran: list[str] = []
    try:
        blocker = asyncio.ensure_future(pool.run(gate.wait))
        await asyncio.sleep(0.05)  # the only worker is busy: everything below queues

        async def job(name: str, level: int) -> str:
            with inference_priority(level):
                return await pool.run(lambda: ran.append(name) or name)

        partial = asyncio.ensure_future(job("partial", BACKGROUND))
        final_a = asyncio.ensure_future(job("final-a", NORMAL))
        dropped = asyncio.ensure_future(job("dropped", NORMAL))
        tts_b = asyncio.ensure_future(job("tts-b", NORMAL))
        await asyncio.sleep(0.01)
        assert pool.pending == 5 and not pool.has_idle_worker
        dropped.cancel()
        gate.set()
        assert await asyncio.gather(final_a, tts_b, partial) == ["final-a", "tts-b", "partial"]
        await blocker
        assert ran == ["final-a", "tts-b", "partial"]  # NORMAL first come first served, then BACKGROUND
        for _ in range(100):  # the worker counts a job done just after handing its result over
            if pool.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.pending == 0 and pool.has_idle_worker
    finally:
        gate.set()
        pool.shutdown()


async def test_errors_reach_the_caller_and_shutdown_refuses_new_jobs() -> None:
    pool = InferencePool(2)

    def boom() -> None:
        raise ValueError("model failed")

    with pytest.raises(ValueError, match="model failed"):
        await pool.run(boom)
    assert await pool.run(sum, [1, 2, 3]) == 6
    with pytest.raises(ValueError, match="model failed"):  # the light lane too
        await pool.run_light(boom)
    assert await pool.run_light(sum, [4, 5]) == 9
    pool.shutdown()
    with pytest.raises(RuntimeError):
        await pool.run(sum, [1])
    with pytest.raises(RuntimeError):
        await pool.run_light(sum, [1])
