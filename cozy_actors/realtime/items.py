"""Conversation items of a Realtime session: validation, ordering, and the chat messages they make.

Bounded: at most `max_items` items, and raw audio is kept only for the most recent few, so a
long call's memory does not grow with its length.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Any

from cozy_core.errors import CozyError

_USER_PARTS = {"input_text", "input_audio", "input_image"}
_ASSISTANT_PARTS = {"output_text", "output_audio", "text", "audio"}
_TEXT_PARTS = {"input_text", "output_text", "text"}


def new_id(prefix: str = "item") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class RealtimeError(CozyError):
    """An error event for the client; the session stays open."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message, code=code, status=400, param=param)


class ItemError(CozyError):
    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message, code=code, status=400, param=param)


def validate_item(raw: Any) -> dict[str, Any]:
    """A client item, checked and normalized (id, object, status filled in). Field types were
    checked by client_events.ClientItem; this checks what each item type needs."""
    if not isinstance(raw, dict):
        raise ItemError("item must be an object", "item")
    kind = raw.get("type")
    item = {k: v for k, v in raw.items() if v is not None}  # an explicit null means "not given"
    item.setdefault("id", new_id())
    item["object"] = "realtime.item"
    item.setdefault("status", "completed")
    if kind == "message":
        role = raw.get("role")
        if role not in ("user", "system", "assistant"):
            raise ItemError("item.role must be user, system or assistant", "item.role")
        content = raw.get("content")
        if not isinstance(content, list) or not content:
            raise ItemError("item.content must be a non-empty list of content parts", "item.content")
        allowed = _USER_PARTS if role == "user" else _ASSISTANT_PARTS if role == "assistant" else {"input_text"}
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in allowed:
                raise ItemError(f"item.content[{i}].type must be one of {sorted(allowed)}", f"item.content[{i}].type")
            if part["type"] in _TEXT_PARTS and not isinstance(part.get("text"), str):
                raise ItemError(f"item.content[{i}].text must be a string", f"item.content[{i}].text")
    elif kind == "function_call":
        if not isinstance(raw.get("name"), str) or not isinstance(raw.get("arguments", ""), str):
            raise ItemError("function_call items need name and arguments (string)", "item.name")
        item.setdefault("call_id", new_id("call"))
        item.setdefault("arguments", "")
    elif kind == "function_call_output":
        if not isinstance(raw.get("call_id"), str) or not isinstance(raw.get("output"), str):
            raise ItemError("function_call_output items need call_id and output (string)", "item.call_id")
    else:
        raise ItemError("item.type must be message, function_call or function_call_output", "item.type")
    return item


def text_of(item: dict[str, Any]) -> str:
    """The words of a message item (typed text or audio transcript)."""
    out = []
    for part in item.get("content") or ():
        value = (
            part.get("text") if part.get("type") in ("input_text", "output_text", "text") else part.get("transcript")
        )
        if value:
            out.append(value)
    return " ".join(out)


class Items:
    def __init__(self, max_items: int = 500, keep_audio_items: int = 4) -> None:
        self.max_items = max_items
        self.keep_audio_items = keep_audio_items
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> dict[str, Any] | None:
        return self._items.get(item_id)

    def last_id(self) -> str | None:
        return next(reversed(self._items), None) if self._items else None

    def add(self, item: dict[str, Any], previous_item_id: str | None = None) -> str | None:
        """Insert after `previous_item_id` ("root" = first; None = at the end); returns the id before it."""
        if item["id"] in self._items:
            raise ItemError(f"item id {item['id']!r} already exists", "item.id", code="duplicate_item_id")
        if previous_item_id is None:
            prev = self.last_id()
            self._items[item["id"]] = item
        elif previous_item_id == "root":
            prev = None
            self._items[item["id"]] = item
            self._items.move_to_end(item["id"], last=False)
        elif previous_item_id in self._items:
            prev = previous_item_id
            ordered = list(self._items.items())
            at = next(i for i, (k, _) in enumerate(ordered) if k == previous_item_id) + 1
            ordered.insert(at, (item["id"], item))
            self._items = OrderedDict(ordered)
        else:
            raise ItemError(
                f"previous_item_id {previous_item_id!r} not found", "previous_item_id", code="item_not_found"
            )
        self._bound()
        return prev

    def delete(self, item_id: str) -> None:
        if self._items.pop(item_id, None) is None:
            raise ItemError(f"item {item_id!r} not found", "item_id", code="item_not_found")

    def _bound(self) -> None:
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        with_audio = [i for i in self._items.values() if any("audio" in p for p in i.get("content") or ())]
        for item in with_audio[: -self.keep_audio_items or None]:
            for part in item.get("content") or ():
                part.pop("audio", None)

    def messages(self) -> list[dict[str, Any]]:
        """The conversation as chat-completions messages (what the Turn sends the model)."""
        out: list[dict[str, Any]] = []
        for item in self._items.values():
            kind = item["type"]
            if kind == "message":
                text = text_of(item)
                if text:
                    out.append({"role": item["role"], "content": text})
            elif kind == "function_call":
                call = {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item.get("arguments") or ""},
                }
                if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls") is not None:
                    out[-1]["tool_calls"].append(call)
                else:
                    out.append({"role": "assistant", "content": None, "tool_calls": [call]})
            elif kind == "function_call_output":
                out.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
        return out
