"""What the /ui page shows of a call: the live conversation, built from the actor's server events.

The bridge feeds it the events the session emits anyway (transcription deltas, reply transcript,
barge-in, the `cozy.response.*` pause/resume/interrupt events) and hands the rendered HTML to
fastrtc as side data; nothing here runs per audio frame. Each turn's latency is measured here,
server-side: from the end of the user's speech (the VAD's `audio_end_ms`, put back on the wall
clock with how much audio arrived after it) to the first reply audio leaving for the peer.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_TURNS = 60  # the page keeps the newest turns: the HTML sent per update stays small
WATCHED = frozenset(
    {
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "response.created",
        "response.output_audio_transcript.delta",
        "response.output_text.delta",
        "response.output_audio_transcript.done",
        "response.done",
        "cozy.response.paused",
        "cozy.response.resumed",
        "cozy.response.interrupted",
    }
)
EMPTY = '<div class="cozy-empty">The conversation will appear here once the call starts.</div>'
RESUMED = {"no_words": "no words", "noise": "noise", "backchannel": "backchannel"}


@dataclass(slots=True)
class Turn:
    role: str  # "user" | "assistant"
    item_id: str
    text: str = ""
    final: bool = False
    state: str = ""  # "" | "paused" | "resumed" | "interrupted" | "cancelled" | "failed" | "incomplete"
    reason: str = ""  # why a false interruption was dismissed (cozy.response.resumed)
    heard: str | None = None  # interrupted: the part the user heard (the rest is shown struck out)
    response_id: str = ""
    latency_ms: int | None = None


class Conversation:
    """The turns of one call, in order, and the end-of-speech -> first-audio latency of each reply."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.turns: list[Turn] = []
        self._clock = clock
        self._speech_end: float | None = None  # wall-clock end of the user's last utterance
        self._pending_latency: dict[str, int] = {}  # response id -> ms, before its text arrives
        self._barged: set[str] = set()  # responses the user talked over
        self._response: str | None = None  # the response in progress

    # --- events -------------------------------------------------------------------------------
    def apply(self, event: dict[str, Any], input_ms: float) -> bool:
        """One server event; `input_ms`: the call's input audio so far. True when the view changed."""
        etype = event.get("type")
        if etype == "input_audio_buffer.speech_started":
            if self._response is not None:
                self._barged.add(self._response)
            self._user(str(event.get("item_id") or ""))
            return True
        if etype == "input_audio_buffer.speech_stopped":
            after_ms = max(0.0, input_ms - float(event.get("audio_end_ms") or input_ms))
            self._speech_end = self._clock() - after_ms / 1000.0
            return False
        if etype == "conversation.item.input_audio_transcription.delta":
            turn = self._user(str(event.get("item_id") or ""))
            turn.text += str(event.get("delta") or "")
            return True
        if etype == "conversation.item.input_audio_transcription.completed":
            return self._user_final(str(event.get("item_id") or ""), str(event.get("transcript") or ""))
        if etype == "conversation.item.input_audio_transcription.failed":
            turn = self._user(str(event.get("item_id") or ""))
            turn.final, turn.state = True, "failed"
            return True
        if etype == "response.created":
            self._response = str((event.get("response") or {}).get("id") or "")
            return False
        if etype in ("response.output_audio_transcript.delta", "response.output_text.delta"):
            turn = self._assistant(event)
            turn.text += str(event.get("delta") or "")
            return True
        if etype == "response.output_audio_transcript.done":
            turn = self._assistant(event)
            heard = str(event.get("transcript") or "")
            if heard != turn.text:
                turn.heard = heard  # cut to what was heard (an interruption, or a truncate)
            return True
        if etype == "response.done":
            return self._response_done(event.get("response") or {})
        if etype in ("cozy.response.paused", "cozy.response.resumed", "cozy.response.interrupted"):
            return self._interruption(etype.rsplit(".", 1)[1], event)
        return False

    def first_audio(self) -> bool:
        """The response's first audio chunk is leaving: the turn's latency, if a user turn led to it."""
        if self._speech_end is None:
            return False
        ms = round((self._clock() - self._speech_end) * 1000)
        self._speech_end = None
        rid = self._response or ""
        turn = self._by_response(rid)
        if turn is None:
            self._pending_latency[rid] = ms
        else:
            turn.latency_ms = ms
        return True

    def _user(self, item_id: str) -> Turn:
        for turn in reversed(self.turns):
            if turn.role == "user" and turn.item_id == item_id:
                return turn
        return self._add(Turn("user", item_id))

    def _user_final(self, item_id: str, transcript: str) -> bool:
        turn = self._user(item_id)
        if not transcript.strip():
            self.turns.remove(turn)  # noise, or no words: nothing was said, and no reply will follow
            self._speech_end = None
            return True
        turn.text, turn.final = transcript, True
        return True

    def _assistant(self, event: dict[str, Any]) -> Turn:
        item_id = str(event.get("item_id") or "")
        for turn in reversed(self.turns):
            if turn.role == "assistant" and turn.item_id == item_id:
                return turn
        rid = str(event.get("response_id") or self._response or "")
        return self._add(Turn("assistant", item_id, response_id=rid, latency_ms=self._pending_latency.pop(rid, None)))

    def _response_done(self, response: dict[str, Any]) -> bool:
        rid = str(response.get("id") or "")
        status = response.get("status")
        if rid == self._response:
            self._response = None
        self._pending_latency.pop(rid, None)
        barged = rid in self._barged
        self._barged.discard(rid)
        changed = False
        for turn in self.turns:
            if turn.role == "assistant" and turn.response_id == rid:
                turn.final = True
                if status == "cancelled" and turn.state != "interrupted":
                    reason = (response.get("status_details") or {}).get("reason")
                    turn.state = "interrupted" if barged or reason == "turn_detected" else "cancelled"
                elif status in ("failed", "incomplete") and not turn.state:
                    turn.state = str(status)
                elif status == "completed" and turn.state == "paused":
                    turn.state = ""
                changed = True
        return changed

    def _interruption(self, what: str, event: dict[str, Any]) -> bool:
        rid, item_id = str(event.get("response_id") or ""), str(event.get("item_id") or "")
        if what == "resumed":
            self._speech_end = None  # the reply goes on: that utterance starts no turn of its own
            self._barged.discard(rid)
        elif what == "interrupted" and rid:
            self._barged.add(rid)
        for turn in reversed(self.turns):
            if turn.role == "assistant" and (turn.item_id == item_id or turn.response_id == rid):
                turn.state, turn.reason = what, str(event.get("reason") or "")
                return True
        return False

    def _by_response(self, rid: str) -> Turn | None:
        for turn in reversed(self.turns):
            if turn.role == "assistant" and turn.response_id == rid:
                return turn
        return None

    def _add(self, turn: Turn) -> Turn:
        self.turns.append(turn)
        if len(self.turns) > MAX_TURNS:
            del self.turns[: len(self.turns) - MAX_TURNS]
        return turn

    # --- view ---------------------------------------------------------------------------------
    def html(self) -> str:
        """The conversation as HTML for the page (every text escaped)."""
        if not self.turns:
            return EMPTY
        rows = "".join(_row(turn) for turn in self.turns)
        return f'<div class="cozy-turns">{rows}</div>'


