"""What every background-write backend shares: the handler type and the retry/dead-letter policy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Payload = dict[str, Any]
Handler = Callable[[list[Payload]], Awaitable[None]]
"""Processes a batch; raising means "retry these later" (entries are then retried one by one, so a
poison entry cannot take its batch to the dead letters with it)."""


@dataclass(frozen=True)
class QueuePolicy:
    max_attempts: int = 5
    batch_size: int = 100
    retry_after_s: float = 2.0
    block_s: float = 1.0
