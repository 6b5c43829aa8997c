"""Built-in tools: `get_current_time` and `calculator` (safe, bounded arithmetic, no eval).

Both bodies are synchronous: the catalog runs them on its small tool thread pool, never on the
event loop (a zone file read or a long computation must not stall every live session).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .base import Tool, ToolError
from .calculator import calculator, evaluate

__all__ = ["BUILTIN_TOOLS", "CALCULATOR", "GET_CURRENT_TIME", "evaluate"]


def _current_time(args: dict[str, Any]) -> dict[str, Any]:
    name = args.get("timezone") or "UTC"
    try:
        tz = UTC if name.upper() == "UTC" else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"unknown timezone {name!r} (use an IANA name such as Europe/Paris)") from exc
    now = datetime.now(tz)
    return {"timezone": name, "iso": now.isoformat(timespec="seconds"), "weekday": now.strftime("%A")}


GET_CURRENT_TIME = Tool(
    name="get_current_time",
    description="Current date and time, optionally in an IANA timezone such as Europe/Paris.",
    parameters={
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "IANA timezone name; default UTC"}},
        "additionalProperties": False,
    },
    side_effect="read-only",
    handler=_current_time,
)

CALCULATOR = Tool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression: + - * / // % ** and sqrt, abs, round, min, max, log, sin, cos, pi, e."
    ),
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (2 + 3) * sqrt(16)"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    side_effect="read-only",
    handler=calculator,
)

BUILTIN_TOOLS: dict[str, Tool] = {t.name: t for t in (GET_CURRENT_TIME, CALCULATOR)}
