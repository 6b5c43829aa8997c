"""What a Turn emits. Transports translate these into their wire format (SSE chunks today,
Realtime events and audio later); the Turn never knows which transport listens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cozy_actors.engines.llm.base import LLMUsage


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a call to a client-declared tool (OpenAI streaming shape: id/name first only)."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(slots=True)
class ServerToolCall:
    """A server-side tool ran inside the turn (for metadata, audit and logs; not sent as a tool_call)."""

    name: str
    call_id: str
    ok: bool
    latency_s: float


@dataclass(slots=True)
class TurnDone:
    finish_reason: str  # stop | length | tool_calls | content_filter
    usage: LLMUsage
    model: str
    tool_iterations: int
    stop_reason: str | None = None  # e.g. "max_tool_iterations", "cancelled"
    new_messages: list[dict[str, Any]] = field(default_factory=list)
    degraded: bool = False
    degrade_reasons: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TurnFailed:
    code: str
    message: str
    status: int
    partial_text: str = ""
    headers: dict[str, str] | None = None  # e.g. Retry-After of a 429 (a per-user queue quota)


TurnEvent = TextDelta | ToolCallDelta | ServerToolCall | TurnDone | TurnFailed
