"""The inference pool runs waited-for work before background work, and skips abandoned jobs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cozy_media.workers import BACKGROUND, NORMAL, URGENT, InferencePool, inference_priority


async def job(pool: InferencePool, ran: list[str], name: str, level: int) -> str:
    """A job that notes when it ran, submitted at `level`."""
    with inference_priority(level):
        return await pool.run(lambda: ran.append(name) or name)


async def test_priority_then_arrival_and_cancelled_jobs_never_run() -> None:
    pool = InferencePool(1)
    gate = threading.Event()
    ran: list[str] = []
    try:
        blocker = asyncio.ensure_future(pool.run(gate.wait))
        await asyncio.sleep(0.05)  # the only worker is busy: everything below queues

        partial = asyncio.ensure_future(job(pool, ran, "partial", BACKGROUND))
        final_a = asyncio.ensure_future(job(pool, ran, "final-a", NORMAL))
        dropped = asyncio.ensure_future(job(pool, ran, "dropped", NORMAL))
        tts_b = asyncio.ensure_future(job(pool, ran, "tts-b", NORMAL))
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


async def test_a_promoted_job_overtakes_and_runs_once() -> None:
    """Work started ahead of need (a speculative final at a pause) runs first once a caller waits on
    it, exactly once; a job already taken, or not waiting in the pool, is not promoted."""
    pool = InferencePool(1)
    gate = threading.Event()
    ran: list[str] = []
    try:
        blocker = asyncio.ensure_future(pool.run(gate.wait))
        await asyncio.sleep(0.05)

        lookahead = asyncio.ensure_future(job(pool, ran, "next-sentence", NORMAL))
        speculative = asyncio.ensure_future(job(pool, ran, "speculative-final", NORMAL))
        first_words = asyncio.ensure_future(job(pool, ran, "first-words", URGENT))
        await asyncio.sleep(0.01)
        assert pool.promote(speculative) is True
        assert pool.promote(speculative) is False  # already at that level
        assert pool.promote(blocker) is False  # running
        assert pool.pending == 4
        gate.set()
        await asyncio.gather(lookahead, speculative, first_words, blocker)
        # URGENT first come first served (the promoted one queued last), then NORMAL; no job twice
        assert ran == ["first-words", "speculative-final", "next-sentence"]
        assert pool.promote(speculative) is False  # done
        for _ in range(100):
            if pool.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.pending == 0
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
