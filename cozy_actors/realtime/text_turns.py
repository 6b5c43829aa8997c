"""A text chat turn for a conversation with a live call is answered inside that call.

One actor per conversation (DESIGN, "the one idea"): while a call holds the conversation, the
chat service's `StartTurn` reaches the call's RealtimeActor. The user's text becomes a user item
of the call (the realtime client sees conversation.item.added/done; the call's writer stores
it), the reply is an ordinary response of the call (spoken when the call speaks), and the HTTP
caller reads that same response through a `CallTurn`: a mirror of the response's turn events,
not a second pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from cozy_actors.conversation.actor import SessionBusy, TurnRequest
from cozy_actors.conversation.events import ServerToolCall, TextDelta, TurnDone, TurnEvent, TurnFailed
from cozy_core.errors import CozyError, Invalid

from .items import Item, new_id

if TYPE_CHECKING:
    from .response import ResponseRun
    from .session import RealtimeSession

MAX_MIRRORED = 20_000  # events held for a slow HTTP reader; a reply is bounded by max_tokens anyway


def start_text_turn(session: RealtimeSession, req: TurnRequest) -> CallTurn | CozyError:
    """Add the request's messages to the call and start its response; the answer for `ask`.

    A response already running (or the user's speech still being transcribed: its response is
    about to start) is a 409, as a second text turn on a busy conversation is."""
    if session.response is not None or (session.voice is not None and session.voice.awaiting_transcript):
        return SessionBusy(session.persist_id or session.id)
    try:
        items = [_item(m, i) for i, m in enumerate(req.messages)]
    except CozyError as exc:
        return exc
    for item in items:
        session.add_item(item, None)  # announced to the call's client; a user message is stored once
    run = session.start_response(session.config)
    turn = CallTurn(run, session_id=session.persist_id, personality_id=session.resolved.personality.id)
    run.mirror = turn.on_event
    return turn


def _item(message: dict[str, Any], index: int) -> Item:
    """A chat message as a call item: user text, or system/developer instructions."""
    role = message.get("role")
    if role not in ("user", "system", "developer"):
        raise Invalid(
            f"messages[{index}]: a conversation in a live call takes user or system messages only",
            param=f"messages[{index}].role",
        )
    content = message.get("content")
    if isinstance(content, list):
        if any(not isinstance(p, dict) or p.get("type") != "text" for p in content):
            raise Invalid(
                f"messages[{index}]: a conversation in a live call takes text content only",
                param=f"messages[{index}].content",
            )
        content = " ".join(str(p.get("text") or "") for p in content)
    if not isinstance(content, str) or not content.strip():
        raise Invalid(f"messages[{index}].content must be non-empty text", param=f"messages[{index}].content")
    return Item.message(new_id(), "user" if role == "user" else "system", (("input_text", content),))


class CallTurn:
    """The HTTP caller's view of a call's response, with the TurnHandle interface the chat route
    consumes. Text deltas pass as they come; the final event is given once the call's response has
    ended, so the conversation is free for the next turn when the caller has its answer. Calls to
    the call's client tools stay with the realtime client (they are not mirrored).

    `cancel()` (the HTTP caller went away) only detaches this mirror: the reply also belongs to the
    call, whose client can cancel it (`response.cancel`, barge-in)."""

    def __init__(self, run: ResponseRun, *, session_id: str | None, personality_id: str) -> None:
        self.turn_id = run.state.id
        self.session_id = session_id
        self.personality_id = personality_id
        self.model = run.handle.model
        self.mode = "text"
        self.finished = False
        self._queue: asyncio.Queue[TurnEvent | None] = asyncio.Queue()
        self._final: TurnEvent | None = None
        self._detached = False
        self._started = False

    def on_event(self, event: TurnEvent | None) -> None:
        """Called on the response's task for each of its turn events, then with None at its end."""
        if self._detached or self.finished:
            return
        if event is None:
            self.finished = True
            self._queue.put_nowait(self._final or _ended())
            self._queue.put_nowait(None)
        elif isinstance(event, TurnDone | TurnFailed):
            self._final = event
        elif isinstance(event, TextDelta | ServerToolCall) and self._queue.qsize() < MAX_MIRRORED:
            self._queue.put_nowait(event)

    def cancel(self, reason: str = "cancelled", final: TurnEvent | None = None) -> None:
        """Stop mirroring (safe at any time, more than once); the call's response goes on."""
        self._detached = True
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[TurnEvent]:
        if self._started:
            raise RuntimeError("a turn handle can be consumed once")
        self._started = True
        while (event := await self._queue.get()) is not None:
            yield event
            if isinstance(event, TurnDone | TurnFailed):
                return


def _ended() -> TurnEvent:
    """The response ended without a final turn event (the call stopped under it)."""
    return TurnFailed("RESOURCE_SESSION_ENDED", "the call ended before the reply was complete", 503)
