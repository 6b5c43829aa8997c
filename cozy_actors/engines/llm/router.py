"""The configured LLM models, their engines, and which one a request gets.

Rule: a request's `model` naming a configured, enabled model uses it; any other name falls back
to the personality's model (then the server default). The response reports the model used.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cozy_actors.config import LLMConfig, LLMModelConfig
from cozy_actors.engines.registry import EngineRegistry, RegistryError
from cozy_core.engines import Health

from .base import LLMEngine


class LLMConfigError(Exception):
    """A model's provider or options are invalid; `problems` are `key: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class _Entry:
    config: LLMModelConfig
    engine: LLMEngine
    ready: bool = False
    lock: asyncio.Lock | None = None


class LLMRouter:
    def __init__(self, config: LLMConfig, registry: EngineRegistry) -> None:
        self.config = config
        self.created = int(time.time())
        self._entries: dict[str, _Entry] = {}
        problems: list[str] = []
        for i, model in enumerate(config.models):
            if not model.enabled:
                continue
            try:
                cls = registry.get("llm", model.provider)
                options = cls.Options.model_validate(model.options)
            except RegistryError as exc:
                problems.append(f"llm.models.{i}.provider: {exc}")
                continue
            except ValidationError as exc:
                problems.extend(
                    f"llm.models.{i}.options.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                )
                continue
            self._entries[model.id] = _Entry(model, cls(model.id, options))  # type: ignore[call-arg]
        if problems:
            raise LLMConfigError(problems)
        self.default_id = config.default.id

    async def initialize(self) -> None:
        """Initialize the default model now (a broken default must stop start-up); others lazily."""
        await self._ensure(self._entries[self.default_id])
        for entry in self._entries.values():
            if entry.config.provider != "local":
                await self._ensure(entry)

    async def _ensure(self, entry: _Entry) -> LLMEngine:
        if entry.ready:
            return entry.engine
        if entry.lock is None:
            entry.lock = asyncio.Lock()
        async with entry.lock:
            if not entry.ready:
                await entry.engine.initialize()
                entry.ready = True
        return entry.engine

    def choose(self, requested: str | None, preferred: str | None = None, provider: str | None = None) -> str:
        """The model id a request gets (see module docstring)."""
        if requested and requested in self._entries:
            return requested
        if preferred and preferred in self._entries:
            return preferred
        if provider:
            for model_id, entry in self._entries.items():
                if entry.config.provider == provider:
                    return model_id
        return self.default_id

    async def engine(self, model_id: str) -> LLMEngine:
        return await self._ensure(self._entries[model_id])

    def has(self, model_id: str) -> bool:
        return model_id in self._entries

    def models(self) -> list[dict[str, Any]]:
        """OpenAI `Model` objects for GET /v1/models."""
        return [
            {"id": mid, "object": "model", "created": self.created, "owned_by": e.config.owned_by}
            for mid, e in self._entries.items()
        ]

    async def health(self) -> dict[str, Health]:
        out: dict[str, Health] = {}
        for model_id, entry in self._entries.items():
            if not entry.ready:
                out[model_id] = Health(True, "not loaded yet (lazy)")
                continue
            try:
                out[model_id] = await asyncio.wait_for(entry.engine.health_check(), 2.0)
            except Exception as exc:
                out[model_id] = Health(False, f"health check failed: {exc}")
        return out

    async def close(self) -> None:
        for entry in self._entries.values():
            if entry.ready:
                await entry.engine.close()
                entry.ready = False
