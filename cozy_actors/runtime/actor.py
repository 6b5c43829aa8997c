"""Actor base class and ActorRef, the stable handle transports hold.

Why: every live conversation keeps its state in exactly one asyncio task, so it needs no locks; the
ActorRef owns the mailbox and the task, so a crashed instance can be replaced by a fresh one (state
reloaded in on_start) without transports noticing or queued messages being lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from cozy_actors.observability.metrics import ACTOR_RESTARTS, ACTOR_STOPS, LIVE_ACTORS, labelled
from cozy_actors.runtime.mailbox import Mailbox, MailboxClosed, MailboxFull
from cozy_actors.runtime.stops import ActorCrashed, ActorStopped, AskTimeout, StopReason

if TYPE_CHECKING:
    from cozy_actors.runtime.supervisor import SupervisorPolicy

__all__ = ["Actor", "ActorRef"]

log = logging.getLogger("cozy.runtime")

# Lifecycle phases of an ActorRef's task (private; the idle timer and stop() look at them).
_NEW, _STARTING, _WAITING, _HANDLING, _STOPPING, _STOPPED = range(6)

_Envelope = tuple[Any, "asyncio.Future[Any] | None"]


def _fail(fut: asyncio.Future[Any] | None, exc: BaseException) -> None:
    """Fail an ask future unless its asker already gave up (timed-out futures are cancelled)."""
    if fut is not None and not fut.done():
        fut.set_exception(exc)
        fut.exception()  # mark retrieved: a vanished asker must not cause "exception never retrieved"


class Actor:
    """Subclass and implement handle(). One task processes one message at a time; state is only touched by that task."""

    kind: ClassVar[str] = "actor"

    def __init__(self, actor_id: str) -> None:
        """Cheap constructor: the factory runs again on every restart; load state in on_start()."""
        self.actor_id = actor_id
        self._ref: ActorRef | None = None

    @property
    def ref(self) -> ActorRef:
        """The stable handle, set by the supervisor before on_start (hand it out, not ``self``)."""
        if self._ref is None:
            raise RuntimeError(f"actor {self.actor_id!r} is not attached to a supervisor yet")
        return self._ref

    @ref.setter
    def ref(self, value: ActorRef) -> None:
        self._ref = value

    async def on_start(self) -> None:
        """Called at first start AND after every restart: reload persisted state here."""

    async def handle(self, message: Any) -> Any:
        """Process one message; the return value answers ask(), raising counts as a crash."""
        raise NotImplementedError

    async def on_stop(self, reason: StopReason, detail: str | None) -> None:
        """Last chance to emit a final event / flush; exceptions are logged and swallowed."""

    def touch(self) -> None:
        """Mark activity (e.g. a long turn in progress) so the idle timeout does not fire."""
        ref = getattr(self, "_ref", None)
        if ref is not None and ref._instance is self:
            ref._last_activity = time.monotonic()

    @property
    def busy(self) -> bool:
        """Subclasses return True while background work is in progress; the idle timer ignores busy actors."""
        return False


class ActorRef:
    """What transports hold: stable across restarts (the mailbox lives here, not in the actor instance).

    Built and started by the Supervisor only.
    """

    def __init__(
        self,
        instance: Actor,
        *,
        factory: Callable[[str], Actor],
        policy: SupervisorPolicy,
        on_finished: Callable[[ActorRef], None] | None = None,
    ) -> None:
        """Internal: the supervisor passes the first instance, the factory for restarts and the policy."""
        self.actor_id: str = instance.actor_id
        self.kind: str = instance.kind
        self._factory = factory
        self._policy = policy
        self._on_finished = on_finished
        self._mailbox = Mailbox(
            policy.mailbox_size,
            policy.overflow,
            kind=self.kind,
            on_drop=self._on_dropped,
            max_bytes=policy.mailbox_max_bytes,
        )
        self._instance = instance
        instance.ref = self
        self._restarts = 0
        self._crashes: deque[float] = deque()
        self._crash_detail: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._phase = _NEW
        self._current: _Envelope | None = None
        self._stop_request: tuple[StopReason, str | None] | None = None
        self._draining = False
        self._stop_cancelled = False
        self._hard_cancelled = False
        self._result: tuple[StopReason, str | None] | None = None
        self._stopped = asyncio.Event()
        self._stop_callbacks: list[Callable[[], None]] = []
        self._started_at = self._last_activity = time.monotonic()

    def __repr__(self) -> str:
        return f"<ActorRef {self.kind}:{self.actor_id}>"

    # ------------------------------------------------------------------ public API
    def tell(self, message: Any, *, control: bool = False, nbytes: int = 0) -> None:
        """Fire and forget; raises MailboxFull (backpressure) or ActorStopped, never blocks.
        ``nbytes``: the message's size on the wire, counted against the policy's mailbox_max_bytes."""
        try:
            self._mailbox.put((message, None), control=control, nbytes=nbytes)
        except MailboxClosed:
            raise ActorStopped(f"{self} is stopping or stopped") from None
        self._last_activity = time.monotonic()

    async def ask(self, message: Any, *, timeout: float, control: bool = False) -> Any:
        """Request/reply with a mandatory timeout, so a stuck actor can never hang its caller."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            self._mailbox.put((message, fut), control=control)
        except MailboxClosed:
            raise ActorStopped(f"{self} is stopping or stopped") from None
        self._last_activity = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                return fut.result()  # answered in the same tick the timer fired
            raise AskTimeout(f"{self} did not answer {type(message).__name__} within {timeout:g}s") from None

    async def stop(self, reason: StopReason = StopReason.NORMAL, detail: str | None = None) -> None:
        """Stop now: queued messages are discarded (their asks fail with ActorStopped), a message in
        progress is cancelled, then on_stop(reason, detail) runs. Called from inside the actor's own
        task (e.g. from handle()), it only requests the stop, which happens after the current message."""
        self._request_stop(reason, detail)
        if self._task is None or asyncio.current_task() is self._task:
            return
        await self.wait_stopped()

    async def wait_stopped(self) -> tuple[StopReason, str | None]:
        """Wait until the actor has fully stopped (on_stop done) and say why."""
        await self._stopped.wait()
        assert self._result is not None
        return self._result

    def add_stop_callback(self, callback: Callable[[], None]) -> None:
        """Call `callback()` exactly once when the actor has finished, however it ends (at once if it
        has already): what a quota lease or other per-actor slot is released by."""
        if self._result is not None:
            callback()
        else:
            self._stop_callbacks.append(callback)

    @property
    def alive(self) -> bool:
        """False as soon as a stop was requested (the id may then be spawned again)."""
        return self._stop_request is None and self._result is None

    @property
    def restarts(self) -> int:
        """Restarts after crashes so far."""
        return self._restarts

    @property
    def instance(self) -> Actor:
        """The current incarnation (tests and diagnostics)."""
        return self._instance

    # ------------------------------------------------------------------ supervisor hooks
    def _start(self, predecessor: ActorRef | None = None) -> None:
        """Create the actor task; a stopping predecessor with the same id is awaited first."""
        labelled(LIVE_ACTORS, self.kind).inc()
        name = f"actor:{self.kind}:{self.actor_id}"
        self._task = asyncio.get_running_loop().create_task(self._run(predecessor), name=name)
        self._task.add_done_callback(self._on_task_done)

    def _request_stop(self, reason: StopReason, detail: str | None, *, drain: bool = False) -> bool:
        """Close the mailbox; without ``drain`` also drop the queue and cancel work in progress."""
        if self._result is not None or self._stop_request is not None:
            return False
        self._stop_request = (reason, detail)
        self._draining = drain
        self._mailbox.close()
        if not drain:
            task = self._task
            cancel = task is not None and not task.done() and self._phase != _NEW and task is not asyncio.current_task()
            # From inside the actor the current message finishes normally and is still answered.
            self._fail_queued(include_current=cancel)
            if cancel:
                assert task is not None
                self._stop_cancelled = True
                task.cancel()
        return True

    def _cancel_for_stop(self, *, hard: bool) -> None:
        """Shutdown escalation: cancel what is running; ``hard`` also skips on_stop."""
        task = self._task
        if task is None or task.done():
            return
        if self._stop_request is None:
            self._stop_request = (StopReason.SHUTDOWN, "cancelled by supervisor")
        self._mailbox.close()
        self._fail_queued(include_current=True)
        self._stop_cancelled = True
        self._hard_cancelled = self._hard_cancelled or hard
        task.cancel()

    # ------------------------------------------------------------------ the actor task
    async def _run(self, predecessor: ActorRef | None) -> None:
        final: tuple[StopReason, str | None] = (StopReason.SHUTDOWN, "actor task cancelled")
        try:
            try:
                if self._stop_request is None or self._draining:
                    if predecessor is not None:
                        await self._await_predecessor(predecessor)
                    final = await self._main()
                else:  # stopped before the task ever ran: skip straight to on_stop
                    final = self._stop_request
            except asyncio.CancelledError:
                final = self._stop_request or final
                if not self._stop_cancelled or self._hard_cancelled:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # this cancel was our stop signal, not a request to die silently
            self._phase = _STOPPING
            await self._call_on_stop(*final)
        finally:
            self._finish(*final)

    async def _await_predecessor(self, predecessor: ActorRef) -> None:
        """Let the old incarnation flush in on_stop before this one reloads state in on_start."""
        if not await predecessor.stopped_within(self._policy.on_stop_timeout_s):
            log.warning("%s: predecessor did not stop in time; starting anyway", self)

    async def stopped_within(self, on_stop_timeout_s: float | None) -> bool:
        """Wait for this actor to have stopped, up to an on_stop timeout plus 1 s; False if not."""
        try:
            async with asyncio.timeout(None if on_stop_timeout_s is None else on_stop_timeout_s + 1.0):
                await self.wait_stopped()
        except TimeoutError:
            return False
        return True

    async def _main(self) -> tuple[StopReason, str | None]:
        self._phase = _STARTING
        try:
            await self._instance.on_start()
        except Exception as exc:
            log.exception("%s: on_start failed", self)
            if not await self._recover(exc):
                return self._crashed()
        mailbox = self._mailbox
        while True:
            self._phase = _WAITING
            try:
                envelope = await mailbox.get()
            except MailboxClosed:
                return self._stop_request or (StopReason.NORMAL, None)
            message, fut = envelope
            self._current = envelope
            self._phase = _HANDLING
            self._last_activity = time.monotonic()
            try:
                result = await self._instance.handle(message)
            except Exception as exc:
                self._current = None
                log.exception("%s crashed handling %s", self, type(message).__name__)
                crash = ActorCrashed(f"{self} crashed handling {type(message).__name__}: {exc!r}")
                crash.__cause__ = exc
                _fail(fut, crash)
                if self._stop_request is not None and not self._draining:
                    return self._stop_request
                if not await self._recover(exc):
                    return self._crashed()
            else:
                self._current = None
                if fut is not None and not fut.done():
                    fut.set_result(result)
            self._last_activity = time.monotonic()
            if self._stop_request is not None and not self._draining:
                return self._stop_request  # stop() was called from inside handle()

    async def _recover(self, exc: BaseException) -> bool:
        """One-for-one restart with exponential backoff; False once the restart budget is spent."""
        policy = self._policy
        while True:
            now = time.monotonic()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > policy.restart_window_s:
                self._crashes.popleft()
            n = len(self._crashes)
            if n > policy.max_restarts:
                self._crash_detail = (
                    f"restart budget spent: {n} crashes within {policy.restart_window_s:g}s "
                    f"(max_restarts={policy.max_restarts}); last error: {exc!r}"
                )
                return False
            self._phase = _STARTING
            await asyncio.sleep(min(policy.backoff_initial_s * 2 ** (n - 1), policy.backoff_max_s))
            try:
                instance = self._factory(self.actor_id)
                instance.ref = self
                self._instance = instance
                self._restarts += 1
                labelled(ACTOR_RESTARTS, self.kind).inc()
                await instance.on_start()
                return True
            except Exception as err:
                log.exception("%s: restart failed", self)
                exc = err

    def _crashed(self) -> tuple[StopReason, str | None]:
        """Budget spent: refuse and fail everything queued, report CRASHED."""
        request = (StopReason.CRASHED, self._crash_detail)
        self._stop_request = request
        self._mailbox.close()
        self._fail_queued(include_current=False)
        return request

    async def _call_on_stop(self, reason: StopReason, detail: str | None) -> None:
        try:
            async with asyncio.timeout(self._policy.on_stop_timeout_s):
                await self._instance.on_stop(reason, detail)
        except Exception:
            log.exception("%s: on_stop(%s) failed", self, reason.value)

    def _finish(self, reason: StopReason, detail: str | None) -> None:
        """Bookkeeping exactly once: metrics, directory (via on_finished), pending asks, waiters."""
        if self._result is not None:
            return
        self._result = (reason, detail)
        if self._stop_request is None:
            self._stop_request = self._result
        self._phase = _STOPPED
        self._mailbox.close()
        self._fail_queued(include_current=True)
        labelled(LIVE_ACTORS, self.kind).dec()
        labelled(ACTOR_STOPS, self.kind, reason.value).inc()
        if self._on_finished is not None:
            try:
                self._on_finished(self)
            except Exception:
                log.exception("%s: on_finished callback failed", self)
        callbacks, self._stop_callbacks = self._stop_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("%s: stop callback failed", self)
        self._stopped.set()
        # Ephemeral text turns stop NORMAL once per request: keep those out of the info log.
        level = logging.DEBUG if reason is StopReason.NORMAL else logging.INFO
        log.log(level, "%s stopped: %s (%s)", self, reason.value, detail)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """Safety net: a task cancelled before its first step never ran _run's finally."""
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: actor task failed", self, exc_info=task.exception())
        if self._result is None:
            self._finish(*(self._stop_request or (StopReason.SHUTDOWN, "actor task cancelled")))

    # ------------------------------------------------------------------ helpers
    def _fail_queued(self, *, include_current: bool) -> None:
        """Fail the asks that will never be handled (queued, or in progress when cancelled)."""
        envelopes = self._mailbox.drain_nowait()
        if include_current and self._current is not None:
            envelopes.insert(0, self._current)
            self._current = None
        for _message, fut in envelopes:
            if fut is not None:
                _fail(fut, ActorStopped(f"{self} stopped before answering"))

    def _on_dropped(self, envelope: _Envelope) -> None:
        """drop_oldest discarded this envelope: answer its asker now instead of letting it time out."""
        _fail(envelope[1], MailboxFull(f"{self}: message dropped, mailbox full (drop_oldest)"))
