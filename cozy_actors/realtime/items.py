"""Conversation items of a Realtime session: validation, ordering, and the chat messages they make.

Bounded: at most `max_items` items, and raw audio is kept only for the most recent few, so a
long call's memory does not grow with its length. Held compactly (`Item`): a call keeps up to
`max_items` of them for hours, so each costs a few hundred bytes, not a tree of dicts; the wire
dict is built only when an event carries the item.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from cozy_core.errors import CozyError

_USER_PARTS = {"input_text", "input_audio", "input_image"}
_ASSISTANT_PARTS = {"output_text", "output_audio", "text", "audio"}
_TEXT_PARTS = {"input_text", "output_text", "text"}  # the rest carry a transcript


def new_id(prefix: str = "item") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def error_event(message: str, code: str, event_id: Any = None, param: str | None = None) -> dict[str, Any]:
    """A GA `error` server event; `event_id` echoes the client's only when it is a sane string."""
    return {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id if isinstance(event_id, str) and len(event_id) <= 512 else None,
        },
    }


class RealtimeError(CozyError):
    """An error event for the client; the session stays open."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message, code=code, status=400, param=param)


class ItemError(CozyError):
    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message, code=code, status=400, param=param)


Part = tuple[str, str | None] | tuple[str, str | None, str] | dict[str, Any]
"""A content part: (type, text) for the text types; (type, transcript) or (type, transcript, audio)
for the others; any other shape a client sent (an image, more fields, another key order) as its dict."""

MESSAGE_KEYS = ("id", "object", "type", "status", "role", "content")  # the wire order of items we make
CALL_KEYS = ("id", "object", "type", "status", "call_id", "name", "arguments")
_FIELDS = {k: k for k in (*MESSAGE_KEYS, "call_id", "name", "arguments", "output")}
_VALUES = {  # the literals a client's JSON repeats in every item: one shared string each
    v: v
    for v in (
        *("message", "function_call", "function_call_output", "completed", "incomplete", "in_progress"),
        *("user", "assistant", "system", "input_text", "input_audio", "input_image", "output_text", "output_audio"),
        *("text", "audio"),
    )
}
_ORDERS: dict[tuple[str, ...], tuple[str, ...]] = {MESSAGE_KEYS: MESSAGE_KEYS, CALL_KEYS: CALL_KEYS}
_MAX_ORDERS = 64  # client items' key orders shared; a client cannot grow this table


class Item:
    """One conversation item, as few objects as it takes: its fields, the usual single content
    part unpacked (`_part`: its type, `_body`: its text or transcript; otherwise `_part` is None
    and `_body` holds the parts), and the key order of its wire form (`keys`, shared), so `wire()`
    gives back exactly the dict the client sent or the server announced. `audio_ms`: how much
    reply audio was sent (truncate)."""

    __slots__ = (
        "_body",
        "_part",
        "arguments",
        "audio_ms",
        "call_id",
        "id",
        "keys",
        "name",
        "output",
        "role",
        "status",
        "timeline",
        "type",
    )

    def __init__(self, item_id: str, kind: str, keys: tuple[str, ...], status: str = "completed") -> None:
        self.id, self.type, self.keys, self.status = item_id, kind, keys, status
        self.role: str | None = None
        self._part: str | None = None
        self._body: str | tuple[Part, ...] | None = ()
        self.call_id: str | None = None
        self.name: str | None = None
        self.arguments: str | None = None
        self.output: str | None = None
        self.audio_ms: float | None = None
        self.timeline: tuple[tuple[float, float, str], ...] = ()  # reply audio: (start_ms, end_ms, words)

    @classmethod
    def message(cls, item_id: str, role: str, content: tuple[Part, ...] = (), status: str = "completed") -> Item:
        item = cls(item_id, "message", MESSAGE_KEYS, status)
        item.role, item.content = role, content
        return item

    @classmethod
    def function_call(cls, item_id: str, call_id: str, name: str, status: str = "in_progress") -> Item:
        item = cls(item_id, "function_call", CALL_KEYS, status)
        item.call_id, item.name, item.arguments = call_id, name, ""
        return item

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Item:
        """A normalized item dict (validate_item's) in compact form; `wire()` gives it back."""
        try:
            keys = tuple(_FIELDS[k] for k in wire)
        except KeyError as exc:
            raise ValueError(f"not an item field: {exc}") from None
        kind, status, role = wire["type"], wire["status"], wire.get("role")
        item = cls(wire["id"], _VALUES.get(kind, kind), _shared(keys), _VALUES.get(status, status))
        item.role = _VALUES.get(role, role) if isinstance(role, str) else None
        item.content = tuple(_compact(p) for p in wire.get("content") or ())
        item.call_id, item.name = wire.get("call_id"), wire.get("name")
        item.arguments, item.output = wire.get("arguments"), wire.get("output")
        return item

    @property
    def content(self) -> tuple[Part, ...]:
        if self._part is not None:
            return ((self._part, self._body),)
        return self._body

    @content.setter
    def content(self, parts: tuple[Part, ...]) -> None:
        if len(parts) == 1 and isinstance(parts[0], tuple) and len(parts[0]) == 2:
            self._part, self._body = parts[0]
        else:
            self._part, self._body = None, parts

    def wire(self) -> dict[str, Any]:
        """The item as events carry it (a new dict each time; private fields never in it)."""
        out: dict[str, Any] = {}
        for k in self.keys:
            if k == "object":
                out[k] = "realtime.item"
            elif k == "content":
                out[k] = [_part_wire(p) for p in self.content]
            else:
                out[k] = getattr(self, k)
        return out

    def __repr__(self) -> str:
        return f"Item({self.wire()!r})"

    def text(self) -> str:
        """The words of a message item (typed text or audio transcript)."""
        if self._part is not None:
            return self._body or ""
        return " ".join(v for p in self.content if (v := _words(p)))

    def has_audio(self) -> bool:
        return any(len(p) == 3 if isinstance(p, tuple) else "audio" in p for p in self.content)

    def attach_audio(self, audio_b64: str) -> None:
        """The committed input audio, in the first part (as the client's retrieve shows it)."""
        self._set_first("audio", audio_b64)

    def set_transcript(self, text: str) -> None:
        """The transcript of an input audio item, once it is known."""
        self._set_first("transcript", text)

    def drop_audio(self) -> None:
        self.content = tuple(_compact({k: v for k, v in _part_wire(p).items() if k != "audio"}) for p in self.content)

    def _set_first(self, key: str, value: str) -> None:
        parts = self.content
        if parts:
            first = _part_wire(parts[0])
            first[key] = value
            self.content = (_compact(first), *parts[1:])


def _shared(keys: tuple[str, ...]) -> tuple[str, ...]:
    known = _ORDERS.get(keys)
    if known is None:
        known = keys
        if len(_ORDERS) < _MAX_ORDERS:
            _ORDERS[keys] = keys
    return known


def _compact(part: dict[str, Any]) -> Part:
    kind, keys = part.get("type"), tuple(part)
    if kind in _TEXT_PARTS:
        if keys == ("type", "text") and isinstance(part["text"], str):
            return (_VALUES[kind], part["text"])
    elif kind in _VALUES and keys == ("type", "transcript"):
        return (_VALUES[kind], part["transcript"])
    elif kind in _VALUES and keys == ("type", "transcript", "audio") and isinstance(part["audio"], str):
        return (_VALUES[kind], part["transcript"], part["audio"])
    return dict(part)


def _part_wire(part: Part) -> dict[str, Any]:
    if isinstance(part, dict):
        return dict(part)
    if part[0] in _TEXT_PARTS:
        return {"type": part[0], "text": part[1]}
    if len(part) == 2:
        return {"type": part[0], "transcript": part[1]}
    return {"type": part[0], "transcript": part[1], "audio": part[2]}


def _words(part: Part) -> str | None:
    if isinstance(part, tuple):
        return part[1]
    return part.get("text") if part.get("type") in _TEXT_PARTS else part.get("transcript")


def text_of(item: Item) -> str:
    """The words of a message item (typed text or audio transcript)."""
    return item.text()


def validate_item(raw: Any) -> Item:
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
    return Item.from_wire(item)


class Items:
    """The conversation, in order (a dict keeps insertion order; inserting mid-way rebuilds it)."""

    def __init__(self, max_items: int = 500, keep_audio_items: int = 4) -> None:
        self.max_items = max_items
        self.keep_audio_items = keep_audio_items
        self._items: dict[str, Item] = {}
        self._with_audio: dict[str, None] = {}  # ids of the items holding raw audio, oldest first

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def last_id(self) -> str | None:
        return next(reversed(self._items), None) if self._items else None

    def add(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert after `previous_item_id` ("root" = first; None = at the end); returns the id before it."""
        if item.id in self._items:
            raise ItemError(f"item id {item.id!r} already exists", "item.id", code="duplicate_item_id")
        if previous_item_id is None:
            prev = self.last_id()
            self._items[item.id] = item
        elif previous_item_id == "root":
            prev = None
            self._items = {item.id: item, **self._items}
        elif previous_item_id in self._items:
            prev = previous_item_id
            ordered = list(self._items.items())
            at = next(i for i, (k, _) in enumerate(ordered) if k == previous_item_id) + 1
            ordered.insert(at, (item.id, item))
            self._items = dict(ordered)
        else:
            raise ItemError(
                f"previous_item_id {previous_item_id!r} not found", "previous_item_id", code="item_not_found"
            )
        if item.has_audio():
            self._with_audio[item.id] = None
        self._bound()
        return prev

    def attach_audio(self, item_id: str, audio_b64: str) -> None:
        """The raw audio of a committed input item (its first part), kept while it is among the newest."""
        item = self._items.get(item_id)
        if item is not None:  # bounded at the next add, as before: the newest few and this one
            item.attach_audio(audio_b64)
            self._with_audio[item_id] = None

    def delete(self, item_id: str) -> None:
        if self._items.pop(item_id, None) is None:
            raise ItemError(f"item {item_id!r} not found", "item_id", code="item_not_found")
        self._with_audio.pop(item_id, None)

    def _bound(self) -> None:
        while len(self._items) > self.max_items:
            self._with_audio.pop(self._items.pop(next(iter(self._items))).id, None)
        while len(self._with_audio) > self.keep_audio_items:
            old = self._items.get(next(iter(self._with_audio)))
            del self._with_audio[next(iter(self._with_audio))]
            if old is not None:
                old.drop_audio()

    def messages(self) -> list[dict[str, Any]]:
        """The conversation as chat-completions messages (what the Turn sends the model)."""
        return messages_of(self._items.values())


def messages_of(items: Iterable[Item]) -> list[dict[str, Any]]:
    """Items as chat-completions messages (a conversation, or a response's own `input`)."""
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.type
        if kind == "message":
            text = item.text()
            if text:
                out.append({"role": item.role, "content": text})
        elif kind == "function_call":
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments or ""},
            }
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls") is not None:
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    return out