def _row(turn: Turn) -> str:
    who = "You" if turn.role == "user" else "Assistant"
    live = "final" if turn.final else "live"
    text = html.escape(turn.text)
    if turn.heard is not None and turn.text.startswith(turn.heard):
        unheard = turn.text[len(turn.heard) :]
        text = html.escape(turn.heard) + (f'<s class="cozy-unheard">{html.escape(unheard)}</s>' if unheard else "")
    elif turn.heard is not None:
        text = html.escape(turn.heard)
    if not turn.text and turn.role == "user" and not turn.final:
        text = '<span class="cozy-listening">listening…</span>'
    marks = ""
    if turn.state:
        marks += f'<span class="cozy-mark cozy-{turn.state}">{html.escape(_mark(turn))}</span>'
    if turn.latency_ms is not None:
        tip = "from the end of your speech to the first reply audio (server-side)"
        marks += f'<span class="cozy-latency" title="{tip}">reply in {turn.latency_ms} ms</span>'
    return (
        f'<div class="cozy-turn cozy-{turn.role} cozy-{live}" data-role="{turn.role}" data-state="{turn.state}">'
        f'<span class="cozy-who">{who}</span><span class="cozy-text">{text}</span>{marks}</div>'
    )


def _mark(turn: Turn) -> str:
    if turn.state == "resumed":
        reason = RESUMED.get(turn.reason, turn.reason)
        return f"false interruption ({reason}), resumed" if reason else "false interruption, resumed"
    return {
        "paused": "paused: you spoke…",
        "interrupted": "interrupted",
        "cancelled": "cancelled",
        "failed": "not understood" if turn.role == "user" else "failed",
        "incomplete": "incomplete",
    }.get(turn.state, turn.state)


# Gradio's block gives the frame, the height limit and the scrolling to the newest turn.
CSS = """
#cozy-conversation .cozy-turn { margin: 4px 0; padding: 6px 10px; border-radius: 8px; max-width: 85%; }
#cozy-conversation .cozy-user { background: var(--color-accent-soft); margin-left: auto; }
#cozy-conversation .cozy-assistant { background: var(--background-fill-secondary); }
#cozy-conversation .cozy-live .cozy-text { opacity: 0.75; font-style: italic; }
#cozy-conversation .cozy-who { font-weight: 600; margin-right: 8px; }
#cozy-conversation .cozy-mark, #cozy-conversation .cozy-latency { margin-left: 8px; font-size: 0.8em;
  padding: 1px 6px; border-radius: 6px; white-space: nowrap; }
#cozy-conversation .cozy-interrupted, #cozy-conversation .cozy-failed { background: #fde2e1; color: #9b1c1c; }
#cozy-conversation .cozy-paused { background: #fef3c7; color: #92400e; }
#cozy-conversation .cozy-resumed { background: #dcfce7; color: #166534; }
#cozy-conversation .cozy-cancelled, #cozy-conversation .cozy-incomplete { background: #e5e7eb; color: #374151; }
#cozy-conversation .cozy-latency { background: #e0e7ff; color: #3730a3; }
#cozy-conversation .cozy-unheard { opacity: 0.5; }
"""
