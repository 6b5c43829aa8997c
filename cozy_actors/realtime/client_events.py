"""The shape of every Realtime client event (GA names; the beta dialect is renamed at the edge).

Why a model per event: handlers read fields with `event.get(...)` and trust their types, so a
`text` that is a number, an `item_id` that is a list or a `previous_item_id` that is an object
used to raise deep inside a handler and crash the session actor. Each event is validated here
first, strictly (no coercion, no unknown fields), and a bad one becomes one `error` event that
names the offending `param`; the session carries on. The session configuration inside
`session.update` is validated by `SessionConfig` (config.py), which also merges it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PART_TYPES = ("input_text", "input_audio", "input_image", "output_text", "output_audio", "text", "audio")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ContentPart(_Strict):
    type: Literal["input_text", "input_audio", "input_image", "output_text", "output_audio", "text", "audio"]
    text: str | None = None
    audio: str | None = None  # base64
    transcript: str | None = None
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class ClientItem(_Strict):
    """A conversation item as a client may send it; which fields each `type` needs is checked by
    items.validate_item (role-specific content parts, function call names)."""

    id: str | None = Field(None, min_length=1, max_length=64)
    type: Literal["message", "function_call", "function_call_output", "item_reference"]
    object: Literal["realtime.item"] | None = None
    status: Literal["completed", "incomplete", "in_progress"] | None = None
    role: Literal["user", "assistant", "system"] | None = None
    content: list[ContentPart] | None = None
    call_id: str | None = Field(None, min_length=1, max_length=64)
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class ResponseAudioOutput(_Strict):
    format: dict[str, Any] | None = None  # validated as AudioFormat by SessionConfig.merged
    voice: str | dict[str, Any] | None = None


class ResponseAudio(_Strict):
    output: ResponseAudioOutput | None = None


class ResponseParams(_Strict):
    """`response.create`'s `response`: per-response overrides of the session configuration.
    `input` (items, or `{"type": "item_reference", "id": ...}`) replaces the conversation as the
    response's context; `conversation: "none"` makes it out-of-band (response_start.py)."""

    instructions: str | None = None
    output_modalities: list[Literal["audio", "text"]] | None = Field(None, min_length=1)
    tools: list[dict[str, Any]] | None = None  # validated as FunctionTool by SessionConfig.merged
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    conversation: Literal["auto", "none"] | None = None
    metadata: dict[str, str] | None = Field(None, max_length=16)
    input: list[ClientItem] | None = Field(None, max_length=500)
    audio: ResponseAudio | None = None
    prompt: None = None  # refused: no stored prompt templates
    parallel_tool_calls: Literal[True] | None = None
    reasoning: None = None


class _Event(_Strict):
    type: str
    event_id: str | None = Field(None, max_length=512)


class SessionUpdate(_Event):
    session: dict[str, Any]


class AudioAppend(_Event):
    audio: str


class NoFields(_Event):
    """input_audio_buffer.commit/clear, output_audio_buffer.clear: nothing but type and event_id."""


class ItemCreate(_Event):
    previous_item_id: str | None = None
    item: ClientItem


class ItemRef(_Event):
    item_id: str = Field(min_length=1, max_length=64)


class ItemTruncate(ItemRef):
    content_index: int = Field(0, ge=0)
    audio_end_ms: int = Field(ge=0)


class ResponseCreate(_Event):
    response: ResponseParams | None = None


class ResponseCancel(_Event):
    response_id: str | None = None


CLIENT_EVENTS: dict[str, type[_Event]] = {
    "session.update": SessionUpdate,
    "input_audio_buffer.append": AudioAppend,
    "input_audio_buffer.commit": NoFields,
    "input_audio_buffer.clear": NoFields,
    "output_audio_buffer.clear": NoFields,
    "conversation.item.create": ItemCreate,
    "conversation.item.delete": ItemRef,
    "conversation.item.retrieve": ItemRef,
    "conversation.item.truncate": ItemTruncate,
    "response.create": ResponseCreate,
    "response.cancel": ResponseCancel,
}

_CODES = {"extra_forbidden": "unknown_parameter", "missing": "missing_required_parameter"}


def param_of(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the client's path: ("item", "content", 0, "text") ->
    "item.content[0].text". Union members add their type to the location ("str",
    "constrained-int", "literal['inf']"): those are not the client's names and are left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _FIELD.match(part) and part not in _TYPE_TAGS:
            out += f".{part}" if out else part
    return out


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "server_vad", "semantic_vad"})


def describe(exc: ValidationError) -> tuple[str, str, str]:
    """(message, code, param) of the first problem, for the `error` event."""
    first = exc.errors()[0]
    param = param_of(tuple(first["loc"]))
    code = _CODES.get(first["type"], "invalid_value")
    if code == "unknown_parameter":
        return f"Unknown parameter: '{param}'.", code, param
    if code == "missing_required_parameter":
        return f"Missing required parameter: '{param}'.", code, param
    return f"Invalid value for '{param}': {first['msg']}", code, param
