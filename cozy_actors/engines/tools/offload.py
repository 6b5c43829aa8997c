"""A small thread pool of its own for synchronous tool bodies, so none runs on the event loop.

Why its own: the inference pool (cozy_media.workers) is sized for models; a burst of tool calls
must not queue speech behind it, nor the other way round.

What a timeout does: the caller gets TimeoutError (the turn reports a tool error and moves on) at
`timeout`. A call still queued is cancelled and never runs. A call already running cannot be
killed (Python threads cannot be): it keeps its worker until its body returns, and its result is
dropped. That is why every built-in body is itself bounded (the calculator limits each value), so
a worker is always given back; `TOOL_WORKERS` runaway bodies at once would leave later sync calls
timing out, never the event loop blocked.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
TOOL_WORKERS = 4

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=TOOL_WORKERS, thread_name_prefix="cozy-tool")
    return _executor


async def run_blocking(fn: Callable[..., T], *args: Any, timeout: float) -> T:
    """`fn(*args)` on the tool pool, bounded by `timeout` (TimeoutError; see the module docstring)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    future = loop.run_in_executor(_pool(), call)
    return await asyncio.wait_for(future, timeout)
