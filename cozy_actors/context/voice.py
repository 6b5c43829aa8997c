"""Personalization for Realtime (voice) responses: the same context as text turns."""

from __future__ import annotations

from typing import Any

from .base import TurnRecord


def personalize(
    spec: Any,
    ctx: Any,
    personality: Any,
    user_id: str | None,
    system: str,
    history: list[dict[str, Any]],
    session_id: str | None = None,
) -> TurnRecord | None:
    """Set `spec.prepare` so the response task fetches context before the model call; returns what
    memory/profile should learn from once the response is done (None: nothing to learn)."""
    if ctx is None or not ctx.applies(personality):
        return None
    split = next((i for i in range(len(history) - 1, -1, -1) if history[i].get("role") == "user"), len(history))
    past, new = history[:split], history[split:]

    async def prepare(ahead: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
        got = await ctx.prepare(
            system=system, history=past, new=new, user_id=user_id, personality_id=personality.id, ahead=ahead
        )
        return got.messages, got.reasons

    spec.prepare = prepare
    last_user = [m for m in new if m.get("role") == "user"][:1]
    return TurnRecord(user_id, personality.id, list(last_user), session_id) if user_id and last_user else None
