"""Chat service: the business rules between a chat request and a conversation actor.

Resolves personality, model and the tools offered, then starts a turn on the session's actor (or
on an ephemeral one for stateless requests). The HTTP edge only parses and formats.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from cozy_actors.auth.principal import Principal
from cozy_actors.config import AppConfig
from cozy_actors.engines.llm.router import LLMRouter
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.personalities import PersonalityStore
from cozy_actors.quotas import Lease, QuotaExceeded, Quotas, ServerFull, get_quotas
from cozy_actors.runtime import (
    ActorCrashed,
    ActorRef,
    AskTimeout,
    MailboxClosed,
    MailboxFull,
    Supervisor,
    SupervisorFull,
)
from cozy_actors.storage import ConversationStore
from cozy_core.errors import CozyError, Invalid

from .actor import ConversationActor, ConversationDeps, StartTurn, TurnRequest
from .handle import TurnHandle
from .resolve import resolve

_ROLES = {"system", "developer", "user", "assistant", "tool"}


@dataclass
class ChatRequest:
    """A chat completion request in domain terms (already parsed from the wire)."""

    messages: list[dict[str, Any]]
    model: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    temperature: float | None = None
    max_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    personality_id: str | None = None
    session_id: str | None = None
    allowed_tools: list[str] | None = None
    use_personalization: bool = True
    principal: Principal | None = None  # the authenticated caller; owns the session it names
    request_id: str | None = None
    forwarded: bool = False  # sent on by another worker (x-cozy-forwarded): never forwarded again


class ChatService:
    def __init__(
        self,
        *,
        app: AppConfig,
        supervisor: Supervisor,
        personalities: PersonalityStore,
        llms: LLMRouter,
        catalog: ToolCatalog,
        store: ConversationStore,
        audit: Any = None,
        context: Any = None,
        quotas: Quotas | None = None,
        checkpoints: Any = None,
        placement: Any = None,
    ) -> None:
        self.app = app
        self.quotas = quotas if quotas is not None else get_quotas()
        self._live: dict[str, set[_Tracked]] = {}  # quota owner -> leases of its live conversations
        self.supervisor = supervisor
        self.quotas.publish("conversations", self._in_turn)
        self.personalities = personalities
        self.llms = llms
        self.catalog = catalog
        self.store = store
        self.deps = ConversationDeps(
            catalog=catalog,
            store=store,
            max_history_messages=app.sessions.max_history_messages,
            max_tool_iterations=app.turn.max_tool_iterations,
            tool_timeout_s=app.turn.tool_timeout_s,
            llm_timeout_s=app.turn.llm_timeout_s,
            audit=audit,
            context=context,
            checkpoints=checkpoints,
            placement=placement,
        )

    async def start_turn(self, req: ChatRequest) -> TurnHandle:
        """Start the turn on the session's actor. Raises OwnedElsewhere when a call on another
        worker owns the session (the edge forwards the request there), SessionBusy (409) when
        another worker is answering it right now."""
        _check_messages(req.messages, stateful=req.session_id is not None)
        r = await resolve(
            self.personalities,
            self.llms,
            self.catalog,
            personality_id=req.personality_id,
            model=req.model,
            allowed_tools=req.allowed_tools,
        )
        personality = r.personality
        _check_max_tokens(r.engine, req.max_tokens)
        turn = TurnRequest(
            personality=personality,
            engine=r.engine,
            model=r.model,
            messages=req.messages,
            server_tools=r.server_tools,
            client_tools=req.tools,
            tool_choice=req.tool_choice,
            temperature=req.temperature if req.temperature is not None else personality.llm.temperature,
            max_tokens=req.max_tokens if req.max_tokens is not None else personality.llm.max_tokens,
            extra=req.extra,
        )
        principal = req.principal
        if principal is not None:
            turn.user_id, turn.user_name = principal.user_id, principal.name
        turn.request_id = req.request_id
        turn.use_personalization = req.use_personalization
        owner = self.quotas.owner(principal)
        if getattr(r.engine, "single_lane", False):
            turn.quota_owner = owner  # the local model's lane: llm_queue_per_user (LocalLLM counts it)
        if req.session_id is not None:
            # The session is the caller's (created now if the id is new); someone else's is a 404.
            await self.store.claim(req.session_id, principal.user_id if principal else None, personality.id)
        ref = await self._actor(req.session_id, owner)
        retry = self.app.quotas.retry_after_s
        try:
            result = await ref.ask(StartTurn(turn), timeout=self.app.sessions.ask_timeout_s)
        except AskTimeout as exc:
            raise ServerFull("the conversation did not answer in time", retry, code="RESOURCE_BUSY") from exc
        except MailboxFull as exc:
            raise ServerFull("the conversation is overloaded", retry, code="RESOURCE_BUSY") from exc
        except (ActorCrashed, MailboxClosed) as exc:
            raise CozyError(f"the conversation failed: {exc}", code="RESOURCE_SESSION_ENDED", status=503) from exc
        if isinstance(result, CozyError):
            raise result
        return result

    async def _actor(self, session_id: str | None, owner: str | None) -> Any:
        deps = self.deps
        taken: list[Lease | _Tracked] = []

        def lease() -> Lease | _Tracked:
            taken.append(self._lease(owner))
            return taken[-1]

        try:
            if session_id is None:
                ref = await self.supervisor.spawn(
                    lambda aid: ConversationActor(aid, deps, session_id=None),
                    f"ephemeral-{uuid.uuid4().hex}",
                    lease=lease,
                )
            else:
                ref = await self.supervisor.get_or_spawn(
                    session_id, lambda aid: ConversationActor(aid, deps, session_id=session_id), lease=lease
                )
        except SupervisorFull as exc:
            raise ServerFull(f"server is at capacity: {exc}", self.app.quotas.retry_after_s) from exc
        for held in taken:  # spawning did not yield to the loop: nothing could evict it meanwhile
            if isinstance(held, _Tracked):
                held.bind(ref)
        return ref

    def _lease(self, owner: str | None) -> Lease | _Tracked:
        """A conversation slot for `owner` (the supervisor calls this only for a new actor). At the
        quota, one of the owner's idle conversations is stopped first (its history is stored; it
        comes back on its next turn), so only N conversations *in a turn* make a user wait."""
        try:
            lease = self.quotas.acquire_for("conversations", owner)
        except QuotaExceeded:
            if not self._evict_one(owner):
                raise
            lease = self.quotas.acquire_for("conversations", owner)
        if owner is None:
            return lease
        live = self._live.setdefault(owner, set())
        return _Tracked(lease, live, self._live, owner)

    def _in_turn(self) -> dict[str, int]:
        """Per owner, its conversations at work here: what the other workers count against its share."""
        counts = {}
        for owner, live in self._live.items():
            n = sum(1 for t in live if t.ref is not None and self.supervisor.busy(t.ref))
            if n:
                counts[owner] = n
        return counts

    def _evict_one(self, owner: str | None) -> bool:
        for tracked in list(self._live.get(owner or "", ())):
            if tracked.ref is not None and self.supervisor.evict_if_idle(
                tracked.ref, "evicted: its user opened a conversation beyond the per-user quota"
            ):
                tracked.release()  # the slot is free now; the actor's own release later is a no-op
                return True
        return False


class _Tracked:
    """A conversation lease that also keeps its actor findable for eviction until released."""

    __slots__ = ("_all", "_lease", "_owner", "_set", "ref")

    def __init__(self, lease: Lease, live: set[_Tracked], all_live: dict[str, set[_Tracked]], owner: str) -> None:
        self._lease, self._set, self._all, self._owner = lease, live, all_live, owner
        self.ref: ActorRef | None = None
        live.add(self)

    def bind(self, ref: ActorRef) -> None:
        self.ref = ref

    def release(self) -> None:
        self._lease.release()
        self._set.discard(self)
        if not self._set and self._all.get(self._owner) is self._set:
            del self._all[self._owner]


def _check_max_tokens(engine: Any, max_tokens: int | None) -> None:
    """A client's max_tokens above the model's ceiling is refused (400) rather than silently cut."""
    ceiling = getattr(engine, "max_tokens_limit", None)
    if max_tokens is not None and ceiling is not None and max_tokens > ceiling:
        raise Invalid(
            f"max_tokens {max_tokens} exceeds this model's limit of {ceiling} (max_completion_tokens likewise)",
            param="max_tokens",
        )


def _check_messages(messages: list[dict[str, Any]], *, stateful: bool) -> None:
    if not messages:
        raise Invalid("messages must contain at least one message", param="messages")
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in _ROLES:
            raise Invalid(f"messages[{i}].role must be one of {sorted(_ROLES)}", param=f"messages[{i}].role")
        if role == "tool" and not m.get("tool_call_id"):
            raise Invalid(f"messages[{i}] (tool) needs tool_call_id", param=f"messages[{i}].tool_call_id")
        if role in ("user", "system", "developer") and m.get("content") in (None, "", []):
            raise Invalid(f"messages[{i}].content must not be empty", param=f"messages[{i}].content")
