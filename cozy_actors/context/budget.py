"""Token budget for the prompt: what fits, in priority order.

Order: personality prompt > recent messages (newest first) > profile/memory/knowledge > a summary
of the older history that was left out. Token counts are estimated, not tokenized: ~4 characters
per token plus 4 per message (OpenAI's rule of thumb) — cheap, model-independent, and
conservative enough for a budget that only decides what to leave out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import ContextItem, content_text

_SOURCES = ("profile", "memory", "knowledge")
_TITLES = {"profile": "About the user", "memory": "What you remember", "knowledge": "Relevant knowledge"}


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def message_tokens(m: dict[str, Any]) -> int:
    return 4 + estimate_tokens(content_text(m.get("content")) or "") + estimate_tokens(str(m.get("tool_calls") or ""))


@dataclass
class Assembled:
    messages: list[dict[str, Any]]
    dropped_messages: int = 0
    dropped_items: list[ContextItem] = field(default_factory=list)
    summary: str | None = None
    tokens: int = 0


def assemble(
    system: str,
    history: list[dict[str, Any]],
    new: list[dict[str, Any]],
    items: list[ContextItem],
    max_tokens: int,
) -> Assembled:
    """The prompt within `max_tokens`: the system prompt and the new messages always stay."""
    used = 4 + estimate_tokens(system) + sum(message_tokens(m) for m in new)
    kept: list[dict[str, Any]] = []
    i = len(history)
    while i > 0 and used + message_tokens(history[i - 1]) <= max_tokens:
        i -= 1
        used += message_tokens(history[i])
        kept.insert(0, history[i])
    while kept and kept[0].get("role") not in ("user", "system", "developer"):
        used -= message_tokens(kept.pop(0))  # never start with a tool result or a dangling tool call
        i += 1
    older = history[:i]
    chosen: dict[str, list[str]] = {s: [] for s in _SOURCES}
    dropped: list[ContextItem] = []
    for item in sorted(items, key=lambda it: (_SOURCES.index(it.source) if it.source in _SOURCES else 9, -it.score)):
        cost = estimate_tokens(item.text) + 2
        if used + cost + 8 <= max_tokens and item.source in chosen:
            chosen[item.source].append(item.text)
            used += cost
        else:
            dropped.append(item)
    sections = [f"{_TITLES[s]}:\n" + "\n".join(f"- {t}" for t in chosen[s]) for s in _SOURCES if chosen[s]]
    if sections:
        used += 8
    summary = None
    if older:
        summary = _summary(older, max_tokens - used)
        if summary:
            used += estimate_tokens(summary) + 4
            sections.append(summary)
    full = system + ("\n\n" + "\n\n".join(sections) if sections else "")
    return Assembled(
        [{"role": "system", "content": full}, *kept, *new],
        dropped_messages=len(older),
        dropped_items=dropped,
        summary=summary,
        tokens=used,
    )


def _summary(older: list[dict[str, Any]], budget: int) -> str | None:
    """An extractive summary of left-out history (first words of each user message), if it fits."""
    if budget < 16:
        return None
    head = "Earlier in this conversation the user said:"
    lines: list[str] = []
    used = estimate_tokens(head) + 4
    for m in older:
        if m.get("role") != "user":
            continue
        text = " ".join(content_text(m.get("content")).split())[:120]
        cost = estimate_tokens(text) + 2
        if not text or used + cost > budget:
            continue
        lines.append(f"- {text}")
        used += cost
    return head + "\n" + "\n".join(lines) if lines else None
