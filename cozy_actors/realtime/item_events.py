"""Handlers of the `conversation.item.*` client events (one function per event type).

Kept apart from the session so each file has one job: the session owns state and responses,
these edit the conversation it holds. Each runs on the actor's task like every handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .audio_out import words_heard
from .items import Item, ItemError, RealtimeError, validate_item

if TYPE_CHECKING:
    from .session import RealtimeSession


async def item_create(s: RealtimeSession, event: dict[str, Any]) -> None:
    s.add_item(validate_item(event.get("item")), event.get("previous_item_id"))


async def item_delete(s: RealtimeSession, event: dict[str, Any]) -> None:
    item_id = _item_id(event)
    s.items.delete(item_id)
    s.emit({"type": "conversation.item.deleted", "item_id": item_id})


async def item_retrieve(s: RealtimeSession, event: dict[str, Any]) -> None:
    item_id = _item_id(event)
    item = s.items.get(item_id)
    if item is None:
        raise ItemError(f"item {item_id!r} not found", "item_id", code="item_not_found")
    s.emit({"type": "conversation.item.retrieved", "item": item.wire()})


async def item_truncate(s: RealtimeSession, event: dict[str, Any]) -> None:
    """The client says how much of an assistant item it played: keep only the words heard."""
    item_id = _item_id(event)
    item = s.items.get(item_id)
    if item is None or item.role != "assistant":
        raise ItemError(f"assistant item {item_id!r} not found", "item_id", code="item_not_found")
    end_ms = event.get("audio_end_ms")
    run = s.response
    live = run if run is not None and item.status == "in_progress" and item in run.state.output else None
    played_ms = (live.speech.sent_ms if live.speech is not None else 0.0) if live is not None else item.audio_ms or 0.0
    if not isinstance(end_ms, int) or end_ms < 0 or end_ms > played_ms:
        raise RealtimeError(
            f"audio_end_ms ({end_ms}) must be between 0 and the item's audio length ({int(played_ms)} ms)",
            param="audio_end_ms",
        )
    if live is not None:
        live.truncated_ms = end_ms  # still speaking: the item keeps these words when it is done
        if s.voice is not None:
            s.voice.barge.truncated(live)  # paused: the client stopped it, that wins (cancelled)
    else:
        item.content = (("output_audio", heard_text(item, end_ms)),)
        item.audio_ms = float(end_ms)
    s.emit({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end_ms})


def _item_id(event: dict[str, Any]) -> str:
    item_id = event.get("item_id")
    if not isinstance(item_id, str) or not item_id:
        raise RealtimeError("'item_id' is required", param="item_id")
    return item_id


def heard_text(item: Item, end_ms: int) -> str:
    """The words of an assistant item the listener heard: by the reply's own sentence timeline
    (so a reply already cut at barge-in is not cut a second time), else by audio proportion."""
    if item.timeline:
        return words_heard(item.timeline, end_ms)
    text = item.text()
    total = item.audio_ms or 0.0
    if not text or total <= 0:
        return ""
    cut = int(len(text) * min(1.0, end_ms / total))
    return text[:cut].rsplit(" ", 1)[0] if cut < len(text) else text
