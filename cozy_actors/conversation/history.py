"""Which past messages a turn shows the model: the personality's `memory.max_history_messages`,
the same rule for text chat and voice calls, so a long call's prompt stops growing."""

from __future__ import annotations

from typing import Any


def recent_history(past: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """The last `keep` messages of `past`, never starting with a tool result or a dangling
    assistant tool call (the model would see an answer without its question)."""
    kept = past[max(0, len(past) - keep) :] if keep > 0 else []
    start = 0
    while start < len(kept) and kept[start].get("role") not in ("user", "system", "developer"):
        start += 1
    return kept[start:]


def trim_past(messages: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """A whole conversation (voice: its items) for the model: everything from the last user
    message on (the turn being answered), after at most `keep` messages before it. Without a user
    message nothing is cut (e.g. a greeting the client asks for before anyone spoke)."""
    split = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), 0)
    return [*recent_history(messages[:split], keep), *messages[split:]]
