"""The calculator bounds every intermediate value before computing it, and sync tool bodies run
off the event loop with the turn's timeout (issue 10, item 2)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
import pytest

from cozy_actors.engines.tools.base import Tool, ToolCatalog, ToolError
from cozy_actors.engines.tools.builtin import BUILTIN_TOOLS, evaluate

HOSTILE = [
    "round(1, -10**7)",  # measured: 10.3 s of event loop on main
    "round(1, -10**8)",
    "round(2, -(10**6))",
    "9**9**9",
    "2**(2**20)",
    "(10**99)**(10**99)",
    "10**100 * 10**100 * 10**100",
    "(2**300) * (2**300)",
    "1e308 * 1e308",
    "exp(10**6)",
    "(-8) ** 0.5",
    "(" * 90 + "9**9**9" + ")" * 90,
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_hostile_expressions_are_refused_fast(expression: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ToolError):
        evaluate(expression)
    assert time.perf_counter() - start < 0.05, expression


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("(2 + 3) * sqrt(16)", 20),
        ("2^10", 1024),
        ("round(3.14159, 2)", 3.14),
        ("round(123456, -3)", 123000),
        ("10**100", 10**100),
        ("2**332", 2**332),
        ("max(1, 2, 3) - min(4, 5)", -1),
        ("-2**2", -4),
        ("7 // 2 + 7 % 2", 4),
    ],
)
def test_ordinary_arithmetic_still_works(expression: str, value: float) -> None:
    assert evaluate(expression) == value


async def test_big_results_are_json_numbers() -> None:
    cat = ToolCatalog(BUILTIN_TOOLS.values())
    res = await cat.execute(BUILTIN_TOOLS["calculator"], '{"expression": "10**100"}', timeout=1)
    assert res.ok and orjson.loads(res.content)["result"] == 1e100
    bad = await cat.execute(BUILTIN_TOOLS["calculator"], '{"expression": "round(1, -10**7)"}', timeout=1)
    assert not bad.ok and "ndigits" in orjson.loads(bad.content)["error"]


async def test_a_sync_tool_runs_off_the_loop_and_times_out() -> None:
    """A blocking body must not stall the loop; past its timeout the turn gets a tool error."""
    release = threading.Event()

    def stuck(args: dict[str, Any]) -> str:
        release.wait(5)  # a runaway body: its thread keeps running until it ends on its own
        return "late"

    tool = Tool("stuck", "blocks", {"type": "object"}, "read-only", stuck)
    assert tool.blocking and BUILTIN_TOOLS["calculator"].blocking
    cat = ToolCatalog([tool])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    res = await cat.execute(tool, "{}", timeout=0.3)
    elapsed = time.perf_counter() - start
    task.cancel()
    release.set()
    assert not res.ok and "timed out" in orjson.loads(res.content)["error"]
    assert 0.25 < elapsed < 1.5
    assert ticks >= 10  # the loop kept running while the body blocked its thread
