"""Supervisor.spawn_replacing: one actor per id, taken over once the holder is idle (a call taking a
conversation over from its text actor, or from an earlier call)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cozy_actors.runtime import Actor, StopReason, Supervisor, SupervisorPolicy


class Holder(Actor):
    kind = "holder"

    def __init__(self, actor_id: str, log: list[Any], tag: str) -> None:
        super().__init__(actor_id)
        self.log, self.tag = log, tag
        self.working = False

    @property
    def busy(self) -> bool:
        return self.working

    async def on_start(self) -> None:
        self.log.append((self.tag, "start"))

    async def handle(self, message: Any) -> Any:
        self.working = message == "work"
        return None

    async def on_stop(self, reason: StopReason, detail: str | None) -> None:
        await asyncio.sleep(0.05)  # a flush: the successor must start after it
        self.log.append((self.tag, "stop", reason))


@pytest.fixture
async def sup() -> AsyncIterator[Supervisor]:
    s = Supervisor(SupervisorPolicy(max_duration_s=None, idle_timeout_s=None), tick_s=0.02)
    yield s
    await s.shutdown(timeout=1.0)


async def test_idle_holder_is_stopped_first_and_the_successor_starts_after(sup: Supervisor) -> None:
    log: list[Any] = []
    old = await sup.spawn(lambda i: Holder(i, log, "old"), "conv-1")
    await asyncio.sleep(0.02)
    new = await sup.spawn_replacing("conv-1", lambda i: Holder(i, log, "new"), wait_s=5, detail="taken")
    await asyncio.sleep(0.05)
    assert await old.wait_stopped() == (StopReason.TAKEN_OVER, "taken")
    assert log == [("old", "start"), ("old", "stop", StopReason.TAKEN_OVER), ("new", "start")]
    assert sup.directory.get("conv-1") is new and new.alive


async def test_busy_holder_gets_to_finish_within_the_bound(sup: Supervisor) -> None:
    log: list[Any] = []
    old = await sup.spawn(lambda i: Holder(i, log, "old"), "conv-2")
    old.tell("work")
    await asyncio.sleep(0.02)
    asyncio.get_running_loop().call_later(0.3, old.tell, "done")  # its turn ends after 0.3 s
    t0 = time.monotonic()
    await sup.spawn_replacing("conv-2", lambda i: Holder(i, log, "new"), wait_s=5, detail="taken")
    assert 0.25 < time.monotonic() - t0 < 2.0
    assert log[:2] == [("old", "start"), ("old", "stop", StopReason.TAKEN_OVER)]


async def test_a_holder_busy_past_the_bound_is_stopped_anyway(sup: Supervisor) -> None:
    log: list[Any] = []
    old = await sup.spawn(lambda i: Holder(i, log, "old"), "conv-3")
    old.tell("work")
    await asyncio.sleep(0.02)
    t0 = time.monotonic()
    new = await sup.spawn_replacing("conv-3", lambda i: Holder(i, log, "new"), wait_s=0.2, detail="taken")
    assert 0.15 < time.monotonic() - t0 < 1.5
    assert not old.alive and new.alive
