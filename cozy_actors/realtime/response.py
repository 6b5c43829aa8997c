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
        conversation_id: str | None,
        metadata: dict[str, Any] | None = None,
        speech: Callable[[Callable[[str], None]], SpeechOutput] | None = None,
        on_item: Callable[[Item], str | None] | None = None,
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
        self.paused = False  # pause-then-decide: its audio is held until resumed or cancelled
        # A text chat turn answered in the call listens here (text_turns.py): each turn event as
        # the response sees it, then None once the response has ended.
        self.mirror: Callable[[TurnEvent | None], None] | None = None
        # In-band: each output item joins the conversation when announced (Items.add, returning the
        # id before it); None: out-of-band, no conversation.item.* events.
        self.on_item = on_item
        self._prev: dict[str, str | None] = {}
        self.truncated_ms: int | None = None  # conversation.item.truncate of the spoken message
        self.learn: Any = None  # what memory/profile learn from once the response is done
        self.trace: Any = None  # session.tracing at its start

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
            "usage": s.usage if s.usage is not None else usage(),
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
        """How much of the sent audio the listener can have played (sent minus the unplayed lead;
        a paused reply: where it paused)."""
        if self.speech is None:
            return 0.0
        return self.speech.played_ms(self.cancelled_at)

    # --- pause-then-decide (interruption.py decides; this carries it out) ----------------------
    def pause(self) -> None:
        """User speech over the reply: no further audio leaves now, the rest is kept for a resume."""
        if self.paused or self.cancel_reason is not None:
            return
        self.paused = True
        at = self.speech.pause() if self.speech is not None else 0.0
        self.emit({"type": "cozy.response.paused", **self._cozy_ids(), "audio_end_ms": int(at)})

    def resume(self, reason: str, transcript: str) -> bool:
        """A false interruption: the reply goes on from its first unheard sample. False if not paused."""
        if not self.paused or self.cancel_reason is not None:
            return False
        self.paused = False
        if self.speech is not None:
            self.speech.resume()
        self.emit({"type": "cozy.response.resumed", **self._cozy_ids(), "reason": reason, "transcript": transcript})
        return True

    def interrupt(self, transcript: str) -> None:
        """A real interruption of the (paused) reply: announced, then cancelled and cut to what was heard."""
        if self.cancel_reason is not None:
            return
        self.emit({"type": "cozy.response.interrupted", **self._cozy_ids(), "transcript": transcript})
        self.cancel("turn_detected")

    def _cozy_ids(self) -> dict[str, Any]:
        item = self._message
        return {"response_id": self.state.id, "item_id": item.id if item is not None else None}

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

    def _announce(self, item: Item) -> None:
        """output_item.added, and the item joins the conversation now (truncate/retrieve find it)."""
        self.state.output.append(item)
        wire = item.wire()
        self.emit(
            {
                "type": "response.output_item.added",
                "response_id": self.state.id,
                "output_index": len(self.state.output) - 1,
                "item": wire,
            }
        )
        if self.on_item is not None:
            prev = self._prev[item.id] = self.on_item(item)
            self.emit({"type": "conversation.item.added", "previous_item_id": prev, "item": wire})

    def _item_done(self, item: Item) -> None:
        wire = item.wire()
        self.emit(
            {
                "type": "response.output_item.done",
                "response_id": self.state.id,
                "output_index": self.state.output.index(item),
                "item": wire,
            }
        )
        if self.on_item is not None:
            prev = self._prev.get(item.id)
            self.emit({"type": "conversation.item.done", "previous_item_id": prev, "item": wire})

    def _open_message(self) -> Item:
        if self._message is None:
            item = Item.message(new_id(), "assistant", status="in_progress")
            self._message = item
            self._announce(item)
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
            if self.paused:
                self.speech.pause()  # paused before its first sentence: it starts on resume
            self.speech.start()
        if self.speech is not None:
            self.speech.push(text)
        self.state.text += text
        kind = "response.output_audio_transcript.delta" if self.audio else "response.output_text.delta"
        self.emit({"type": kind, **self._ids(item), "content_index": 0, "delta": text})

    def _call(self, ev: ToolCallDelta) -> None:
        call = self._calls.get(ev.index)
        if call is None:
            if self.speech is None:
                self._close_message()  # text: no more deltas for it; spoken: done once its audio is out
            self._close_calls()  # the calls before this one are complete: each is done in order
            call = Item.function_call(new_id("fc"), ev.id or new_id("call"), ev.name or "")
            self._calls[ev.index] = call
            self._announce(call)
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
            item.timeline = tuple(self.speech.spoken)  # truncate cuts the whole reply by time, once
            if self.truncated_ms is not None:  # the client truncated it while it was spoken
                text = self.speech.heard_text(self.truncated_ms)
                item.audio_ms = float(self.truncated_ms)
                self.state.text = text
            elif status != "completed":  # interrupted: history keeps only what was heard
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
        self._item_done(item)

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
            self._item_done(call)

    def _close_open(self) -> None:
        self._close_message("incomplete")
        self._close_calls("incomplete")

    def _finish(self, done: TurnDone) -> None:
        if done.stop_reason == "cancelled":
            return  # the finally block reports the cancellation
        self._close_message()
        self._close_calls()
        u = done.usage
        self.state.usage = usage(u.prompt_tokens, u.completion_tokens, u.total_tokens)
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


def usage(input_tokens: int = 0, output_tokens: int = 0, total: int | None = None) -> dict[str, Any]:
    """GA usage: always present (zero for a cancelled or failed response); all tokens are text here."""
    return {
        "total_tokens": total if total is not None else input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_tokens,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0},
    }
