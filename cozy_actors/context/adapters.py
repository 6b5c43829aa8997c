"""HTTP adapters for external memory services (Mem0, Memobase, Cognee); filled in by slice 4."""

from __future__ import annotations

from typing import Any

ADAPTERS: list[type[Any]] = []
