"""A Realtime session's state and its client-event handlers (one method per event type).

Lives inside the session's actor: every handler runs on the actor's task, so state needs no
locks. Handlers answer with GA server events through `emit`; a bad event becomes an `error`
event echoing the client's `event_id`, and the session carries on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from cozy_actors.config.limits import RealtimeLimitsConfig
from cozy_actors.conversation.resolve import Resolved
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.runtime import StopReason
from cozy_actors.storage import ConversationStore
from cozy_actors.storage.base import MessageMeta
from cozy_core.errors import CozyError

from . import item_events, response_start
from .client_events import CLIENT_EVENTS, describe
from .config import SessionConfig
from .input_buffer import InputBuffer
from .items import Item, Items, RealtimeError, error_event, new_id, text_of
from .limits import check_event
from .persist import SessionWriter, WritePolicy, reply_meta
from .response import Emit, ResponseRun, ResponseState
from .voice import VoiceTurns

log = logging.getLogger("cozy.realtime")

MAX_INPUT_BUFFER_S = 60.0
MIN_COMMIT_MS = 100


@dataclass
class RealtimeDeps:
    catalog: ToolCatalog
    store: ConversationStore
    llms: Any = None  # LLMRouter: `session.update` may name another configured model
    max_tool_iterations: int = 10
    tool_timeout_s: float = 10.0
    llm_timeout_s: float = 120.0
    speech: Any = None  # cozy_media SpeechService: VAD, streaming STT, TTS (None: text only)
    speech_lead_ms: float = 200.0
    context: Any = None  # a ContextService (personalization); None: off
    limits: RealtimeLimitsConfig = field(default_factory=RealtimeLimitsConfig)  # api.realtime: size caps
    checkpoints: Any = None  # TurnCheckpoints: a streaming reply survives a crash as incomplete
    write_policy: WritePolicy = field(default_factory=WritePolicy)


@dataclass
class ResponseEnded:
    """Sent by a response task to its actor so the session updates its items on its own task."""

    run: ResponseRun
    state: ResponseState


Handler = Callable[["RealtimeSession", dict[str, Any]], Awaitable[None]]


class RealtimeSession:
    def __init__(
        self,
        *,
        session_id: str,
        resolved: Resolved,
        deps: RealtimeDeps,
        emit: Emit,
        tell: Callable[[Any], None],
        actor: Any,
        persist_id: str | None = None,
        memo: dict[str, Any] | None = None,
    ) -> None:
        self.id = session_id
        self.conversation_id = f"conv_{uuid.uuid4().hex[:20]}"
        self.resolved = resolved
        self.deps = deps
        self.emit = emit
        self.tell = tell  # posts a message to this session's actor (data lane)
        self.actor = actor
        self.persist_id = persist_id
        self.memo = memo if memo is not None else {}
        self.config: SessionConfig = self.memo.get("config") or SessionConfig(model=resolved.model)
        if self.config.model != resolved.model:  # the echo names the model that answers (as chat does)
            self.config = self.config.model_copy(update={"model": resolved.model})
        self.items = Items(max_items=deps.limits.max_items)
        self.audio = InputBuffer(0)  # uncommitted input audio, in the session's input format
        self.response: ResponseRun | None = None  # the in-band response (barge-in cancels it)
        self._task: asyncio.Task[None] | None = None
        self.out_of_band: dict[str, tuple[ResponseRun, asyncio.Task[None]]] = {}  # conversation "none"
        self.voice: VoiceTurns | None = None
        self.preemption = response_start.Preemption()  # the reply prepared at the speaker's last pause
        # Pause-then-decide or plain cancel, and its thresholds: the connection's settings
        # (`?cozy_interruption=...`, interruption_query.py) over the personality's `interruption`.
        self.interruption = self.memo.get("interruption") or resolved.personality.interruption
        self.writer: SessionWriter | None = None  # one per session, kept across actor restarts
        if persist_id is not None:
            self.writer = SessionWriter.of(
                self.memo, deps.store, persist_id, resolved.personality.id, deps.write_policy
            )
            self.writer.on_gone = self._deleted

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, history: list[dict[str, Any]]) -> None:
        """Announce the session; resumed history (from storage) becomes conversation items."""
        self.start_quietly(history)
        self.emit({"type": "session.created", "session": self.config.wire(self.id)})
        if self.voice_error is not None:  # the session works (text), but its speech engines did not load
            self._error(self.voice_error.message, self.voice_error.code, None, None)

    def start_quietly(self, history: list[dict[str, Any]]) -> None:
        """Rebuild the items from stored history without announcing a new session."""
        self.voice_error: CozyError | None = None
        if self.deps.speech is not None and self.deps.speech.stt is not None:
            try:
                self.voice = VoiceTurns(self, self.deps.speech)
            except CozyError as exc:  # e.g. the personality's language route: the zh pack is not installed
                self.voice_error = exc
        for msg in history:
            role, text = msg.get("role"), msg.get("content")
            if role in ("user", "assistant") and isinstance(text, str) and text:
                self.items.add(
                    Item.message(new_id(), role, (("input_text" if role == "user" else "output_text", text),))
                )

    def close(self, reason: str) -> None:
        self.preemption.drop()
        if self.response is not None:
            self.response.cancel(reason)
        for run, _ in list(self.out_of_band.values()):
            run.cancel(reason)

    def _deleted(self) -> None:
        """The store refused a write: the session was deleted (on another node, notice missed)."""
        task = asyncio.create_task(self.actor.stop(StopReason.DELETED, "session deleted"))
        self.memo["stopping"] = task  # keep a reference until it is done

    async def finish(self, reason: str, timeout: float) -> None:
        """The session is stopping: cut the reply off, store what was heard (incomplete), flush.

        The response task's ResponseEnded cannot reach a stopping actor, so its end is handled
        here; one that ended just before (its message still queued) is stored the same way."""
        for oob, oob_task in list(self.out_of_band.values()):
            oob.cancel(reason)
            if not oob_task.done():
                await asyncio.wait([oob_task], timeout=timeout)
        self.out_of_band.clear()
        run, task = self.response, self._task
        if run is not None:
            run.cancel(reason)
            if task is not None and not task.done():
                await asyncio.wait([task], timeout=timeout)
            self.response_ended(ResponseEnded(run, run.state))
        if self.writer is not None:
            await self.writer.flush()

    async def handle(self, event: Any) -> None:
        """Validate the event's shape (client_events.py), then run its handler; anything wrong
        becomes one `error` event echoing the client's `event_id`."""
        event_id = event.get("event_id") if isinstance(event, dict) else None
        event_id = event_id if isinstance(event_id, str) and len(event_id) <= 512 else None  # never echo garbage
        etype = event.get("type") if isinstance(event, dict) else None
        handler = HANDLERS.get(etype) if isinstance(etype, str) else None
        try:
            if handler is None:
                if not isinstance(event, dict):
                    raise RealtimeError("An event must be a JSON object.", code="invalid_event")
                raise RealtimeError(
                    "The 'type' field is missing." if not etype else f"Unknown event type {str(etype)[:64]!r}.",
                    code="invalid_event",
                    param="type",
                )
            CLIENT_EVENTS[etype].model_validate(event)  # shape first: the size caps assume the types
            check_event(etype, event, self.deps.limits)
            await handler(self, event)
        except ValidationError as exc:
            message, code, param = describe(exc)
            self._error(message, code, param, event_id)
        except CozyError as exc:
            self._error(exc.message, exc.code, exc.param, event_id)

    def _error(self, message: str, code: str, param: str | None, event_id: str | None) -> None:
        self.emit(error_event(message, code, event_id, param))

    # --- session ------------------------------------------------------------------------------
    async def session_update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            raise RealtimeError("session.update needs a 'session' object", param="session")
        config = self.config.merged({k: v for k, v in update.items() if k not in ("id", "object")}, "session")
        if self.config.tracing is not None and config.tracing != self.config.tracing:
            raise RealtimeError(
                "Once tracing is enabled for a session, its configuration cannot be modified.",
                code="invalid_value",
                param="session.tracing",
            )
        resolved = await self._model_of(config) if "model" in update else self.resolved
        if self.voice is not None:
            self.voice.configure(config)  # first: a missing engine (e.g. semantic_vad's) refuses the update
        self.resolved = resolved
        self.config = config.model_copy(update={"model": resolved.model})
        self.memo["config"] = self.config
        self.emit({"type": "session.updated", "session": self.config.wire(self.id)})

    async def _model_of(self, config: SessionConfig) -> Resolved:
        """`session.model` naming a configured model switches the session's LLM for the next
        responses; any other name keeps the current one (the router's rule for chat), and the
        echo says which model answers."""
        if self.deps.llms is None:
            return self.resolved
        model_id = self.deps.llms.choose(config.model, self.resolved.model)
        if model_id == self.resolved.model:
            return self.resolved
        return replace(self.resolved, model=model_id, engine=await self.deps.llms.engine(model_id))

    # --- input audio --------------------------------------------------------------------------
    async def audio_append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise RealtimeError("input_audio_buffer.append needs 'audio' (base64)", param="audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("'audio' is not valid base64", code="invalid_audio", param="audio") from None
        await self.append_audio(data)

    async def append_audio(self, data: bytes) -> None:
        """Input audio already decoded, in the session's input format (WebRTC feeds PCM here directly)."""
        fmt = self.config.audio.input.format
        if fmt.type == "audio/pcm" and len(data) % 2:
            raise RealtimeError("audio/pcm needs whole 16-bit samples (even byte count)", "invalid_audio", "audio")
        self.audio.max_bytes = int(MAX_INPUT_BUFFER_S * 1000 * fmt.bytes_per_ms())  # the newest 60 s
        self.audio.append(data)
        if self.voice is not None:
            await self.voice.feed(data)

    async def audio_commit(self, event: dict[str, Any]) -> None:
        fmt = self.config.audio.input.format
        ms = len(self.audio) / fmt.bytes_per_ms()
        if self.voice is not None and ms >= MIN_COMMIT_MS and self.voice.commit():
            return
        if self.voice is not None or ms < MIN_COMMIT_MS:
            raise RealtimeError(
                f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms of "
                f"audio, but buffer only has {ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        self.commit_audio_item(new_id())

    def commit_audio_item(self, item_id: str) -> None:
        """Announce the committed input audio as a user item (its transcript arrives later)."""
        self.emit(
            {"type": "input_audio_buffer.committed", "previous_item_id": self.items.last_id(), "item_id": item_id}
        )
        audio = self.audio.take()
        self.add_item(Item.message(item_id, "user", (("input_audio", None),)), None)
        self.items.attach_audio(item_id, base64.b64encode(audio).decode())

    async def audio_clear(self, event: dict[str, Any]) -> None:
        self.audio.clear()
        if self.voice is not None:
            self.voice.clear()
        self.emit({"type": "input_audio_buffer.cleared"})

    async def output_audio_clear(self, event: dict[str, Any]) -> None:
        self.emit(
            {"type": "output_audio_buffer.cleared", "response_id": self.response.state.id if self.response else None}
        )

    # --- conversation items -------------------------------------------------------------------
    def add_item(self, item: Item, previous_item_id: str | None) -> None:
        prev = self.items.add(item, previous_item_id)
        public = item.wire()
        self.emit({"type": "conversation.item.added", "previous_item_id": prev, "item": public})
        self.emit({"type": "conversation.item.done", "previous_item_id": prev, "item": public})
        if item.type == "message" and item.role == "user":
            self.persist([{"role": "user", "content": text_of(item)}])

    def drop_item(self, item_id: str) -> None:
        """A false interruption's audio item leaves the conversation (it was never a user turn)."""
        if self.items.get(item_id) is not None:
            self.items.delete(item_id)
            self.emit({"type": "conversation.item.deleted", "item_id": item_id})

    # --- responses ----------------------------------------------------------------------------
    def prefetch_context(self, text: str) -> None:
        """The user paused after `text`: fetch its context during the silence window, so the
        response that end of speech starts finds it ready (ContextService.prefetch)."""
        ctx, r, td = self.deps.context, self.resolved, self.config.audio.input.turn_detection
        if ctx is not None and td is not None and td.create_response and ctx.applies(r.personality):
            ctx.prefetch(text=text, user_id=self.memo.get("user_id"), personality_id=r.personality.id)

    def preempt(self, text: str) -> None:
        """The user paused after `text`: start the reply's model call now (the personality's
        `voice.preemptive_generation`); the response adopts it if the turn ends with these words."""
        self.preemption.drop()
        if self.resolved.personality.voice.preemptive_generation:
            try:
                response_start.preempt(self, text)
            except CozyError as exc:  # e.g. the TTS is not loaded yet: the reply starts as without
                log.debug("no preemptive generation: %s", exc.message)

    def start_response(self, cfg: SessionConfig) -> ResponseRun:
        """An in-band response with the conversation as its context (end of speech, text turns)."""
        return response_start.start_response(self, cfg)

    async def run_response(self, run: ResponseRun) -> None:
        state = ResponseState(run.state.id, status="failed")
        try:
            state = await run.run()
        except Exception:
            log.exception("realtime response crashed", extra={"session_id": self.id})
        finally:
            try:
                self.tell(ResponseEnded(run, state))
            except Exception:
                pass  # the actor is gone

    def response_ended(self, msg: ResponseEnded) -> None:
        trace = getattr(msg.run, "trace", None)
        if trace is not None:  # session.tracing: one record a response, in the server's own logs
            log.info("realtime.trace", extra={"session_id": self.id, "trace": _trace(trace, msg)})
        if self.out_of_band.pop(msg.state.id, None) is not None:
            return  # out-of-band: not in the conversation, not stored
        if self.response is not msg.run:
            return
        self.response = None  # its items joined the conversation when they were announced
        if self.voice is not None:  # its audio is paced: the client plays the last `lead` ms after this
            self.voice.response_finished(self.deps.speech_lead_ms if msg.run.audio else 0.0)
        # Cut off (cancel, barge-in, stop) or failed: stored with what was heard, as text chat does.
        meta = reply_meta(self.resolved.model, msg.state.status, msg.state.usage)
        checkpoint = msg.state.id if self.deps.checkpoints is not None and self.persist_id is not None else None
        if checkpoint is not None:
            self.deps.checkpoints.close(checkpoint)
        text = msg.state.text
        self.persist([{"role": "assistant", "content": text}] if text else [], meta=meta, checkpoint=checkpoint)
        learn = getattr(msg.run, "learn", None)
        if text and learn is not None and not meta.incomplete:  # memory/profile learn from the voice turn, after it
            learn.messages.append({"role": "assistant", "content": text})
            task = asyncio.create_task(self.deps.context.after_turn(learn))
            task.add_done_callback(_log_failure)
        if self.voice is not None:
            self.voice.after_reply()  # the user turn that interrupted it, stored after it

    async def response_cancel(self, event: dict[str, Any]) -> None:
        run = self.response
        wanted = event.get("response_id")
        if wanted and wanted in self.out_of_band:
            run = self.out_of_band[wanted][0]
        if run is None or (wanted and wanted != run.state.id):
            raise RealtimeError("Cancellation failed: no active response found.", code="response_cancel_not_active")
        run.cancel("client_cancelled")

    def persist(
        self, messages: list[dict[str, Any]], *, meta: MessageMeta | None = None, checkpoint: str | None = None
    ) -> None:
        """Queue on the session's writer (ordered, retried); see persist.py."""
        if self.writer is None:
            return
        messages = [m for m in messages if m.get("content")]
        if messages or checkpoint is not None:
            self.writer.put(messages, meta=meta, checkpoint=checkpoint)


def _trace(trace: Any, msg: ResponseEnded) -> dict[str, Any]:
    named = trace.model_dump() if hasattr(trace, "model_dump") else {"workflow_name": "Realtime Session"}
    return {**named, "response_id": msg.state.id, "status": msg.state.status, "usage": msg.state.usage}


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("realtime memory/profile update failed: %s", task.exception())


HANDLERS: dict[str, Handler] = {
    "session.update": RealtimeSession.session_update,
    "input_audio_buffer.append": RealtimeSession.audio_append,
    "input_audio_buffer.commit": RealtimeSession.audio_commit,
    "input_audio_buffer.clear": RealtimeSession.audio_clear,
    "output_audio_buffer.clear": RealtimeSession.output_audio_clear,
    "conversation.item.create": item_events.item_create,
    "conversation.item.delete": item_events.item_delete,
    "conversation.item.retrieve": item_events.item_retrieve,
    "conversation.item.truncate": item_events.item_truncate,
    "response.create": response_start.response_create,
    "response.cancel": RealtimeSession.response_cancel,
}
