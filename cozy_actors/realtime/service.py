"""Opening a Realtime session: resolve personality/model/tools, spawn its actor under the
supervisor (admission control applies), resume stored history for a known session id.

A call for a stored session is *the* actor of that conversation in this process: it is registered
under the stored session id (the wire `session.id` stays `sess_...`), taking the id over from a
text conversation actor (stopped once idle; its history is stored) or from an earlier call of the
same conversation (a reconnect), so text turns of the conversation reach the call.

A call on a stored session owns it (DESIGN, Placement): it holds the session's "call" lease for
its whole duration and every write it makes carries the lease's token. A reconnect that lands on
another worker asks the old owner to end its call (broadcast `session.takeover`), then takes the
lease once let go, or once the old owner's heartbeat lapsed (it died)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from cozy_actors.auth.principal import Principal
from cozy_actors.config import AppConfig
from cozy_actors.config.limits import RealtimeLimitsConfig
from cozy_actors.conversation.actor import SessionBusy
from cozy_actors.conversation.resolve import resolve
from cozy_actors.engines.llm.router import LLMRouter
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.personalities import PersonalityStore
from cozy_actors.placement import Lease, OwnedElsewhere
from cozy_actors.quotas import Quotas, ServerFull, get_quotas
from cozy_actors.runtime import ActorRef, StopReason, Supervisor, SupervisorFull
from cozy_actors.storage import ConversationStore
from cozy_core.errors import CozyError
from cozy_media.audio import echo
from cozy_media.workers import get_pool

from .actor import RealtimeActor
from .config import SessionConfig
from .interruption import interruption_policy
from .persist import SessionWriter, WritePolicy
from .response import Emit
from .session import RealtimeDeps

TAKEOVER_WAIT_S = 10.0  # a text turn in progress gets this long to finish before a call takes over


class RealtimeService:
    def __init__(
        self,
        *,
        app: AppConfig,
        supervisor: Supervisor,
        personalities: PersonalityStore,
        llms: LLMRouter,
        catalog: ToolCatalog,
        store: ConversationStore,
        speech: Any = None,
        speech_lead_ms: float = 200.0,
        context: Any = None,
        limits: RealtimeLimitsConfig | None = None,
        quotas: Quotas | None = None,
        checkpoints: Any = None,
        write_policy: WritePolicy | None = None,
        placement: Any = None,
        broadcast: Any = None,
    ) -> None:
        self.app = app
        self.placement = placement  # Placement: the call's lease; None: this process only
        self.broadcast = broadcast  # Broadcaster: asks another worker to end its call (takeover)
        self.quotas = quotas if quotas is not None else get_quotas()
        self.supervisor = supervisor
        self.personalities = personalities
        self.llms = llms
        self.catalog = catalog
        self._owners: dict[ActorRef, tuple[str | None, str | None]] = {}  # live session -> (user, key)
        self._stored: dict[ActorRef, str] = {}  # live session -> the stored session it appends to
        self._stopping: set[asyncio.Task[None]] = set()
        self.deps = RealtimeDeps(
            catalog=catalog,
            store=store,
            llms=llms,
            max_tool_iterations=app.turn.max_tool_iterations,
            tool_timeout_s=app.turn.tool_timeout_s,
            llm_timeout_s=app.turn.llm_timeout_s,
            speech=speech,
            speech_lead_ms=speech_lead_ms,
            context=context,
            limits=limits or RealtimeLimitsConfig(),
            checkpoints=checkpoints,
            write_policy=write_policy or WritePolicy(),
        )
        # Each connection's mailbox is bounded in bytes too (the transport says each event's size).
        self.policy = dataclasses.replace(supervisor.policy, mailbox_max_bytes=self.deps.limits.max_queued_bytes)

    async def open(
        self,
        emit: Emit,
        *,
        model: str | None,
        personality_id: str | None,
        session_id: str | None,
        allowed_tools: list[str] | None = None,
        user_id: str | None = None,
        key_id: str | None = None,
        principal: Principal | None = None,
        config: dict[str, Any] | None = None,
        interruption: dict[str, Any] | None = None,
        echo_cancellation: str | None = None,
        server_playback: bool = False,
    ) -> ActorRef:
        """Start a session actor; raises CozyError (404 personality, 429 over the caller's
        realtime_sessions_per_user, WebRTC calls included; 503 at capacity). `config`: the GA
        session it starts with (an ephemeral key's, a WebRTC call's), announced in session.created.
        `echo_cancellation` ("on"/"off"/"auto", None: the personality's) and `server_playback` (a
        WebRTC call: the server plays the reply) decide whether the input's echo is cancelled."""
        if echo_cancellation not in (None, "on", "off", "auto"):
            raise CozyError(
                f"cozy_echo_cancellation must be on, off or auto, not {echo_cancellation!r}",
                code="VALIDATION_ERROR",
                param="cozy_echo_cancellation",
            )
        backlog, limit = get_pool().pending, self.app.sessions.max_pool_backlog
        if self.deps.speech is not None and limit is not None and backlog >= limit:
            raise ServerFull(
                f"server is at capacity: {backlog} inference jobs queued (limit {limit}); retry shortly",
                self.app.quotas.retry_after_s,
            )
        owner = self.quotas.owner(principal)
        self.quotas.acquire_for("realtime_sessions", owner).release()  # refuse early, before any lookup
        resolved = await resolve(
            self.personalities,
            self.llms,
            self.catalog,
            personality_id=personality_id,
            model=model,
            allowed_tools=allowed_tools,
            param="cozy_personality_id",
        )
        if session_id is not None:
            # Resuming is only for the session's owner (someone else's id is a 404); a new id is created.
            await self.deps.store.claim(session_id, user_id, resolved.personality.id)
        memo: dict[str, Any] = {"user_id": user_id}  # who the session is for (audit of its tool calls)
        if interruption:  # the connection's own settings over the personality's (400 names a bad one)
            memo["interruption"] = interruption_policy(resolved.personality.interruption, interruption)
        echo_mode = echo_cancellation or resolved.personality.voice.echo_cancellation
        memo["echo_cancellation"] = _echo_on(echo_mode, server_playback)
        if config is not None:
            memo["config"] = SessionConfig(model=resolved.model).merged(config)  # 400 names a bad field
        lease: Lease | None = None
        if session_id is not None and self.placement is not None:
            lease = await self._take_call(session_id)
            writer = SessionWriter(
                self.deps.store, session_id, resolved.personality.id, self.deps.write_policy, fence=lease.token
            )
            memo["writer"] = writer  # the session's writer (SessionWriter.of finds it), fenced by the lease
        incarnations = 0

        def factory(actor_id: str) -> RealtimeActor:
            nonlocal incarnations
            incarnations += 1
            return RealtimeActor(
                actor_id,
                resolved=resolved,
                deps=self.deps,
                emit=emit,
                persist_id=session_id,
                history_limit=resolved.personality.memory.max_history_messages,
                restarted=incarnations > 1,
                memo=memo,
                wire_id=wire_id,
            )

        wire_id = f"sess_{uuid.uuid4().hex[:24]}"
        quota = lambda: self.quotas.acquire_for("realtime_sessions", owner)  # noqa: E731 - released when it ends
        try:
            if session_id is None:
                ref = await self.supervisor.spawn(factory, wire_id, policy=self.policy, lease=quota)
            else:
                holder = self.supervisor.directory.get(session_id)
                ref = await self.supervisor.spawn_replacing(
                    session_id,
                    factory,
                    # An earlier call of the conversation (a reconnect) is taken over at once; a text
                    # turn in progress is let finish first.
                    wait_s=0.0 if holder is not None and holder.kind == RealtimeActor.kind else TAKEOVER_WAIT_S,
                    detail=f"a call ({wire_id}) took the conversation over",
                    policy=self.policy,
                    lease=quota,
                )
        except BaseException as exc:
            if lease is not None:
                self.placement.release_later(lease)
            if isinstance(exc, SupervisorFull):
                raise ServerFull(f"server is at capacity: {exc}", self.app.quotas.retry_after_s) from exc
            raise
        if lease is not None:
            held = lease
            memo["writer"].on_lost = lambda: self._stop(ref, StopReason.TAKEN_OVER, "session taken over")
            ref.add_stop_callback(lambda: self.placement.release_later(held))  # after its last writes
        for old in [r for r in self._owners if not r.alive]:
            del self._owners[old]
            self._stored.pop(old, None)
        self._owners[ref] = (user_id, key_id)
        if session_id is not None:
            self._stored[ref] = session_id
        return ref

    async def _take_call(self, session_id: str) -> Lease:
        """The session's "call" lease. This worker's own earlier call of it ends first (its last
        writes flush); a call on another live worker is asked to end (`session.takeover`) and the
        lease is retried until ttl_s + 1 s (a dead owner's lease lapses within ttl_s); then 409."""
        loop = asyncio.get_running_loop()
        holder = self.supervisor.directory.get(session_id)
        if holder is not None and holder.kind != RealtimeActor.kind:
            # A text turn of this conversation in progress here stores its reply under its own lease
            # first (bounded); spawn_replacing then stops the idle text actor.
            until = loop.time() + TAKEOVER_WAIT_S
            while holder.alive and holder.instance.busy and loop.time() < until:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.05)
        local = [r for r, sid in self._stored.items() if sid == session_id]
        for ref in local:
            if ref.alive:
                self._stop(ref, StopReason.TAKEN_OVER, "session taken over")
        if local:
            bound = self.deps.write_policy.flush_on_stop_s + 2.0
            _, late = await asyncio.wait([asyncio.ensure_future(r.wait_stopped()) for r in local], timeout=bound)
            for waiter in late:
                waiter.cancel()
        deadline = loop.time() + self.placement.ttl_s + 1.0
        asked = False
        while True:
            try:
                return await self.placement.acquire(session_id, "call")  # type: ignore[no-any-return]
            except OwnedElsewhere as exc:
                if exc.owner.kind == "call" and not asked and self.broadcast is not None:
                    await self.broadcast.publish("session.takeover", {"session_id": session_id})
                    asked = True
                if loop.time() >= deadline:
                    raise SessionBusy(session_id) from exc
            await asyncio.sleep(0.1)

    async def on_takeover(self, data: dict[str, Any] | None) -> None:
        """Broadcast handler: a connection on another worker takes this session over; our call of
        it ends (`session_taken_over`) and its lease is released once its last writes are stored."""
        if data and isinstance(data.get("session_id"), str):
            for ref in [r for r, sid in self._stored.items() if sid == data["session_id"] and r.alive]:
                self._stop(ref, StopReason.TAKEN_OVER, "session taken over")

    def end_stored_session(self, session_id: str) -> int:
        """The stored session was deleted: end every live session appending to it, each with an
        `error` event (`session_deleted`). Returns how many were told to stop."""
        refs = [r for r, sid in self._stored.items() if sid == session_id and r.alive]
        for ref in refs:
            self._stop(ref, StopReason.DELETED, "session deleted")
        return len(refs)

    def _stop(self, ref: ActorRef, reason: StopReason, detail: str) -> None:
        task = asyncio.create_task(ref.stop(reason, detail))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def end_sessions(self, *, user_id: str | None = None, key_id: str | None = None) -> int:
        """End the live sessions opened by `user_id` (any credential) or with API key `key_id`:
        a revoked key or a disabled user must not keep talking. Returns how many were told to stop."""
        ended = 0
        for ref, (owner, key) in list(self._owners.items()):
            if not ref.alive:
                del self._owners[ref]
                self._stored.pop(ref, None)
            elif (user_id is not None and owner == user_id) or (key_id is not None and key == key_id):
                self._stop(ref, StopReason.REVOKED, "credentials revoked")
                ended += 1
        return ended


def _echo_on(mode: str, server_playback: bool) -> bool:
    """Echo cancellation for this session? "auto": only where the server owns playback (WebRTC)."""
    wanted = mode == "on" or (mode == "auto" and server_playback)
    if wanted and not echo.available():
        if mode == "on":
            raise CozyError(
                "echo cancellation is not available: the livekit wheel is not installed",
                code="VALIDATION_ERROR",
                param="cozy_echo_cancellation",
            )
        return False
    return wanted
