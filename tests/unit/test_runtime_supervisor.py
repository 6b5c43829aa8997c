"""Supervisor: lifetime timers, graceful shutdown, admission control, get_or_spawn, directory, lag monitor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cozy_actors.runtime import (
    Actor,
    ActorStopped,
    Directory,
    LoopLagMonitor,
    MailboxClosed,
    StopReason,
    Supervisor,
    SupervisorFull,
    SupervisorPolicy,
)


def policy(**kw: Any) -> SupervisorPolicy:
    base: dict[str, Any] = {
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.02,
        "max_duration_s": None,
        "idle_timeout_s": None,
    }
    return SupervisorPolicy(**(base | kw))


@pytest.fixture
async def make_sup() -> AsyncIterator[Callable[..., Supervisor]]:
    sups: list[Supervisor] = []

    def make(pol: SupervisorPolicy | None = None, **kw: Any) -> Supervisor:
        sup = Supervisor(pol or policy(), tick_s=0.02, **kw)
        sups.append(sup)
        return sup

    yield make
    for sup in sups:
        await sup.shutdown(timeout=1.0)


class Recorder(Actor):
    """Records what it handles and how it stopped; can be parked on a gate or hang forever."""

    kind = "test_recorder"

    def __init__(self, actor_id: str, log: list[Any], *, hang_on_stop: bool = False) -> None:
        super().__init__(actor_id)
        self.log = log
        self.hang_on_stop = hang_on_stop
        self.working = False
        self.entered = asyncio.Event()

    @property
    def busy(self) -> bool:
        return self.working

    async def on_start(self) -> None:
        self.log.append((self.actor_id, "start"))

    async def handle(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[0] == "wait":
            self.entered.set()
            try:
                await message[1].wait()
            except asyncio.CancelledError:
                self.log.append((self.actor_id, "cancelled"))
                raise
            return "released"
        self.log.append((self.actor_id, "handle", message))
        return message

    async def on_stop(self, reason: StopReason, detail: str | None) -> None:
        self.log.append((self.actor_id, "stop", reason))
        if self.hang_on_stop:
            await asyncio.Event().wait()


def recorder(log: list[Any], **kw: Any) -> Callable[[str], Recorder]:
    return lambda actor_id: Recorder(actor_id, log, **kw)


async def test_max_duration_stops_actor_even_mid_message(make_sup) -> None:
    log: list[Any] = []
    sup = make_sup(policy(max_duration_s=0.2))
    t0 = time.monotonic()
    ref = await sup.spawn(recorder(log), "d1")
    hung = asyncio.create_task(ref.ask(("wait", asyncio.Event()), timeout=5))
    reason, detail = await asyncio.wait_for(ref.wait_stopped(), 1.5)
    assert reason is StopReason.MAX_DURATION
    assert detail is not None and "max duration" in detail
    assert time.monotonic() - t0 >= 0.19
    assert ("d1", "stop", StopReason.MAX_DURATION) in log
    assert ("d1", "cancelled") in log
    with pytest.raises(ActorStopped):
        await hung
    assert "d1" not in sup.directory


async def test_idle_timeout_fires_for_idle_actor(make_sup) -> None:
    log: list[Any] = []
    sup = make_sup(policy(idle_timeout_s=0.2))
    t0 = time.monotonic()
    ref = await sup.spawn(recorder(log), "i1")
    reason, detail = await asyncio.wait_for(ref.wait_stopped(), 1.5)
    assert reason is StopReason.IDLE_TIMEOUT and detail is not None
    assert 0.19 <= time.monotonic() - t0 < 0.6
    assert ("i1", "stop", StopReason.IDLE_TIMEOUT) in log


async def test_idle_timeout_ignores_busy_actor_until_work_ends(make_sup) -> None:
    sup = make_sup(policy(idle_timeout_s=0.2))
    ref = await sup.spawn(recorder([]), "i2")
    ref.instance.working = True  # e.g. a turn running in a background task
    await asyncio.sleep(0.5)
    assert ref.alive
    ref.instance.working = False
    t0 = time.monotonic()
    reason, _ = await asyncio.wait_for(ref.wait_stopped(), 1.0)
    assert reason is StopReason.IDLE_TIMEOUT
    assert time.monotonic() - t0 >= 0.15  # the countdown starts when the work ends


async def test_idle_timeout_does_not_fire_while_messages_keep_coming(make_sup) -> None:
    sup = make_sup(policy(idle_timeout_s=0.2))
    ref = await sup.spawn(recorder([]), "i3")
    for i in range(10):
        ref.tell(i)
        await asyncio.sleep(0.05)
    assert ref.alive
    for _ in range(5):
        ref.instance.touch()  # activity without messages also counts
        await asyncio.sleep(0.05)
    assert ref.alive
    reason, _ = await asyncio.wait_for(ref.wait_stopped(), 1.0)
    assert reason is StopReason.IDLE_TIMEOUT


async def test_shutdown_drains_queued_messages_before_on_stop() -> None:
    log: list[Any] = []
    sup = Supervisor(policy(), tick_s=0.02)
    a = await sup.spawn(recorder(log), "a")
    b = await sup.spawn(recorder(log), "b")
    gate = asyncio.Event()
    parked = asyncio.create_task(a.ask(("wait", gate), timeout=5))
    await asyncio.wait_for(a.instance.entered.wait(), 1)
    for i in range(3):
        a.tell(i)
    asked = asyncio.create_task(a.ask("last", timeout=5))
    await asyncio.sleep(0)

    shutting = asyncio.create_task(sup.shutdown(timeout=2.0))
    await asyncio.sleep(0.02)
    with pytest.raises(MailboxClosed):
        a.tell("refused")
    with pytest.raises(SupervisorFull, match="shutting down"):
        await sup.spawn(recorder(log), "c")
    gate.set()
    await asyncio.wait_for(shutting, 2.5)

    assert await parked == "released" and await asked == "last"
    a_events = [e[1:] for e in log if e[0] == "a"]
    assert a_events == [
        ("start",),
        ("handle", 0),
        ("handle", 1),
        ("handle", 2),
        ("handle", "last"),
        ("stop", StopReason.SHUTDOWN),
    ]
    assert ("b", "stop", StopReason.SHUTDOWN) in log
    assert await a.wait_stopped() == await b.wait_stopped() == (StopReason.SHUTDOWN, "supervisor shutdown")
    assert len(sup.directory) == 0
    await asyncio.wait_for(sup.shutdown(), 0.1)  # idempotent


async def test_shutdown_returns_within_timeout_when_a_handler_hangs() -> None:
    log: list[Any] = []
    sup = Supervisor(policy(), tick_s=0.02)
    ok = await sup.spawn(recorder(log), "ok")
    stuck = await sup.spawn(recorder(log), "stuck")
    hung = asyncio.create_task(stuck.ask(("wait", asyncio.Event()), timeout=5))
    await asyncio.wait_for(stuck.instance.entered.wait(), 1)
    queued = asyncio.create_task(stuck.ask("never", timeout=5))
    await asyncio.sleep(0)

    t0 = time.monotonic()
    await sup.shutdown(timeout=0.4)
    assert time.monotonic() - t0 < 0.55
    assert ("stuck", "cancelled") in log
    assert ("stuck", "stop", StopReason.SHUTDOWN) in log
    assert ("ok", "stop", StopReason.SHUTDOWN) in log
    for task in (hung, queued):
        with pytest.raises(ActorStopped):
            await task
    assert not ok.alive and not stuck.alive


async def test_shutdown_hard_cancels_an_on_stop_that_hangs() -> None:
    log: list[Any] = []
    sup = Supervisor(policy(on_stop_timeout_s=None), tick_s=0.02)
    ref = await sup.spawn(recorder(log, hang_on_stop=True), "h")
    t0 = time.monotonic()
    await sup.shutdown(timeout=0.3)
    assert time.monotonic() - t0 < 0.45
    assert ("h", "stop", StopReason.SHUTDOWN) in log
    assert await asyncio.wait_for(ref.wait_stopped(), 0.1) == (StopReason.SHUTDOWN, "supervisor shutdown")


async def test_admission_refuses_when_max_actors_reached(make_sup) -> None:
    sup = make_sup(policy(max_actors=2))
    first = await sup.spawn(recorder([]))
    await sup.spawn(recorder([]))
    with pytest.raises(SupervisorFull, match="max_actors=2"):
        await sup.spawn(recorder([]))
    await first.stop()
    await sup.spawn(recorder([]))  # room again
    assert sup.stats()["live_actors"] == 2


def _block_loop(seconds: float) -> None:
    time.sleep(seconds)  # deliberately stalls the event loop


async def test_loop_lag_is_measured_and_refuses_spawns(make_sup) -> None:
    mon = LoopLagMonitor(interval_s=0.02, window_s=0.3)
    sup = make_sup(policy(max_loop_lag_s=0.1), loadmon=mon)
    await sup.spawn(recorder([]))
    await asyncio.sleep(0.06)
    assert mon.lag_s < 0.1

    asyncio.get_running_loop().call_soon(_block_loop, 0.25)
    await asyncio.sleep(0.03)
    assert mon.lag_s >= 0.2
    assert sup.stats()["loop_lag_s"] >= 0.2
    await sup.spawn(recorder([]))  # one spike (a GC pause, a model load) does not turn callers away

    for _ in range(4):  # sustained lag does
        asyncio.get_running_loop().call_soon(_block_loop, 0.25)
        await asyncio.sleep(0.03)
    assert mon.ewma_s > 0.1
    with pytest.raises(SupervisorFull, match="lag"):
        await sup.spawn(recorder([]))

    await asyncio.sleep(0.4)  # the load is gone: the smoothed lag decays
    assert mon.lag_s < 0.1 and mon.ewma_s < 0.1
    await sup.spawn(recorder([]))
    await mon.stop()
    assert not mon.running


async def test_get_or_spawn_is_race_free(make_sup) -> None:
    sup = make_sup()
    built: list[str] = []

    def factory(actor_id: str) -> Recorder:
        built.append(actor_id)
        return Recorder(actor_id, [])

    refs = await asyncio.gather(*(sup.get_or_spawn("same", factory) for _ in range(20)))
    assert len({id(r) for r in refs}) == 1 and built == ["same"]
    assert len(sup.directory) == 1 and sup.directory.get("same") is refs[0]
    with pytest.raises(ValueError):
        await sup.spawn(factory, "same")
    await refs[0].stop()
    again = await sup.get_or_spawn("same", factory)
    assert again is not refs[0] and again.alive and built == ["same", "same"]


async def test_respawned_id_starts_after_predecessor_stopped(make_sup) -> None:
    log: list[Any] = []
    sup = make_sup(policy(on_stop_timeout_s=1.0))

    class SlowStop(Recorder):
        async def on_stop(self, reason: StopReason, detail: str | None) -> None:
            await asyncio.sleep(0.1)
            self.log.append((self.actor_id, "stop", reason))

    old = await sup.spawn(lambda i: SlowStop(i, log), "p")
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(old.stop())
    await asyncio.sleep(0)
    new = await sup.get_or_spawn("p", recorder(log))
    assert new is not old
    await new.ask("hi", timeout=1)
    await stopping
    assert log.index(("p", "stop", StopReason.NORMAL)) < len(log) - 2  # old on_stop before new start
    assert log[-2:] == [("p", "start"), ("p", "handle", "hi")]
    assert sup.directory.get("p") is new


async def test_directory_indexes_by_id_and_kind() -> None:
    class Other(Recorder):
        kind = "test_other"

    sup = Supervisor(policy(), directory=Directory(), tick_s=0.02)
    r1 = await sup.spawn(recorder([]), "r1")
    r2 = await sup.spawn(recorder([]), "r2")
    o1 = await sup.spawn(lambda i: Other(i, []), "o1")
    d = sup.directory
    assert "r1" in d and len(d) == 3 and sorted(d.ids()) == ["o1", "r1", "r2"]
    assert set(d.by_kind("test_recorder")) == {r1, r2} and d.by_kind("test_other") == [o1]
    await r1.stop()
    assert d.get("r1") is None and d.by_kind("test_recorder") == [r2]
    await sup.shutdown(timeout=1.0)
    assert len(d) == 0 and d.by_kind("test_other") == []


async def test_shutdown_right_after_spawn_still_starts_and_drains() -> None:
    log: list[Any] = []
    sup = Supervisor(policy(), tick_s=0.02)
    ref = await sup.spawn(recorder(log), "fresh")
    ref.tell("queued before the actor task ever ran")
    await sup.shutdown(timeout=1.0)
    assert log == [
        ("fresh", "start"),
        ("fresh", "handle", "queued before the actor task ever ran"),
        ("fresh", "stop", StopReason.SHUTDOWN),
    ]
    stats = sup.stats()
    assert stats["live_actors"] == 0 and stats["shutting_down"] is True
