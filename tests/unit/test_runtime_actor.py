"""Actor lifecycle: crash/restart with state reload, restart budget, backoff, asks, mailbox policies."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from cozy_actors.runtime import (
    Actor,
    ActorCrashed,
    ActorStopped,
    AskTimeout,
    MailboxClosed,
    MailboxFull,
    StopReason,
    Supervisor,
    SupervisorPolicy,
)

FAST = SupervisorPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, max_duration_s=None, idle_timeout_s=None)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def make_sup() -> AsyncIterator[Callable[..., Supervisor]]:
    sups: list[Supervisor] = []

    def make(policy: SupervisorPolicy | None = None, **kw: Any) -> Supervisor:
        sup = Supervisor(policy or FAST, tick_s=0.02, **kw)
        sups.append(sup)
        return sup

    yield make
    for sup in sups:
        await sup.shutdown(timeout=1.0)


class CounterActor(Actor):
    """Persists its counter to an external store so a restarted instance can reload it."""

    kind = "test_counter"

    def __init__(self, actor_id: str, store: dict[str, Any], events: list[Any]) -> None:
        super().__init__(actor_id)
        self.store = store
        self.events = events
        self.count = 0
        self.entered = asyncio.Event()

    async def on_start(self) -> None:
        self.count = self.store.get(self.actor_id, 0)
        self.events.append(("start", self.count, time.monotonic()))

    async def handle(self, message: Any) -> Any:
        self.events.append(("handle", message))
        if message == "inc":
            self.count += 1
            self.store[self.actor_id] = self.count
            return self.count
        if message == "get":
            return self.count
        if message == "boom":
            self.events.append(("crash", time.monotonic()))
            raise ValueError("boom")
        if message == "quit":
            await self.ref.stop(StopReason.NORMAL, "bye")
            return "ok"
        if isinstance(message, tuple) and message[0] == "wait":
            self.entered.set()
            await message[1].wait()
            return "released"
        if isinstance(message, tuple) and message[0] == "sleep":
            await asyncio.sleep(message[1])
            if len(message) > 2:
                raise RuntimeError("late crash")
            return "slept"
        return message

    async def on_stop(self, reason: StopReason, detail: str | None) -> None:
        self.events.append(("stop", reason, detail))


def counter_factory(store: dict[str, Any], events: list[Any]) -> Callable[[str], CounterActor]:
    return lambda actor_id: CounterActor(actor_id, store, events)


async def block(ref: Any) -> tuple[asyncio.Event, asyncio.Task[Any]]:
    """Park the actor inside a handler so that later messages queue up."""
    gate = asyncio.Event()
    waiter = asyncio.create_task(ref.ask(("wait", gate), timeout=5))
    await asyncio.wait_for(ref.instance.entered.wait(), 1)
    return gate, waiter


async def test_crash_restarts_with_state_reloaded_and_keeps_queued_messages(make_sup) -> None:
    store: dict[str, Any] = {}
    events: list[Any] = []
    sup = make_sup()
    restarts_before = sample("cozy_actor_restarts_total", kind="test_counter")
    ref = await sup.spawn(counter_factory(store, events), "c1")
    for expected in (1, 2, 3):
        assert await ref.ask("inc", timeout=1) == expected
    old = ref.instance

    gate, waiter = await block(ref)
    boom = asyncio.create_task(ref.ask("boom", timeout=2))
    await asyncio.sleep(0)
    ref.tell("inc")  # queued behind the crashing message
    after = asyncio.create_task(ref.ask("get", timeout=2))
    await asyncio.sleep(0)
    gate.set()

    assert await waiter == "released"
    with pytest.raises(ActorCrashed) as info:
        await boom
    assert isinstance(info.value.__cause__, ValueError)
    assert await after == 4  # 3 reloaded from the store, then the queued "inc"
    assert ref.instance is not old
    assert ref.restarts == 1
    assert ("start", 3) in [e[:2] for e in events]
    assert sample("cozy_actor_restarts_total", kind="test_counter") == restarts_before + 1
    assert ref.alive and "c1" in sup.directory
    assert sup.stats()["restarts_total"] == 1


async def test_restart_budget_spent_stops_with_crashed(make_sup) -> None:
    events: list[Any] = []
    policy = SupervisorPolicy(
        max_restarts=2,
        restart_window_s=10,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
        max_duration_s=None,
        idle_timeout_s=None,
    )
    sup = make_sup(policy)
    stops_before = sample("cozy_actor_stops_total", kind="test_counter", reason="crashed")
    live_before = sample("cozy_live_actors", kind="test_counter")
    ref = await sup.spawn(counter_factory({}, events), "c2")
    for _ in range(2):
        with pytest.raises(ActorCrashed):
            await ref.ask("boom", timeout=1)
        await ref.ask("get", timeout=1)  # served by the restarted instance
    assert ref.restarts == 2
    last = asyncio.create_task(ref.ask("boom", timeout=1))
    behind = asyncio.create_task(ref.ask("get", timeout=1))
    with pytest.raises(ActorCrashed):
        await last
    with pytest.raises(ActorStopped):
        await behind
    reason, detail = await asyncio.wait_for(ref.wait_stopped(), 1)
    assert reason is StopReason.CRASHED
    assert detail is not None and "restart budget" in detail
    assert events[-1][:2] == ("stop", StopReason.CRASHED)
    assert "c2" not in sup.directory and not ref.alive
    with pytest.raises(ActorStopped):
        ref.tell("inc")
    with pytest.raises(MailboxClosed):  # ActorStopped is a MailboxClosed
        await ref.ask("get", timeout=1)
    assert sample("cozy_actor_stops_total", kind="test_counter", reason="crashed") == stops_before + 1
    assert sample("cozy_live_actors", kind="test_counter") == live_before


async def test_backoff_grows_between_restarts_and_is_capped(make_sup) -> None:
    events: list[Any] = []
    policy = SupervisorPolicy(
        max_restarts=5, backoff_initial_s=0.1, backoff_max_s=0.25, max_duration_s=None, idle_timeout_s=None
    )
    sup = make_sup(policy)
    ref = await sup.spawn(counter_factory({}, events), "c3")
    await ref.ask("get", timeout=1)
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(ActorCrashed):
            await ref.ask("boom", timeout=2)
        assert time.monotonic() - t0 < 0.08  # the asker is answered at once, not after the backoff
        await ref.ask("get", timeout=2)  # waits for the restart
    crashes = [e[1] for e in events if e[0] == "crash"]
    starts = [e[2] for e in events if e[0] == "start"][1:]
    delays = [s - c for c, s in zip(crashes, starts, strict=True)]
    assert delays[0] >= 0.09
    assert delays[1] >= 0.19 and delays[1] > delays[0]
    assert 0.24 <= delays[2] < 0.35  # 0.4 capped to backoff_max_s
    assert ref.restarts == 3


async def test_on_start_failure_counts_as_crash(make_sup) -> None:
    attempts: list[int] = []

    class Flaky(Actor):
        kind = "test_flaky"

        async def on_start(self) -> None:
            attempts.append(1)
            if len(attempts) < 3:
                raise OSError("storage not ready")

        async def handle(self, message: Any) -> Any:
            return ("ok", message)

    sup = make_sup()
    ref = await sup.spawn(Flaky, "f1")
    assert await ref.ask("x", timeout=1) == ("ok", "x")  # queued while on_start kept failing
    assert len(attempts) == 3 and ref.restarts == 2


async def test_ask_timeout_is_clean_and_late_replies_are_harmless(make_sup, caplog) -> None:
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    caplog.set_level(logging.DEBUG)
    sup = make_sup()
    ref = await sup.spawn(counter_factory({}, []), "c4")

    with pytest.raises(AskTimeout) as info:
        await ref.ask(("sleep", 0.15), timeout=0.03)
    assert isinstance(info.value, asyncio.TimeoutError)
    with pytest.raises(AskTimeout):
        await ref.ask(("sleep", 0.1, "crash"), timeout=0.03)  # handler crashes after the asker left
    assert await ref.ask("inc", timeout=2) == 1  # still working (after a restart for the late crash)
    assert ref.restarts == 1
    gc.collect()
    await asyncio.sleep(0.02)
    assert loop_errors == []
    text = caplog.text
    assert "never retrieved" not in text and "InvalidStateError" not in text


async def test_reject_policy_raises_on_tell_and_counts(make_sup) -> None:
    events: list[Any] = []
    policy = SupervisorPolicy(mailbox_size=3, overflow="reject", max_duration_s=None, idle_timeout_s=None)
    ref = await make_sup(policy).spawn(counter_factory({}, events), "m1")
    before = sample("cozy_mailbox_rejected_total", kind="test_counter", lane="data")
    gate, waiter = await block(ref)
    for i in range(3):
        ref.tell(("d", i))
    with pytest.raises(MailboxFull):
        ref.tell(("d", 3))
    with pytest.raises(MailboxFull):
        await ref.ask(("d", 4), timeout=1)
    assert sample("cozy_mailbox_rejected_total", kind="test_counter", lane="data") == before + 2
    gate.set()
    await waiter
    await ref.ask("get", timeout=1)
    assert [e[1] for e in events if e[0] == "handle" and e[1][0] == "d"] == [("d", 0), ("d", 1), ("d", 2)]


async def test_drop_oldest_policy_drops_oldest_data(make_sup) -> None:
    events: list[Any] = []
    policy = SupervisorPolicy(mailbox_size=3, overflow="drop_oldest", max_duration_s=None, idle_timeout_s=None)
    ref = await make_sup(policy).spawn(counter_factory({}, events), "m2")
    before = sample("cozy_mailbox_rejected_total", kind="test_counter", lane="data")
    gate, waiter = await block(ref)
    dropped_ask = asyncio.create_task(ref.ask(("d", 0), timeout=5))
    await asyncio.sleep(0)
    for i in range(1, 6):
        ref.tell(("d", i))
    with pytest.raises(MailboxFull):  # the dropped ask is answered at once, not left to time out
        await asyncio.wait_for(dropped_ask, 0.5)
    assert sample("cozy_mailbox_rejected_total", kind="test_counter", lane="data") == before + 3
    gate.set()
    await waiter
    await ref.ask("get", timeout=1)
    assert [e[1] for e in events if e[0] == "handle" and e[1][0] == "d"] == [("d", 3), ("d", 4), ("d", 5)]


async def test_control_message_overtakes_queued_data(make_sup) -> None:
    events: list[Any] = []
    ref = await make_sup().spawn(counter_factory({}, events), "m3")
    gate, waiter = await block(ref)
    for i in range(10):
        ref.tell(("d", i))
    ref.tell(("interrupt", 0), control=True)
    gate.set()
    await waiter
    await ref.ask("get", timeout=1)
    handled = [e[1] for e in events if e[0] == "handle" and e[1][0] in ("d", "interrupt")]
    assert handled == [("interrupt", 0)] + [("d", i) for i in range(10)]


async def test_stop_from_inside_handler_answers_current_message(make_sup) -> None:
    events: list[Any] = []
    ref = await make_sup().spawn(counter_factory({}, events), "s1")
    gate, waiter = await block(ref)
    quit_ask = asyncio.create_task(ref.ask("quit", timeout=1))
    behind = asyncio.create_task(ref.ask("get", timeout=1))
    await asyncio.sleep(0)
    gate.set()
    assert await waiter == "released"
    assert await quit_ask == "ok"
    with pytest.raises(ActorStopped):
        await behind
    assert await asyncio.wait_for(ref.wait_stopped(), 1) == (StopReason.NORMAL, "bye")
    assert events[-1] == ("stop", StopReason.NORMAL, "bye")


async def test_external_stop_cancels_message_in_progress(make_sup) -> None:
    events: list[Any] = []
    ref = await make_sup().spawn(counter_factory({}, events), "s2")
    _gate, waiter = await block(ref)  # never released: stop() must cancel it
    queued = asyncio.create_task(ref.ask("get", timeout=2))
    await asyncio.sleep(0)
    await asyncio.wait_for(ref.stop(StopReason.NORMAL, "client left"), 1)
    for task in (waiter, queued):
        with pytest.raises(ActorStopped):
            await task
    assert events[-1] == ("stop", StopReason.NORMAL, "client left")
    assert await ref.wait_stopped() == (StopReason.NORMAL, "client left")
    await ref.stop()  # idempotent
