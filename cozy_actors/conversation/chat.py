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
from cozy_actors.runtime import ActorCrashed, AskTimeout, MailboxClosed, MailboxFull, Supervisor, SupervisorFull
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
        checkpoints: Any = None,
    ) -> None:
        self.app = app
        self.supervisor = supervisor
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
        )

    async def start_turn(self, req: ChatRequest) -> TurnHandle:
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
        if req.session_id is not None:
            # The session is the caller's (created now if the id is new); someone else's is a 404.
            await self.store.claim(req.session_id, principal.user_id if principal else None, personality.id)
        ref = await self._actor(req.session_id)
        try:
            result = await ref.ask(StartTurn(turn), timeout=self.app.sessions.ask_timeout_s)
        except AskTimeout as exc:
            raise CozyError("the conversation did not answer in time", code="RESOURCE_BUSY", status=503) from exc
        except MailboxFull as exc:
            raise CozyError("the conversation is overloaded", code="RESOURCE_BUSY", status=503) from exc
        except (ActorCrashed, MailboxClosed) as exc:
            raise CozyError(f"the conversation failed: {exc}", code="RESOURCE_SESSION_ENDED", status=503) from exc
        if isinstance(result, CozyError):
            raise result
        return result

    async def _actor(self, session_id: str | None) -> Any:
        deps = self.deps
        try:
            if session_id is None:
                return await self.supervisor.spawn(
                    lambda aid: ConversationActor(aid, deps, session_id=None), f"ephemeral-{uuid.uuid4().hex}"
                )
            return await self.supervisor.get_or_spawn(
                session_id, lambda aid: ConversationActor(aid, deps, session_id=session_id)
            )
        except SupervisorFull as exc:
            raise CozyError(f"server is at capacity: {exc}", code="RESOURCE_EXHAUSTED", status=503) from exc


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
