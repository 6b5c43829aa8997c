"""What the audit trail keeps about one server-side tool call, built where every call passes:
`ToolCatalog.execute`, for text chat and voice alike.

Arguments are never stored, only a SHA-256 of their canonical JSON (sorted keys), so two identical
calls are recognisable without the trail holding what a user asked a tool to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class ToolCaller:
    """Who a turn runs for; set on the TurnSpec by whoever starts the turn."""

    user_id: str | None = None
    user_name: str | None = None
    request_id: str | None = None
    session_id: str | None = None
    channel: str = "text"  # text | realtime


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    tool: str
    source: str  # builtin | mcp:<server>
    side_effect: str
    args_sha256: str
    ok: bool
    error: str | None  # invalid_json | invalid_arguments | timeout | tool_error | failed
    latency_s: float
    caller: ToolCaller | None
    call_id: str | None = None  # the model's tool_call id

    def audit_detail(self) -> dict[str, Any]:
        """The `detail` of the `tool.call` audit event."""
        caller = self.caller or ToolCaller()
        detail: dict[str, Any] = {
            "source": self.source,
            "side_effect": self.side_effect,
            "args_sha256": self.args_sha256,
            "latency_ms": round(self.latency_s * 1000, 1),
            "channel": caller.channel,
        }
        if caller.session_id:
            detail["session_id"] = caller.session_id
        if self.call_id:
            detail["call_id"] = self.call_id
        if self.error:
            detail["error"] = self.error
        return detail


def args_digest(arguments: str, parsed: Any = None) -> str:
    """SHA-256 of the canonical JSON of the arguments (of the raw text when it is not JSON)."""
    if parsed is not None:
        try:
            data = orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            data = arguments.encode()
    else:
        data = (arguments or "").encode()
    return hashlib.sha256(data).hexdigest()
