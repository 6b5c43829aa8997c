"""HTTP adapters for external personalization services, registered like the built-ins and selected
by `config/context.yaml` (`provider: mem0 | memobase | cognee`): Mem0 (memory), Memobase (profile),
Cognee (knowledge). Each has its own `Options` (base_url, api_key from the environment, timeouts)."""

from __future__ import annotations

from typing import Any

from .cognee import CogneeKnowledge
from .mem0 import Mem0Memory
from .memobase import MemobaseProfile

ADAPTERS: list[type[Any]] = [Mem0Memory, MemobaseProfile, CogneeKnowledge]

__all__ = ["ADAPTERS", "CogneeKnowledge", "Mem0Memory", "MemobaseProfile"]
