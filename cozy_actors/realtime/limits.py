"""Size caps of Realtime client events (`api.realtime`): a too-big item, audio chunk or
instructions is answered with an `error` naming the param, and the session carries on.

Checked before the event does any work (before base64 is decoded, before an item is stored), so a
client cannot make the session hold more than the caps say. The WebSocket message cap and the
mailbox byte bound (transport, runtime) bound what reaches these checks.
"""

from __future__ import annotations

from typing import Any

from cozy_actors.config.limits import RealtimeLimitsConfig

from .items import RealtimeError

_TEXT_FIELDS = ("text", "transcript")


def too_big(what: str, param: str, limit: int, unit: str) -> RealtimeError:
    """OpenAI's codes: string_above_max_length for strings, array_above_max_length for lists."""
    code = "array_above_max_length" if unit in ("content parts", "tools") else "string_above_max_length"
    return RealtimeError(f"{what} is larger than the limit of {limit} {unit}.", code=code, param=param)


def check_text(value: Any, param: str, limit: int) -> None:
    """A string field within `limit` characters (other types are left to the event's own checks)."""
    if isinstance(value, str) and len(value) > limit:
        raise too_big(f"'{param}'", param, limit, "characters")


def check_audio_b64(value: Any, param: str, limits: RealtimeLimitsConfig) -> None:
    """Base64 audio whose decoded size would exceed `max_audio_append_bytes`, refused undecoded."""
    if isinstance(value, str) and len(value) // 4 * 3 > limits.max_audio_append_bytes:
        raise too_big(f"'{param}'", param, limits.max_audio_append_bytes, "bytes of audio")


def check_item(raw: Any, limits: RealtimeLimitsConfig) -> None:
    """conversation.item.create's `item`: part count, each text/transcript, audio, arguments, output."""
    if not isinstance(raw, dict):
        return
    content = raw.get("content")
    if isinstance(content, list):
        if len(content) > limits.max_content_parts:
            raise too_big("item.content", "item.content", limits.max_content_parts, "content parts")
        for i, part in enumerate(content):
            if isinstance(part, dict):
                for field in _TEXT_FIELDS:
                    check_text(part.get(field), f"item.content[{i}].{field}", limits.max_text_chars)
                check_audio_b64(part.get("audio"), f"item.content[{i}].audio", limits)
    for field in ("arguments", "output", "name", "call_id"):
        check_text(raw.get(field), f"item.{field}", limits.max_text_chars)


def check_config(update: Any, prefix: str, limits: RealtimeLimitsConfig) -> None:
    """session.update's `session` / response.create's `response`: instructions and tools."""
    if not isinstance(update, dict):
        return
    check_text(update.get("instructions"), f"{prefix}.instructions", limits.max_instructions_chars)
    tools = update.get("tools")
    if isinstance(tools, list):
        if len(tools) > limits.max_tools:
            raise too_big(f"{prefix}.tools", f"{prefix}.tools", limits.max_tools, "tools")
        for i, tool in enumerate(tools):
            if isinstance(tool, dict):
                check_text(tool.get("description"), f"{prefix}.tools[{i}].description", limits.max_text_chars)


def check_event(etype: str, event: dict[str, Any], limits: RealtimeLimitsConfig) -> None:
    """The caps that apply to one client event, by type (others carry nothing large)."""
    if etype == "input_audio_buffer.append":
        check_audio_b64(event.get("audio"), "audio", limits)
    elif etype == "conversation.item.create":
        check_item(event.get("item"), limits)
    elif etype == "session.update":
        check_config(event.get("session"), "session", limits)
    elif etype == "response.create":
        check_config(event.get("response"), "response", limits)
