"""Stopping background tasks reliably.

Why not `task.cancel(); await task`: on Python 3.11 `asyncio.wait_for` swallows a cancellation
that arrives in the same loop iteration as the wrapped operation completes (CPython gh-86296,
fixed in 3.12). redis-py wraps every socket write in `wait_for`, so a Redis consumer cancelled
once at the wrong moment keeps looping, and whoever awaits it waits forever: `cozy users create`
with REDIS_URL hung in 3 of 4 runs that way. Cancelling again until the task is done, within a
deadline, makes stopping both certain and bounded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("cozy.tasks")


async def cancel_and_wait(
    *tasks: asyncio.Task[Any] | None, timeout: float = 5.0, retry_s: float = 0.1
) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` (None entries are skipped) and wait until they are done, cancelling again
    every `retry_s` while one still runs; returns those still running after `timeout` (logged)."""
    todo = [t for t in tasks if t is not None]
    pending = {t for t in todo if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(retry_s, left))
    for task in todo:  # retrieve outcomes, so none is reported as "never retrieved"
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("task %s ended with %r before it was stopped", task.get_name(), task.exception())
    if pending:
        log.error("tasks still running %.1f s after cancel: %s", timeout, sorted(t.get_name() for t in pending))
    return pending
