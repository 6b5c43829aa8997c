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
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from cozy_actors.config.limits import RealtimeLimitsConfig
from cozy_actors.context.voice import personalize
from cozy_actors.conversation.handle import TurnHandle
from cozy_actors.conversation.history import trim_past
from cozy_actors.conversation.resolve import Resolved
from cozy_actors.conversation.turn import Turn, TurnSpec
from cozy_actors.engines.tools.audit import ToolCaller
from cozy_actors.engines.tools.base import ToolCatalog
from cozy_actors.runtime import StopReason
from cozy_actors.storage import ConversationStore
from cozy_actors.storage.base import MessageMeta
from cozy_core.errors import CozyError

from . import item_events
from .audio_out import SpeechOutput, output_rate
from .client_events import CLIENT_EVENTS, describe
from .config import SessionConfig
from .input_buffer import InputBuffer
from .items import Item, Items, RealtimeError, new_id, text_of
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
        self.items = Items(max_items=deps.limits.max_items)
        self.audio = InputBuffer(0)  # uncommitted input audio, in the session's input format
        self.response: ResponseRun | None = None
        self._task: asyncio.Task[None] | None = None
        self.voice: VoiceTurns | None = None
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

    def start_quietly(self, history: list[dict[str, Any]]) -> None:
        """Rebuild the items from stored history without announcing a new session."""
        if self.deps.speech is not None and self.deps.speech.stt is not None:
            self.voice = VoiceTurns(self, self.deps.speech)
        for msg in history:
            role, text = msg.get("role"), msg.get("content")
            if role in ("user", "assistant") and isinstance(text, str) and text:
                self.items.add(
                    Item.message(new_id(), role, (("input_text" if role == "user" else "output_text", text),))
                )

    def close(self, reason: str) -> None:
        if self.response is not None:
            self.response.cancel(reason)

    def _deleted(self) -> None:
        """The store refused a write: the session was deleted (on another node, notice missed)."""
        task = asyncio.create_task(self.actor.stop(StopReason.DELETED, "session deleted"))
        self.memo["stopping"] = task  # keep a reference until it is done

    async def finish(self, reason: str, timeout: float) -> None:
        """The session is stopping: cut the reply off, store what was heard (incomplete), flush.

        The response task's ResponseEnded cannot reach a stopping actor, so its end is handled
        here; one that ended just before (its message still queued) is stored the same way."""
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
        self.emit(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": code,
                    "message": message,
                    "param": param,
                    "event_id": event_id,
                },
            }
        )

    # --- session ------------------------------------------------------------------------------
    async def session_update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            raise RealtimeError("session.update needs a 'session' object", param="session")
        self.config = self.config.merged({k: v for k, v in update.items() if k not in ("id", "object")}, "session")
        self.memo["config"] = self.config
        if self.voice is not None:
            self.voice.configure()
        self.emit({"type": "session.updated", "session": self.config.wire(self.id)})

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

    # --- responses ----------------------------------------------------------------------------
    async def response_create(self, event: dict[str, Any]) -> None:
        if self.response is not None:
            raise RealtimeError(
                "Conversation already has an active response in progress.",
                code="conversation_already_has_active_response",
            )
        opts = event.get("response") or {}  # its shape is checked by client_events.ResponseCreate
        cfg = self.config.merged(  # checked now, so a bad value is answered even when deferred
            {
                k: opts[k]
                for k in ("instructions", "output_modalities", "tools", "tool_choice", "max_output_tokens")
                if opts.get(k) is not None
            },
            "response",
        )
        conversation, metadata = opts.get("conversation") != "none", opts.get("metadata")

        def start() -> None:
            self.start_response(cfg, conversation=conversation, metadata=metadata)

        if self.voice is not None and self.voice.awaiting_transcript:
            # The user's words are still being transcribed: answer as soon as they are known.
            self.voice.defer(start)
            return
        start()

    def prefetch_context(self, text: str) -> None:
        """The user paused after `text`: fetch its context during the silence window, so the
        response that end of speech starts finds it ready (ContextService.prefetch)."""
        ctx, r, td = self.deps.context, self.resolved, self.config.audio.input.turn_detection
        if ctx is not None and td is not None and td.create_response and ctx.applies(r.personality):
            ctx.prefetch(text=text, user_id=self.memo.get("user_id"), personality_id=r.personality.id)

    def start_response(
        self, cfg: SessionConfig, *, conversation: bool = True, metadata: dict[str, Any] | None = None
    ) -> ResponseRun:
        r = self.resolved
        system = r.personality.system_prompt + (f"\n\n{cfg.instructions}" if cfg.instructions else "")
        # The model sees the personality's recent history (as in text chat), then the turn itself.
        history = trim_past(self.items.messages(), r.personality.memory.max_history_messages) if conversation else []
        spec = TurnSpec(
            engine=r.engine,
            model=r.model,
            messages=[{"role": "system", "content": system}, *history],
            server_tools=r.server_tools,
            client_tools=cfg.client_tools(),
            tool_choice=cfg.tool_choice if cfg.tools else None,
            temperature=r.personality.llm.temperature,
            max_tokens=cfg.max_output_tokens
            if isinstance(cfg.max_output_tokens, int)
            else r.personality.llm.max_tokens,
            max_tool_iterations=self.deps.max_tool_iterations,
            tool_timeout_s=self.deps.tool_timeout_s,
            llm_timeout_s=self.deps.llm_timeout_s,
            caller=ToolCaller(self.memo.get("user_id"), session_id=self.persist_id or self.id, channel="realtime"),
        )
        learn = personalize(
            spec, self.deps.context, r.personality, self.memo.get("user_id"), system, history, self.persist_id
        )
        handle = TurnHandle(
            uuid.uuid4().hex,
            self.persist_id,
            r.personality.id,
            r.model,
            self.actor,
            Turn(spec, self.deps.catalog),
            "voice",
        )
        run = ResponseRun(
            handle,
            self.emit,
            speech=self._speech_factory(cfg),
            modalities=list(cfg.output_modalities),
            conversation_id=self.conversation_id,
            metadata=metadata,
        )
        run.learn = learn
        self.response = run
        if self.persist_id is not None and self.deps.checkpoints is not None:
            self.deps.checkpoints.open(run.state.id, self.persist_id, r.model, run.heard_text_now)
        self._task = asyncio.create_task(self._run(run), name=f"realtime-response:{self.id}")
        return run

    def _speech_factory(self, cfg: SessionConfig) -> Callable[[Callable[[str], None]], SpeechOutput] | None:
        speech = self.deps.speech
        if speech is None or speech.tts is None or "audio" not in cfg.output_modalities:
            return None
        out = cfg.audio.output
        wanted = out.voice if isinstance(out.voice, str) else str(out.voice.get("id", ""))
        try:
            voice = speech.resolve_voice(wanted)
        except CozyError:
            voice = speech.resolve_voice(self.resolved.personality.voice.voice)
        speed = out.speed * self.resolved.personality.voice.speed
        synth = speech.synthesizer(voice, min(4.0, max(0.25, speed)), sample_rate=output_rate(out.format.type))
        lead = self.deps.speech_lead_ms
        return lambda send: SpeechOutput(synth, out.format.type, send, lead_ms=lead)

    async def _run(self, run: ResponseRun) -> None:
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
        if self.response is not msg.run:
            return
        self.response = None
        for item in msg.state.output:
            if item.id not in self.items:
                self.items.add(item)  # with its audio_ms, for truncate
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

    async def response_cancel(self, event: dict[str, Any]) -> None:
        run = self.response
        wanted = event.get("response_id")
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
    "response.create": RealtimeSession.response_create,
    "response.cancel": RealtimeSession.response_cancel,
}
