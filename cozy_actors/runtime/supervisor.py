"""Supervisor: spawns actors, restarts crashed ones, enforces lifetimes, refuses work when full.

Why: a voice process must survive a bug in one conversation (one-for-one restart from persisted
state), must not let abandoned sessions live forever (max duration, idle timeout), must say "full"
clearly instead of degrading every live call (admission control), and must drain gracefully on
deploy so every client gets a final event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cozy_actors.runtime.actor import _WAITING, Actor, ActorRef
from cozy_actors.runtime.directory import Directory
from cozy_actors.runtime.loadmon import LoopLagMonitor
from cozy_actors.runtime.mailbox import OverflowPolicy
from cozy_actors.runtime.stops import StopReason

__all__ = ["Supervisor", "SupervisorFull", "SupervisorPolicy"]

log = logging.getLogger("cozy.runtime")

_TAKEOVER_POLL_S = 0.02  # spawn_replacing: how often a busy holder is checked for idleness


@dataclass
class SupervisorPolicy:
    """Per-actor lifecycle limits (admission limits are read from the policy passed to spawn)."""

    max_restarts: int = 3  # restart budget ...
    restart_window_s: float = 60.0  # ... within this window (one-for-one)
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0  # exponential backoff between restarts
    max_duration_s: float | None = 3600.0  # actor stopped with StopReason.MAX_DURATION
    idle_timeout_s: float | None = 300.0  # no message and not busy for this long -> IDLE_TIMEOUT
    mailbox_size: int = 256
    mailbox_max_bytes: int | None = None  # bound on the sizes tell(nbytes=...) declares; None: count only
    overflow: OverflowPolicy = "reject"
    max_actors: int | None = None  # admission control: spawn() raises SupervisorFull when reached
    max_loop_lag_s: float | None = None  # admission control: refuse spawns while loop lag exceeds this
    on_stop_timeout_s: float | None = 5.0  # on_stop may not hold a stop up for longer than this


class Releasable(Protocol):
    def release(self) -> None: ...


# Called only when a new actor is about to be built (not when get_or_spawn finds a live one): may
# raise to refuse it (a per-user quota); what it returns is released when that actor finishes.
LeaseFn = Callable[[], Releasable]


class SupervisorFull(RuntimeError):
    """spawn() refused: actor limit reached, event loop overloaded, or shutting down (message says which)."""


class Supervisor:
    """Owns a set of actors: one-for-one restarts, lifetime timers, admission control, graceful drain.

    One housekeeping task (every ``tick_s``) enforces max duration and idle timeout for all actors,
    so there is no timer per actor or per message.
    """

    def __init__(
        self,
        policy: SupervisorPolicy | None = None,
        *,
        directory: Directory | None = None,
        loadmon: LoopLagMonitor | None = None,
        tick_s: float = 0.25,
    ) -> None:
        """A directory or lag monitor may be shared; a monitor passed in is started but never stopped here."""
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self.policy = policy if policy is not None else SupervisorPolicy()
        self.directory = directory if directory is not None else Directory()
        self._owns_loadmon = loadmon is None
        self.loadmon = loadmon if loadmon is not None else LoopLagMonitor()
        self._tick_s = tick_s
        self._refs: set[ActorRef] = set()
        self._restarts_done = 0
        self._housekeeper: asyncio.Task[None] | None = None
        self._closing = False
        self._shutdown_done: asyncio.Event | None = None

    async def spawn(
        self,
        factory: Callable[[str], Actor],
        actor_id: str | None = None,
        *,
        policy: SupervisorPolicy | None = None,
        lease: LeaseFn | None = None,
    ) -> ActorRef:
        """Build ``factory(actor_id)`` and start it; returns at once (on_start runs in the actor task,
        messages sent meanwhile are queued). The factory is reused for every restart."""
        return self._spawn_now(factory, actor_id, policy, lease)

    async def get_or_spawn(
        self,
        actor_id: str,
        factory: Callable[[str], Actor],
        *,
        policy: SupervisorPolicy | None = None,
        lease: LeaseFn | None = None,
    ) -> ActorRef:
        """The live actor for ``actor_id``, spawning it if needed. Race-free: lookup and registration
        happen without yielding to the loop, so concurrent callers get the same ref."""
        existing = self.directory.get(actor_id)
        if existing is not None and existing.alive:
            return existing
        return self._spawn_now(factory, actor_id, policy, lease)

    def _spawn_now(
        self,
        factory: Callable[[str], Actor],
        actor_id: str | None,
        policy: SupervisorPolicy | None,
        lease: LeaseFn | None = None,
    ) -> ActorRef:
        """Synchronous on purpose: no await between the alive check and the registration."""
        effective = policy if policy is not None else self.policy
        self._admit(effective)
        actor_id = actor_id if actor_id is not None else uuid.uuid4().hex
        existing = self.directory.get(actor_id)
        if existing is not None and existing.alive:
            raise ValueError(f"actor {actor_id!r} is already alive")
        held = lease() if lease is not None else None
        try:
            instance = factory(actor_id)
            if not isinstance(instance, Actor):
                raise TypeError(f"factory returned {type(instance).__name__}, not an Actor")
            if instance.actor_id != actor_id:
                raise ValueError(f"factory built actor_id {instance.actor_id!r}, expected {actor_id!r}")
            ref = ActorRef(instance, factory=factory, policy=effective, on_finished=self._on_finished)
        except BaseException:
            if held is not None:
                held.release()
            raise
        if held is not None:
            ref.add_stop_callback(held.release)
        self.directory.register(ref)
        self._refs.add(ref)
        ref._start(predecessor=existing)  # a stopping namesake flushes before this one starts
        self._ensure_background()
        return ref

    def _admit(self, policy: SupervisorPolicy) -> None:
        """Refuse with a reason a client can be shown, rather than slowing every live session down."""
        if self._closing:
            raise SupervisorFull("supervisor is shutting down; not accepting new actors")
        if policy.max_actors is not None and len(self._refs) >= policy.max_actors:
            raise SupervisorFull(
                f"actor limit reached: {len(self._refs)} actors running (max_actors={policy.max_actors})"
            )
        if policy.max_loop_lag_s is not None:
            if not self.loadmon.running:
                self.loadmon.start()
            # Smoothed, not the worst recent probe: one GC pause or model load must not turn callers
            # away; sustained lag (the process really is full) must.
            lag = self.loadmon.ewma_s
            if lag > policy.max_loop_lag_s:
                raise SupervisorFull(
                    f"event loop overloaded: lag {lag * 1000:.0f} ms exceeds the "
                    f"{policy.max_loop_lag_s * 1000:.0f} ms admission limit"
                )

    def busy(self, ref: ActorRef) -> bool:
        """Alive and at work (a message, a turn, a response): not an actor evict_if_idle may stop."""
        return ref.alive and not _idle(ref)

    def evict_if_idle(self, ref: ActorRef, detail: str) -> bool:
        """Stop ``ref`` now (IDLE_TIMEOUT) if it is idle, as the idle timer would later; True if so.
        Lets a user's new conversation replace one of its idle ones instead of being refused."""
        if not ref.alive or not _idle(ref):
            return False
        return ref._request_stop(StopReason.IDLE_TIMEOUT, detail)

    async def spawn_replacing(
        self,
        actor_id: str,
        factory: Callable[[str], Actor],
        *,
        wait_s: float,
        detail: str,
        policy: SupervisorPolicy | None = None,
        lease: LeaseFn | None = None,
    ) -> ActorRef:
        """Spawn under ``actor_id``, taking the id over from the live actor that holds it (one actor
        per conversation): the holder is stopped (TAKEN_OVER) as soon as it is idle, work in
        progress gets up to ``wait_s`` to finish, then it is stopped anyway. The new actor is built
        once the old one's on_stop has run (its writes are flushed), so it loads what was stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            self._admit(policy if policy is not None else self.policy)  # refuse before stopping anything
            old = self.directory.get(actor_id)
            if old is None:
                return self._spawn_now(factory, actor_id, policy, lease)  # no await since the lookup
            if old.alive and not _idle(old) and loop.time() < deadline:
                await asyncio.sleep(_TAKEOVER_POLL_S)
                continue
            old._request_stop(StopReason.TAKEN_OVER, detail)
            if not await old.stopped_within(old._policy.on_stop_timeout_s):
                log.warning("%s: did not stop in time for its successor", old)
                return self._spawn_now(factory, actor_id, policy, lease)  # starts after it (predecessor)
            # Loop: something may have taken the id while the old one stopped; it is taken over too.

    def _ensure_background(self) -> None:
        if not self.loadmon.running:
            self.loadmon.start()
        if self._housekeeper is None or self._housekeeper.done():
            self._housekeeper = asyncio.get_running_loop().create_task(
                self._housekeeping(), name="supervisor-housekeeping"
            )

    async def _housekeeping(self) -> None:
        """One tick for all actors: max duration and idle timeout (scales to thousands of actors)."""
        while True:
            await asyncio.sleep(self._tick_s)
            now = time.monotonic()
            for ref in list(self._refs):
                try:
                    _check_timers(ref, now)
                except Exception:
                    log.exception("%s: timer check failed", ref)

    def _on_finished(self, ref: ActorRef) -> None:
        self._refs.discard(ref)
        self.directory.unregister(ref)
        self._restarts_done += ref.restarts

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Graceful drain within ``timeout``: refuse new spawns and messages, let each actor finish what
        is queued, on_stop(SHUTDOWN), then cancel what is left (still with on_stop, then hard).

        Budget: 75% draining, 20% for cancelled actors' on_stop, the rest for hard cancellation.
        Idempotent; concurrent callers all wait for the first shutdown.
        """
        if self._shutdown_done is not None:
            await self._shutdown_done.wait()
            return
        self._closing = True
        self._shutdown_done = done_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            if self._housekeeper is not None:
                self._housekeeper.cancel()
                await asyncio.wait([self._housekeeper], timeout=max(0.0, timeout * 0.05))
            refs = list(self._refs)
            for ref in refs:
                ref._request_stop(StopReason.SHUTDOWN, "supervisor shutdown", drain=True)
            tasks = {ref._task: ref for ref in refs if ref._task is not None}
            pending = await self._wait(set(tasks), start + timeout * 0.75)
            if pending:
                log.warning("shutdown: %d actor(s) did not drain in time; cancelling", len(pending))
                for task in pending:
                    tasks[task]._cancel_for_stop(hard=False)
                pending = await self._wait(pending, start + timeout * 0.95)
            if pending:
                log.warning("shutdown: %d actor(s) stuck in on_stop; hard cancel", len(pending))
                for task in pending:
                    tasks[task]._cancel_for_stop(hard=True)
                pending = await self._wait(pending, start + timeout)
            if pending:
                log.error("shutdown: %d actor task(s) ignore cancellation", len(pending))
        finally:
            if self._owns_loadmon:
                await self.loadmon.stop()
            done_event.set()

    @staticmethod
    async def _wait(tasks: set[asyncio.Task[None]], until: float) -> set[asyncio.Task[None]]:
        """Wait for ``tasks`` until the loop time ``until``; return those still running."""
        tasks = {t for t in tasks if not t.done()}
        remaining = until - asyncio.get_running_loop().time()
        if not tasks or remaining <= 0:
            return tasks
        _done, pending = await asyncio.wait(tasks, timeout=remaining)
        return pending

    def stats(self) -> dict[str, Any]:
        """Live actors, restarts total, loop lag: for /health and logs."""
        alive = [ref for ref in self._refs if ref.alive]
        return {
            "live_actors": len(alive),
            "stopping_actors": len(self._refs) - len(alive),
            "by_kind": dict(Counter(ref.kind for ref in alive)),
            "restarts_total": self._restarts_done + sum(ref.restarts for ref in self._refs),
            "loop_lag_s": self.loadmon.lag_s,
            "shutting_down": self._closing,
        }


def _idle(ref: ActorRef) -> bool:
    """Started, waiting for a message, nothing queued, no background work (a turn, a response)."""
    return ref._phase == _WAITING and not len(ref._mailbox) and not ref.instance.busy


def _check_timers(ref: ActorRef, now: float) -> None:
    """Housekeeping for one actor: max duration, then idle timeout (busy or working actors are not idle)."""
    if not ref.alive:
        return
    policy = ref._policy
    if policy.max_duration_s is not None and now - ref._started_at >= policy.max_duration_s:
        ref._request_stop(StopReason.MAX_DURATION, f"max duration of {policy.max_duration_s:g}s reached")
        return
    if policy.idle_timeout_s is None:
        return
    if ref._phase != _WAITING or len(ref._mailbox) or ref.instance.busy:
        ref._last_activity = now  # the idle countdown starts when the work ends
        return
    idle = now - ref._last_activity
    if idle >= policy.idle_timeout_s:
        ref._request_stop(StopReason.IDLE_TIMEOUT, f"idle for {idle:.2f}s (limit {policy.idle_timeout_s:g}s)")
