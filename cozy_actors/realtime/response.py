"""One Realtime response: consumes a TurnHandle and emits the GA server events for it.

Runs as a task owned by the session's actor. Text deltas become `response.output_text.delta`
(text modality) or the transcript of the audio part (audio modality, whose audio deltas come
from the speech output). Calls to client tools become `function_call` items with argument
deltas. Cancelling the task's handle ends the response with `status: cancelled` and no further
deltas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cozy_actors.conversation.events import TextDelta, ToolCallDelta, TurnDone, TurnEvent, TurnFailed
from cozy_actors.conversation.handle import TurnHandle

from .audio_out import SpeechOutput
from .items import Item, new_id

Emit = Callable[[dict[str, Any]], None]


@dataclass
class ResponseState:
    """What the session needs to know about a response once it has ended."""

    id: str
    status: str = "in_progress"
    status_details: dict[str, Any] | None = None
    output: list[Item] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    text: str = ""


class ResponseRun:
    def __init__(
        self,
        handle: TurnHandle,
        emit: Emit,
        *,
        modalities: list[str],
        conversation_id: str,
        metadata: dict[str, Any] | None = None,
        speech: Callable[[Callable[[str], None]], SpeechOutput] | None = None,
    ) -> None:
        self.handle = handle
        self.emit = emit
        self.modalities = modalities
        self.audio = "audio" in modalities
        self.conversation_id = conversation_id
        self.metadata = metadata
        self.state = ResponseState(new_id("resp"))
        self.cancel_reason: str | None = None
        self._message: Item | None = None
        self._calls: dict[int, Item] = {}
        self._make_speech = speech if self.audio else None
        self.speech: SpeechOutput | None = None  # the audio of the assistant message, paced
        self.cancelled_at: float | None = None
        # A text chat turn answered in the call listens here (text_turns.py): each turn event as
        # the response sees it, then None once the response has ended.
        self.mirror: Callable[[TurnEvent | None], None] | None = None

    def wire(self) -> dict[str, Any]:
        s = self.state
        return {
            "object": "realtime.response",
            "id": s.id,
            "status": s.status,
            "status_details": s.status_details,
            "output": [i.wire() for i in s.output],
            "conversation_id": self.conversation_id,
            "output_modalities": self.modalities,
            "metadata": self.metadata,
            "usage": s.usage,
        }

    def cancel(self, reason: str) -> None:
        """`turn_detected` (barge-in) or `client_cancelled`: stop now, no more deltas."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.cancelled_at = time.perf_counter()
            if self.speech is not None:
                self.speech.stop()  # first: not one more audio delta leaves
            self.handle.cancel(reason)

    def heard_ms(self) -> float:
        """How much of the sent audio the listener can have played (sent minus the unplayed lead)."""
        sp = self.speech
        if sp is None or sp._started_at is None:
            return 0.0
        end = self.cancelled_at or time.perf_counter()
        return max(0.0, min(sp.sent_ms, (end - sp._started_at) * 1000.0))

    def heard_text_now(self) -> str:
        """The reply as far as the listener has it now (the crash checkpoint's text)."""
        if self.speech is None:
            return self.state.text
        return self.speech.heard_text(self.heard_ms())

    async def run(self) -> ResponseState:
        self.emit({"type": "response.created", "response": self.wire()})
        try:
            async for event in self.handle:
                if self.mirror is not None:
                    self.mirror(event)
                if self.cancel_reason is not None:
                    continue  # drain to the final event; nothing more reaches the client
                if isinstance(event, TextDelta):
                    self._text(event.text)
                elif isinstance(event, ToolCallDelta):
                    self._call(event)
                elif isinstance(event, TurnDone):
                    await self._speech_done()
                    if self.cancel_reason is None:
                        self._finish(event)
                elif isinstance(event, TurnFailed):
                    self._fail(event)
        finally:
            if self.state.status == "in_progress":  # cancelled or the consumer went away
                self._close_open()
                self.state.status = "cancelled"
                self.state.status_details = {"type": "cancelled", "reason": self.cancel_reason or "client_cancelled"}
            self.emit({"type": "response.done", "response": self.wire()})
            if self.mirror is not None:
                self.mirror(None)
        return self.state

    # --- output items -------------------------------------------------------------------------
    def _ids(self, item: Item) -> dict[str, Any]:
        return {"response_id": self.state.id, "item_id": item.id, "output_index": self.state.output.index(item)}

    def _open_message(self) -> Item:
        if self._message is None:
            item = Item.message(new_id(), "assistant", status="in_progress")
            self.state.output.append(item)
            self._message = item
            wire = item.wire()
            self.emit(
                {
                    "type": "response.output_item.added",
                    "response_id": self.state.id,
                    "output_index": len(self.state.output) - 1,
                    "item": wire,
                }
            )
            self.emit({"type": "conversation.item.added", "item": wire})
            part = {"type": "audio", "transcript": ""} if self.audio else {"type": "text", "text": ""}
            self.emit({"type": "response.content_part.added", **self._ids(item), "content_index": 0, "part": part})
        return self._message

    async def _speech_done(self) -> None:
        """Wait until the last sentence has been sent (paced); a barge-in ends the wait at once."""
        if self.speech is None:
            return
        self.speech.end()
        try:
            await self.speech.wait()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our own task is being cancelled, not just the speech
            # The speech was stopped by cancel(): the finally block reports the cancellation.

    def _text(self, text: str) -> None:
        item = self._open_message()
        if self._make_speech is not None and self.speech is None:
            ids = {**self._ids(item), "content_index": 0}
            self.speech = self._make_speech(
                lambda b64: self.emit({"type": "response.output_audio.delta", **ids, "delta": b64})
            )
            self.speech.start()
        if self.speech is not None:
            self.speech.push(text)
        self.state.text += text
        kind = "response.output_audio_transcript.delta" if self.audio else "response.output_text.delta"
        self.emit({"type": kind, **self._ids(item), "content_index": 0, "delta": text})

    def _call(self, ev: ToolCallDelta) -> None:
        call = self._calls.get(ev.index)
        if call is None:
            self._close_message()
            call = Item.function_call(new_id("fc"), ev.id or new_id("call"), ev.name or "")
            self._calls[ev.index] = call
            self.state.output.append(call)
            wire = call.wire()
            self.emit(
                {
                    "type": "response.output_item.added",
                    "response_id": self.state.id,
                    "output_index": len(self.state.output) - 1,
                    "item": wire,
                }
            )
            self.emit({"type": "conversation.item.added", "item": wire})
        if ev.arguments:
            call.arguments = (call.arguments or "") + ev.arguments
            self.emit(
                {
                    "type": "response.function_call_arguments.delta",
                    **self._ids(call),
                    "call_id": call.call_id,
                    "delta": ev.arguments,
                }
            )

    def _close_message(self, status: str = "completed") -> None:
        item, self._message = self._message, None
        if item is None:
            return
        text = self.state.text
        if self.speech is not None:
            item.audio_ms = self.speech.sent_ms
            if status != "completed":  # interrupted: history keeps only what was heard
                text = self.speech.heard_text(self.heard_ms())
                self.state.text = text
        ids = {**self._ids(item), "content_index": 0}
        if self.audio:
            self.emit({"type": "response.output_audio.done", **ids})
            self.emit({"type": "response.output_audio_transcript.done", **ids, "transcript": text})
            part = {"type": "audio", "transcript": text}
            item.content = (("output_audio", text),)
        else:
            self.emit({"type": "response.output_text.done", **ids, "text": text})
            part = {"type": "text", "text": text}
            item.content = (("output_text", text),)
        self.emit({"type": "response.content_part.done", **ids, "part": part})
        item.status = status
        wire = item.wire()
        self.emit(
            {
                "type": "response.output_item.done",
                "response_id": self.state.id,
                "output_index": self.state.output.index(item),
                "item": wire,
            }
        )
        self.emit({"type": "conversation.item.done", "item": wire})

    def _close_calls(self, status: str = "completed") -> None:
        for call in self._calls.values():
            if call.status != "in_progress":
                continue
            call.status = status
            self.emit(
                {
                    "type": "response.function_call_arguments.done",
                    **self._ids(call),
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )
            wire = call.wire()
            self.emit(
                {
                    "type": "response.output_item.done",
                    "response_id": self.state.id,
                    "output_index": self.state.output.index(call),
                    "item": wire,
                }
            )
            self.emit({"type": "conversation.item.done", "item": wire})

    def _close_open(self) -> None:
        self._close_message("incomplete")
        self._close_calls("incomplete")

    def _finish(self, done: TurnDone) -> None:
        if done.stop_reason == "cancelled":
            return  # the finally block reports the cancellation
        self._close_message()
        self._close_calls()
        u = done.usage
        self.state.usage = {
            "total_tokens": u.total_tokens,
            "input_tokens": u.prompt_tokens,
            "output_tokens": u.completion_tokens,
        }
        if done.finish_reason == "length":
            self.state.status, self.state.status_details = (
                "incomplete",
                {"type": "incomplete", "reason": "max_output_tokens"},
            )
        else:
            self.state.status, self.state.status_details = "completed", None

    def _fail(self, failed: TurnFailed) -> None:
        self._close_open()
        self.state.status = "failed"
        self.state.status_details = {
            "type": "failed",
            "error": {"type": "server_error", "code": failed.code, "message": failed.message},
        }
