"""ConversationActor: one live conversation. It owns the history and the running turn.

Text mode today (each chat completion is one turn); voice will add the audio pipeline to the
same actor. Only the actor's own task touches `history` and `_turn`; the turn runs as a separate
task so control messages (cancel) are handled while it streams.

Across workers (DESIGN, Placement): each stateful turn takes the conversation's "turn" lease,
reloads the history when the lease shows a version (message count) other than the one this actor
last saw (another worker answered meanwhile), writes the user's words and the reply fenced by the
lease's token, and lets go with the reply's write. An idle conversation holds no lease.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cozy_actors.context.base import TurnRecord
from cozy_actors.engines.llm.base import LLMEngine
from cozy_actors.engines.tools.audit import ToolCaller
from cozy_actors.engines.tools.base import Tool, ToolCatalog
from cozy_actors.observability.metrics import LEASE_LOST
from cozy_actors.personalities import Personality
from cozy_actors.placement import Lease, LeaseLost, OwnedElsewhere
from cozy_actors.runtime import Actor, StopReason
from cozy_actors.storage import ConversationStore
from cozy_actors.storage.base import MessageMeta
from cozy_core.errors import CozyError, NotFound

from .events import TurnFailed
from .handle import CancelTurn, TurnFinished, TurnHandle
from .history import recent_history
from .turn import Turn, TurnSpec

log = logging.getLogger("cozy.conversation")


@dataclass
class TurnRequest:
    """A turn resolved by the chat service: which personality, model, tools and new messages."""

    personality: Personality
    engine: LLMEngine
    model: str
    messages: list[dict[str, Any]]
    server_tools: dict[str, Tool] = field(default_factory=dict)
    client_tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    temperature: float | None = None
    max_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    mode: str = "text"
    user_id: str | None = None  # who asked (audit of tool calls)
    user_name: str | None = None
    request_id: str | None = None
    use_personalization: bool = True
    quota_owner: str | None = None  # counted against llm_queue_per_user on a single-lane model


@dataclass
class StartTurn:
    request: TurnRequest


@dataclass
class ConversationDeps:
    catalog: ToolCatalog
    store: ConversationStore
    max_history_messages: int = 200
    max_tool_iterations: int = 10
    tool_timeout_s: float = 10.0
    llm_timeout_s: float = 120.0
    audit: Any = None  # an AuditLog (server tool calls are audited by the catalog, see TurnSpec.caller)
    context: Any = None  # a ContextService (personalization); None: off
    checkpoints: Any = None  # TurnCheckpoints: a reply cut off by a crash is still stored (incomplete)
    placement: Any = None  # Placement: one owner per conversation across workers; None: this process only


class SessionBusy(CozyError):
    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session {session_id} is already answering a request; retry when it has finished",
            code="RESOURCE_SESSION_BUSY",
            status=409,
        )


class ConversationActor(Actor):
    kind = "conversation"

    def __init__(self, actor_id: str, deps: ConversationDeps, *, session_id: str | None) -> None:
        super().__init__(actor_id)
        self.deps = deps
        self.session_id = session_id  # None: an ephemeral, stateless conversation (one turn)
        self.personality_id: str | None = None
        self.history: deque[dict[str, Any]] = deque(maxlen=deps.max_history_messages)
        self._handle: TurnHandle | None = None  # the running turn, until its TurnFinished arrives
        self._learn: TurnRecord | None = None  # the running turn's input, for memory/profile after it
        self.version: int | None = None  # the session's message count our history reflects (None: unknown)
        self._lease: Lease | None = None  # held for the running turn only

    @property
    def busy(self) -> bool:
        return self._handle is not None

    async def on_start(self) -> None:
        if self.session_id is None or self.deps.placement is not None:
            return  # with placement, the first turn's lease says whether there is history to load
        await self._load()

    async def _load(self) -> None:
        assert self.session_id is not None
        stored = await self.deps.store.load(self.session_id, limit=self.deps.max_history_messages)
        self.history.clear()
        if stored is not None:
            self.personality_id = stored.personality_id
            self.history.extend(stored.messages)
        self.version = stored.version if stored is not None else 0

    async def _take_lease(self, new: list[dict[str, Any]]) -> CozyError | bool:
        """The turn's lease, and a history as fresh as the store's: True when the user's words
        `new` were stored with it (one statement), False when they are still to be written (the
        turn rides on this worker's call lease); an error to answer with otherwise."""
        assert self.session_id is not None
        try:
            self._lease = lease = await self.deps.placement.acquire(self.session_id, "turn", append=new)
        except OwnedElsewhere as exc:
            # A call elsewhere: the edge forwards the turn there. Another worker's turn: busy (409).
            return SessionBusy(self.session_id) if exc.owner.kind == "turn" else exc
        except CozyError as exc:
            return exc
        stored = lease.kind == "turn"
        if lease.version != self.version:
            if lease.version == 0:
                self.history.clear()
            else:
                try:
                    await self._load()  # another worker answered since: reload before building the prompt
                except CozyError as exc:
                    await self._let_go()
                    return exc
                for _ in range(len(new) if stored else 0):
                    if self.history:
                        self.history.pop()  # the user's words just stored: added below, as on every turn
        self.version = lease.version + len(new) if stored else lease.version
        return stored

    @property
    def _fence(self) -> int | None:
        return self._lease.token if self._lease is not None else None

    @property
    def _release(self) -> bool:
        """A lease of our own is dropped with the reply; a call's lease (ridden by a turn on the
        call's worker) is the call's to release."""
        return self._lease is not None and self._lease.kind == "turn"

    async def _let_go(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None and lease.kind == "turn":
            try:
                await self.deps.placement.release(lease)
            except CozyError:
                log.warning("turn lease not released (it lapses)", extra={"session_id": self.session_id})

    async def handle(self, message: Any) -> Any:
        if isinstance(message, StartTurn):
            return await self._start_turn(message.request)
        if isinstance(message, CancelTurn):
            if self._handle is not None and self._handle.turn_id == message.turn_id:
                self._handle.cancel(message.reason)
            return None
        if isinstance(message, TurnFinished):
            if self._handle is None or self._handle.turn_id != message.turn_id:
                return None  # a turn from before a restart: its messages were never ours to keep
            self.history.extend(message.new_messages)
            if self.session_id is not None:
                await self._persist_turn(message)
                await self._let_go()  # released by the reply's write already; this covers a failed one
            learn, self._learn = self._learn, None
            if learn is not None and message.new_messages and not message.incomplete:
                learn.messages.extend(message.new_messages)
                await self.deps.context.after_turn(learn)  # queued or detached: never delays anything
            self._handle = None
            if self.session_id is None:
                await self.ref.stop(StopReason.NORMAL, "turn finished")
            return None
        raise TypeError(f"unexpected message {type(message).__name__}")

    async def _start_turn(self, req: TurnRequest) -> TurnHandle | CozyError:
        if self.busy:
            return SessionBusy(self.session_id or self.actor_id)
        self.personality_id = req.personality.id
        self.touch()
        new = [_clean(m) for m in req.messages]
        if self.session_id is not None:
            # The user's words are stored before the model is called: a failed turn never loses them,
            # and a store that cannot take them refuses the turn (the client sees STORAGE_*). With
            # placement they are stored by the statement that takes the turn's lease.
            stored = await self._take_lease(new) if self.deps.placement is not None else False
            if isinstance(stored, CozyError):
                return stored
            try:
                if not stored:
                    self.version = await self.deps.store.append(
                        self.session_id, req.personality.id, new, fence=self._fence
                    )
            except CozyError as exc:
                self.version = None
                await self._let_go()
                return exc
        prompt = self._prompt(req.personality, new)
        self.history.extend(new)
        spec = TurnSpec(
            engine=req.engine,
            model=req.model,
            messages=prompt,
            server_tools=req.server_tools,
            client_tools=req.client_tools,
            tool_choice=req.tool_choice,
            temperature=req.temperature,
            max_tokens=req.max_tokens,
            extra=req.extra,
            max_tool_iterations=self.deps.max_tool_iterations,
            tool_timeout_s=self.deps.tool_timeout_s,
            llm_timeout_s=self.deps.llm_timeout_s,
            caller=ToolCaller(req.user_id, req.user_name, req.request_id, self.session_id, "text"),
            quota_owner=req.quota_owner,
        )
        ctx = self.deps.context
        self._learn = None
        if ctx is not None and ctx.applies(req.personality, req.use_personalization):
            past = prompt[1 : len(prompt) - len(new)]
            spec.prepare = functools.partial(self._with_context, req, past, new)
            if req.user_id:
                self._learn = TurnRecord(req.user_id, req.personality.id, list(new), session_id=self.session_id)
        handle = TurnHandle(
            uuid.uuid4().hex,
            self.session_id,
            req.personality.id,
            req.model,
            self.ref,
            Turn(spec, self.deps.catalog),
            req.mode,
        )
        self._handle = handle
        if self.session_id is not None and self.deps.checkpoints is not None:
            self.deps.checkpoints.open(handle.turn_id, self.session_id, req.model, lambda: handle.turn.text)
        return handle

    def _checkpoint(self, handle: TurnHandle) -> str | None:
        """The turn's crash checkpoint, closed now: the append that finalizes it carries its id."""
        if self.deps.checkpoints is None:
            return None
        self.deps.checkpoints.close(handle.turn_id)
        return handle.turn_id

    def _prompt(self, personality: Personality, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Personality prompt, then the most recent history that fits the policy, then the new messages."""
        past = recent_history(list(self.history), personality.memory.max_history_messages)
        return [{"role": "system", "content": personality.system_prompt}, *past, *new]

    async def _with_context(
        self, req: TurnRequest, past: list[dict[str, Any]], new: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Runs in the turn's task: the prompt with knowledge/profile/memory within the token budget."""
        prepared = await self.deps.context.prepare(
            system=req.personality.system_prompt,
            history=past,
            new=new,
            user_id=req.user_id,
            personality_id=req.personality.id,
        )
        return prepared.messages, prepared.reasons

    async def _persist_turn(self, message: TurnFinished) -> None:
        """Store what the turn added, with its model, usage and latency; a cut-short answer is
        marked incomplete. A store failure here is logged, not raised: the reply is already out."""
        assert self.session_id is not None and self._handle is not None
        usage = message.usage
        meta = MessageMeta(
            model=self._handle.model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=round(message.latency_s * 1000) if message.latency_s is not None else None,
            incomplete=message.incomplete,
        )
        release = self._release
        try:
            version = await self.deps.store.append(
                self.session_id,
                self.personality_id or "",
                message.new_messages,
                meta=meta,
                checkpoint=self._checkpoint(self._handle),
                fence=self._fence,
                release=release,
            )
            self.version = version if version >= 0 else self.version
            if release:
                self._lease = None
        except LeaseLost:
            self.version = None  # our history holds a reply the store refused: reload next turn
            LEASE_LOST.labels("text").inc()
            log.warning(
                "assistant message not stored: another worker took the session over",
                extra={"session_id": self.session_id},
            )
        except NotFound:
            log.info("assistant message not stored: the session was deleted", extra={"session_id": self.session_id})
        except CozyError:
            self.version = None
            log.exception("assistant message not stored", extra={"session_id": self.session_id})

    async def on_stop(self, reason: StopReason, detail: str | None) -> None:
        if self._handle is not None and not self._handle.finished:
            message = f"session ended: {reason.value} {detail or ''}".strip()
            partial = self._handle.turn.text
            self._handle.cancel(reason.value, TurnFailed("RESOURCE_SESSION_ENDED", message, 503, partial))
            if self.session_id is not None:
                # The handle cannot tell a stopping actor any more: keep the cut-short answer here.
                release = self._release
                try:
                    await self.deps.store.append(
                        self.session_id,
                        self.personality_id or "",
                        [{"role": "assistant", "content": partial}] if partial else [],
                        meta=MessageMeta(model=self._handle.model, incomplete=True),
                        checkpoint=self._checkpoint(self._handle),
                        fence=self._fence,
                        release=release,
                    )
                    if release:
                        self._lease = None
                except LeaseLost:
                    LEASE_LOST.labels("text").inc()
                    log.warning("partial answer not stored: session taken over", extra={"session_id": self.session_id})
                except NotFound:
                    pass  # the session was deleted (that is why it stops): nothing may be stored
                except CozyError:
                    log.exception("partial answer not stored", extra={"session_id": self.session_id})
        if self.session_id is not None:
            await self._let_go()  # a turn that ended but whose TurnFinished never arrived


def _clean(message: dict[str, Any]) -> dict[str, Any]:
    """Keep only the OpenAI message fields the upstream understands."""
    return {k: v for k, v in message.items() if k in ("role", "content", "name", "tool_calls", "tool_call_id")}
