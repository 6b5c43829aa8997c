"""The Realtime conversation actor: one per live voice/realtime connection.

It owns the session (config, items, running response) and, with the audio issue's pieces, the
input audio pipeline. Client events arrive in its mailbox (cancel and truncate on the control
lane, so they overtake queued audio); server events leave through `emit`, which the transport
drains onto the wire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cozy_actors.conversation.actor import StartTurn
from cozy_actors.conversation.handle import TurnFinished
from cozy_actors.conversation.resolve import Resolved
from cozy_actors.runtime import Actor, StopReason
from cozy_core.errors import CozyError

from .audio_in import AudioEvent
from .interruption import InterruptionDeadline
from .response import Emit
from .session import RealtimeDeps, RealtimeSession, ResponseEnded
from .text_turns import start_text_turn

log = logging.getLogger("cozy.realtime")

# Client events that must not wait behind queued audio. Everything else keeps its order with
# the audio it refers to (a commit must follow its appends).
CONTROL_EVENTS = frozenset({"response.cancel", "conversation.item.truncate", "output_audio_buffer.clear"})

_STOP_CODES = {
    StopReason.MAX_DURATION: ("session_expired", "The session reached its maximum duration."),
    StopReason.IDLE_TIMEOUT: ("session_idle_timeout", "The session was idle for too long."),
    StopReason.SHUTDOWN: ("server_shutting_down", "The server is shutting down."),
    StopReason.CRASHED: ("session_failed", "The session failed repeatedly and was closed."),
    StopReason.REVOKED: ("session_revoked", "The session's API key was revoked or its user disabled."),
    StopReason.DELETED: ("session_deleted", "The session was deleted; nothing more is stored for it."),
    StopReason.TAKEN_OVER: ("session_taken_over", "Another connection took this conversation over."),
}


@dataclass(slots=True)
class ClientEvent:
    event: Any


@dataclass(slots=True)
class AppendAudio:
    """Input audio as bytes in the session's input format: what `input_audio_buffer.append` carries,
    without the base64 round trip (the WebRTC transport already holds PCM)."""

    pcm: bytes


class RealtimeActor(Actor):
    """Registered under the stored session id when it has one (one actor per conversation: text
    turns of that conversation reach it, see text_turns.py); `wire_id` is the `sess_...` id the
    client sees."""

    kind = "realtime"

    def __init__(
        self,
        actor_id: str,
        *,
        resolved: Resolved,
        deps: RealtimeDeps,
        emit: Emit,
        persist_id: str | None,
        history_limit: int = 50,
        restarted: bool = False,
        memo: dict[str, Any] | None = None,
        wire_id: str | None = None,
    ) -> None:
        super().__init__(actor_id)
        self.wire_id = wire_id or actor_id
        self.resolved = resolved
        self.deps = deps
        self.emit = emit
        self.persist_id = persist_id
        self.history_limit = history_limit
        self.restarted = restarted
        self.memo = memo if memo is not None else {}  # survives restarts: the session's last config
        self.session: RealtimeSession | None = None

    @property
    def busy(self) -> bool:
        return self.session is not None and self.session.response is not None

    async def on_start(self) -> None:
        history: list[dict[str, Any]] = []
        if self.persist_id is not None:
            stored = await self.deps.store.load(self.persist_id, limit=self.history_limit)
            history = stored.messages if stored else []
        if self.deps.speech is not None:
            await self.deps.speech.loaded()  # models load in the background at start-up
            # A language route (zh) loads on first use: its models are in before the first word.
            await self.deps.speech.load_language(self.resolved.personality.voice.language)
        self.session = RealtimeSession(
            session_id=self.wire_id,
            resolved=self.resolved,
            deps=self.deps,
            emit=self.emit,
            tell=self.ref.tell,
            actor=self.ref,
            persist_id=self.persist_id,
            memo=self.memo,
        )
        if self.restarted:
            # The connection carries on after a crash: same session id, history reloaded from storage.
            self.session.start_quietly(history)
            self.emit(
                {
                    "type": "error",
                    "error": {
                        "type": "server_error",
                        "code": "session_restarted",
                        "message": "The session restarted after an internal error; the response in progress was lost.",
                        "param": None,
                        "event_id": None,
                    },
                }
            )
        else:
            self.session.start(history)

    async def handle(self, message: Any) -> Any:
        assert self.session is not None
        if type(message) is AppendAudio:  # first: ~25 a second per call
            self.touch()
            try:
                await self.session.append_audio(message.pcm)
            except CozyError as exc:
                self.session._error(exc.message, exc.code, exc.param, None)
        elif isinstance(message, ClientEvent):
            self.touch()
            await self.session.handle(message.event)
        elif isinstance(message, AudioEvent):
            if self.session.voice is not None:
                self.session.voice.on_event(message)
        elif isinstance(message, InterruptionDeadline):
            if self.session.voice is not None:
                self.session.voice.barge.deadline(message)
        elif isinstance(message, ResponseEnded):
            self.session.response_ended(message)
        elif isinstance(message, StartTurn):
            self.touch()
            return start_text_turn(self.session, message.request)  # a text chat turn, answered in the call
        elif isinstance(message, TurnFinished):
            pass  # realtime keeps its own items; text-chat history bookkeeping does not apply
        else:
            raise TypeError(f"unexpected message {type(message).__name__}")

    async def on_stop(self, reason: StopReason, detail: str | None) -> None:
        if self.session is not None:
            # The reply in progress is cut off and stored as heard (incomplete); pending writes flush.
            await self.session.finish("session_ended", timeout=1.0)
            if self.session.voice is not None:
                await self.session.voice.close()
        if reason in _STOP_CODES:
            code, message = _STOP_CODES[reason]
            self.emit(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "code": code,
                        "message": message,
                        "param": None,
                        "event_id": None,
                    },
                }
            )
